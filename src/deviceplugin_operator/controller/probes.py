"""Plain-HTTP ``/healthz`` and ``/readyz`` (``--health-probe-bind-address``), and the address
parsing shared with the metrics server.

``/healthz`` answers as long as the event loop runs. ``/readyz`` answers 200 only when every
registered readiness check passes (caches synced, and later the webhook server serving), with
the failing check named in the body, as controller-runtime does.

Connections are accepted through ``listening.GuardedSite`` with the same ``Limits`` as the
webhook and metrics servers: the probes share the event loop that renews the Lease, and without
them any client reaching the port could hold connections (aiohttp sets no deadline for a first
request) until the process ran out of descriptors or memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from aiohttp import web

from deviceplugin_operator import listening

ReadinessCheck = Callable[[], bool]


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """``":8081"`` → ("0.0.0.0", 8081); ``"127.0.0.1:0"`` → any free port; ``"0"`` → disabled."""
    if address in ("0", ""):
        return None
    host, _, port = address.rpartition(":")
    return (host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104 - the reference's default


@dataclasses.dataclass
class ProbeServer:
    """The probe endpoints; ``checks`` maps a check name to its predicate."""

    checks: dict[str, ReadinessCheck] = dataclasses.field(default_factory=dict)
    port: int | None = None
    limits: listening.Limits = listening.LIMITS
    _runner: web.AppRunner | None = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        failing = [name for name, check in self.checks.items() if not check()]
        if failing:
            body = "\n".join(f"[-]{name} failed: not ready" for name in failing)
            return web.Response(status=500, text=body)
        return web.Response(text="ok")

    async def start(self, address: str) -> None:
        bind = parse_bind_address(address)
        if bind is None:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, **listening.runner_options(self.limits))
        await self._runner.setup()
        site = listening.GuardedSite(self._runner, bind[0], bind[1], limits=self.limits)
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
