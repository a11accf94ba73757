"""The runtime loop in the controller-runtime mould: watch → queue → reconcile → apply → status.

``informer`` keeps an indexed in-memory copy (``cache``) of a watched resource and tells
handlers what changed; handlers put keys on a de-duplicating, rate-limited ``queue``; the
``reconciler`` takes keys off it. The composition root (``cli``) wires them together; only
``kube`` is used to reach the API server.
"""
