"""The operator process: its API clients, the checks before anything starts, its manager, until
asked to stop. A start that cannot succeed ends in ``startup.StartupError``."""

from __future__ import annotations

import asyncio
import logging

from deviceplugin_operator import settings
from deviceplugin_operator.controller.metrics import recording
from deviceplugin_operator.kube import client, errors
from deviceplugin_operator.manager import lifecycle, metrics_endpoint, options, preflight, startup

log = logging.getLogger(__name__)

IMPLICIT_KUBECONFIG = "in-cluster service account, else ~/.kube/config"


async def run(config: settings.Settings, options: options.Options, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set.

    Leader election gets a client of its own: a busy controller never delays a renewal.
    """
    kubeconfig = options.kubeconfig or IMPLICIT_KUBECONFIG
    metrics = recording.Metrics()
    kube = await _connect(options, metrics, kubeconfig)
    election_kube: client.HttpKubeClient | None = None
    try:
        if options.leader_election is not None:
            election_kube = await _connect(options, metrics, kubeconfig)
        manager = lifecycle.Manager(
            config, options, kube, election_kube=election_kube, metrics=metrics
        )
        await preflight.check(manager, server=kube.host, kubeconfig=kubeconfig)
        try:
            await manager.run(stop)
        except errors.KubeError as error:
            # Past start-up every API error is retried where it happens: this one ended it.
            raise startup.explained(
                error,
                server=kube.host,
                kubeconfig=kubeconfig,
                prefix=options.webhook_configuration_prefix,
            ) from error
        log.info("Stopped operator")
    finally:
        await kube.close()
        if election_kube is not None:
            await election_kube.close()


async def _connect(
    options: options.Options, metrics: recording.Metrics, kubeconfig: str
) -> client.HttpKubeClient:
    try:
        return await metrics_endpoint.connect(options.kubeconfig, metrics)
    except errors.ConfigError as error:
        raise startup.StartupError(
            f"{error} (kubeconfig: {kubeconfig}); pass --kubeconfig or set KUBECONFIG to a "
            "kubeconfig file, or run in a pod with a service account"
        ) from error
