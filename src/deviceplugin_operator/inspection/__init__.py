"""Tools that explain the cluster to admins and pipelines, beside the operator itself.

``render`` (offline: the DaemonSets the operator would create, through the reconciler's own
rendering), ``diagnose`` (why a node has or has not a plugin and devices) and
``support-bundle`` (an issue report's data without secrets). cli.py adds them as subcommands
(``add_commands``) and runs them (``main``); they read the cluster with list, get and log
requests only.
"""

from deviceplugin_operator.inspection.commands import COMMANDS, add_commands, main

__all__ = ["COMMANDS", "add_commands", "main"]
