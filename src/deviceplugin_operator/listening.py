"""How the operator's HTTPS servers (admission webhooks, secure metrics) accept connections
without letting a client exhaust the process: a cap on open connections, and deadlines for the
TLS handshake, the first request and idle keep-alive.

Every TLS connection costs asyncio a 256 KiB read buffer and an aiohttp handler, and aiohttp
keeps an idle connection for an hour and waits for a first request without any limit of its
own: 600 connections that only shook hands took a replica from 63 to 228 MiB, 2000 with half a
request line to 628 MiB (the pod limit is 256 MiB). ``GuardedSite`` replaces aiohttp's
``TCPSite``: connections are accepted as plain TCP, counted, and a connection over
``Limits.max_connections`` (or over ``Limits.max_per_peer`` from one address, so that one
client cannot take every slot from the API server) is reset at once, before any TLS work; the
others get TLS through ``loop.start_tls`` and must deliver the head of their first request
within ``Limits.head_timeout`` of being accepted. Between requests aiohttp's keep-alive timer
(``Limits.idle_timeout``, given to the runner with ``runner_options``) closes idle connections,
also those that sent only part of a later request.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one server grants its clients."""

    max_connections: int = 128
    """Open connections at once; each costs about 0.3 MiB with TLS."""

    max_per_peer: int = 64
    """Open connections from one IP address."""

    head_timeout: float = 10.0
    """Seconds from accepting a connection to the end of its first request's head (TLS
    handshake included)."""

    idle_timeout: float = 60.0
    """Seconds an idle keep-alive connection, or one with only part of a request after its
    first, is kept. Go clients (the API server, Prometheus) close theirs after 90 s."""


LIMITS = Limits()
"""The defaults, for the admission and metrics servers."""


def runner_options(limits: Limits) -> dict[str, Any]:
    """Keyword arguments of ``web.AppRunner`` that go with ``limits``."""
    return {"keepalive_timeout": limits.idle_timeout}


class _Slots:
    """Counts open connections, in total and by peer address."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.open = 0
        self.by_peer: collections.Counter[str] = collections.Counter()
        self.refused = 0
        """Connections reset because the server or their peer was at its cap."""

    def take(self, peer: str) -> bool:
        if self.open >= self.limits.max_connections or (
            self.by_peer[peer] >= self.limits.max_per_peer
        ):
            self.refused += 1
            return False
        self.open += 1
        self.by_peer[peer] += 1
        return True

    def give_back(self, peer: str) -> None:
        self.open -= 1
        self.by_peer[peer] -= 1
        if self.by_peer[peer] <= 0:
            del self.by_peer[peer]


class _Connection(asyncio.Protocol):
    """One accepted connection: admitted or reset, upgraded to TLS, then handed to aiohttp's
    handler with every event passed through."""

    def __init__(
        self,
        slots: _Slots,
        handler_factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
    ):
        self._slots = slots
        self._handler_factory = handler_factory
        self._ssl_context = ssl_context
        self._raw: asyncio.Transport | None = None
        self._handler: asyncio.Protocol | None = None
        self._peer = ""
        self._deadline: asyncio.TimerHandle | None = None
        self._head_seen = False
        self._tail = b""
        self._upgrading: asyncio.Task[None] | None = None
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._slots.take(self._peer):
            # Before any TLS work: refusing costs a socket accept and a reset.
            transport.abort()
            return
        self._raw = transport
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._slots.limits.head_timeout, self._expire)
        if self._ssl_context is None:
            self._serve(transport)
            return
        transport.pause_reading()
        self._upgrading = loop.create_task(self._upgrade(transport, self._ssl_context))

    async def _upgrade(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                raw,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._slots.limits.head_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError):
            raw.abort()
            self._close()
            return
        if tls is None or self._raw is None:
            raw.abort()
            self._close()
            return
        self._serve(tls)

    def _serve(self, transport: asyncio.BaseTransport) -> None:
        handler = self._handler = self._handler_factory()
        handler.connection_made(transport)
        early, self._early = self._early, []
        for data in early:
            handler.data_received(data)

    def _expire(self) -> None:
        self._deadline = None
        if not self._head_seen and self._raw is not None:
            self._raw.abort()

    def data_received(self, data: bytes) -> None:
        if not self._head_seen:
            # The first request's head ends with an empty line (RFC 9112 section 2.1).
            seen = self._tail + data
            if b"\n\r\n" in seen or b"\n\n" in seen:
                self._head_seen = True
                if self._deadline is not None:
                    self._deadline.cancel()
                    self._deadline = None
            self._tail = seen[-2:]
        if self._handler is not None:
            self._handler.data_received(data)
        else:
            # Decrypted data can arrive before ``_upgrade`` resumes after the handshake.
            self._early.append(data)

    def eof_received(self) -> bool | None:
        if self._handler is not None:
            return self._handler.eof_received()
        return None

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        handler, self._handler = self._handler, None
        self._close()
        if handler is not None:
            handler.connection_lost(exc)

    def _close(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._raw is not None:
            self._raw = None
            self._slots.give_back(self._peer)


class GuardedSite(web.BaseSite):
    """aiohttp's ``TCPSite`` with ``Limits``: the runner must be made with
    ``runner_options(limits)``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits = LIMITS,
        backlog: int = 128,
    ):
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self.slots = _Slots(limits)

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    @property
    def refused(self) -> int:
        """Connections reset so far because of a cap."""
        return self.slots.refused

    @property
    def open_connections(self) -> int:
        return self.slots.open

    async def start(self) -> None:
        await super().start()
        handlers = self._runner.server
        assert handlers is not None
        loop = asyncio.get_running_loop()
        context = self._ssl_context
        self._server = await loop.create_server(
            lambda: _Connection(self.slots, handlers, context),
            self._host or None,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        server = self._server
        assert isinstance(server, asyncio.Server)
        sockets = server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else self._port
