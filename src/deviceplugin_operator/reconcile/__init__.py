"""Pure desired-state functions: a resource goes in, Kubernetes objects and status come out.

No client and no asyncio: ``daemonset`` renders the whole desired DaemonSet, ``status``
computes the resource's status from what was observed, ``images`` holds the image reference
grammar and upgrade policy (also used by admission). The controller calls these.
"""
