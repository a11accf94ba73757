"""Errors of the local control plane, each carrying a message fit to print as is.

ClusterError
├── BuildError       a binary could not be built (no Go, module unreachable, compile error)
└── StartError       a component did not start or become healthy; names it and its log
"""


class ClusterError(Exception):
    """Base of every local control-plane error."""


class BuildError(ClusterError):
    """A control-plane binary could not be built."""


class StartError(ClusterError):
    """A component failed to start or become healthy."""
