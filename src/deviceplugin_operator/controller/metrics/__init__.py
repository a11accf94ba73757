"""The operator's Prometheus metrics, under controller-runtime's names so existing dashboards work.

``recording`` owns the metric families on one dedicated registry and the hooks that feed them
(reconcile results, work-queue timings, API requests, leadership, resource statuses);
``serving`` is the ``/metrics`` endpoint (``--metrics-bind-address``), plain or HTTPS;
``authorizing`` guards the HTTPS endpoint with TokenReview and SubjectAccessReview
(``--metrics-secure``); ``runtime`` times garbage-collection pauses and event-loop lag while
the endpoint serves. The manager wires them; nothing here writes to the API server.
"""
