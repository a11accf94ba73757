"""The operator process: its API clients, its manager, until asked to stop."""

from __future__ import annotations

import asyncio
import logging

from deviceplugin_operator import settings
from deviceplugin_operator.controller.metrics import recording
from deviceplugin_operator.kube import client
from deviceplugin_operator.manager import lifecycle, metrics_endpoint, options

log = logging.getLogger(__name__)


async def run(config: settings.Settings, options: options.Options, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set.

    Leader election gets a client of its own: a busy controller never delays a renewal.
    """
    metrics = recording.Metrics()
    kube = await metrics_endpoint.connect(options.kubeconfig, metrics)
    election_kube: client.HttpKubeClient | None = None
    try:
        if options.leader_election is not None:
            election_kube = await metrics_endpoint.connect(options.kubeconfig, metrics)
        manager = lifecycle.Manager(
            config, options, kube, election_kube=election_kube, metrics=metrics
        )
        await manager.run(stop)
        log.info("Stopped operator")
    finally:
        await kube.close()
        if election_kube is not None:
            await election_kube.close()
