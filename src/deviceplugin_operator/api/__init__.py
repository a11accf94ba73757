"""The custom-resource contract: pydantic models of the CRD schemas, shared by every kind.

No I/O and no Kubernetes client here. ``devices`` subclasses the spec models, ``reconcile``
renders and reads them, ``admission`` validates them, ``manifests`` turns them into CRD YAML.
"""
