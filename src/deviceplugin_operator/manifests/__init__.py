"""Generators of the checked-in manifests under deployments/operator, from the models and
``devices.KINDS``: the code is the one source of truth, and a test fails when the files are
stale. ``crd`` writes the CRDs, ``webhooks`` the webhook configurations, ``rbac`` the
operator's roles, ``overlays`` the ``device/<dev>`` kustomizations; ``generation`` runs every
generator (``__main__`` is the CLI).
"""
