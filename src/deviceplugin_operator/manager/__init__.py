"""Runs the operator: informers, one work queue and reconciler per enabled kind, probes,
metrics, admission webhooks and leader election. cli.py calls ``run``; tests embed a
``Manager``.

What runs is built apart from when it runs::

    process        the process: its API clients, the checks, its manager, until stopped
    preflight      the reads a start depends on, made before anything starts
    lifecycle      Manager: the order of start-up (servers, informers, election, workers)
                   and of shutdown
    composition    Parts: everything the process runs, built from the settings
    controllers    Controller: one kind's queue, reconciler and workers
    webhook_certificates   the admission server's certificate, self-managed or mounted
    metrics_endpoint       /metrics: its registry's clients and its server
    options        Options: how the process runs
    startup        StartupError: a failed start as one line, its cause and its fix
"""

from deviceplugin_operator.manager.composition import plugin_label_selector
from deviceplugin_operator.manager.controllers import Controller
from deviceplugin_operator.manager.lifecycle import Manager
from deviceplugin_operator.manager.options import Options
from deviceplugin_operator.manager.process import run
from deviceplugin_operator.manager.startup import StartupError
from deviceplugin_operator.manager.webhook_certificates import (
    MODES as WEBHOOK_CERTIFICATE_MODES,
)
from deviceplugin_operator.manager.webhook_certificates import choose_mode, webhook_hosts

__all__ = [
    "WEBHOOK_CERTIFICATE_MODES",
    "Controller",
    "Manager",
    "Options",
    "StartupError",
    "choose_mode",
    "plugin_label_selector",
    "run",
    "webhook_hosts",
]
