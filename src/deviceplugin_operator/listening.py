"""How the operator's HTTPS servers (admission webhooks, secure metrics) accept connections
without letting a client exhaust the process: a cap on open connections, a small waiting room
over it, and deadlines for the TLS handshake, the first request and idle keep-alive.

Every TLS connection costs asyncio a read buffer (256 KiB by default, ``TLS_READ_BUFFER``
here) and an aiohttp handler, and aiohttp keeps an idle connection for an hour and waits for a
first request without any limit of its own: 600 connections that only shook hands took a
replica from 63 to 228 MiB, 2000 with half a request line to 628 MiB (the pod limit is 256
MiB). ``GuardedSite`` replaces aiohttp's ``TCPSite``: connections are accepted as plain TCP
and counted; at most ``Limits.max_connections`` are open (and at most ``Limits.max_per_peer``
from one address, so that one client cannot take every slot from the API server). A
connection over a cap waits, unread and without TLS (a few KiB), for a slot to free, in order
of arrival: the API server opens one connection per webhook call in flight, so a pause of this
process (a CPU quota, a slow collection) at a few hundred calls per second makes it open
dozens at once, and a reset there is a failed admission (the Pod refused under
``failurePolicy: Fail``). Only when the waiting room (``Limits.max_waiting``, half of it for
one address) is full is a connection reset at once, with a warning at most every
``RESET_LOG_INTERVAL``. Admitted connections get TLS (asyncio's protocol with a smaller read
buffer, ``_start_server_tls``); every connection must deliver the head of its first request
within ``Limits.head_timeout`` of being accepted, waiting included. Between requests aiohttp's
keep-alive timer (``Limits.idle_timeout``, given to the runner with ``runner_options``) closes
idle connections, also those that sent only part of a later request.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import logging
import ssl
import time
from asyncio import sslproto
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

    max_waiting: int = 512
    """Connections over a cap waiting for a slot (a few KiB each: a socket nobody reads);
    one address may hold at most half of them. Beyond that a connection is reset."""

    head_timeout: float = 10.0
    """Seconds from accepting a connection to the end of its first request's head (time
    waiting for a slot and the TLS handshake included)."""

    idle_timeout: float = 60.0
    """Seconds an idle keep-alive connection, or one with only part of a request after its
    first, is kept. Go clients (the API server, Prometheus) close theirs after 90 s."""


LIMITS = Limits()
"""The defaults, for the admission and metrics servers."""

RESET_LOG_INTERVAL = 10.0
"""Seconds between two warnings of one server about connections it reset."""


@dataclasses.dataclass(frozen=True)
class Connections:
    """What one server's connections are doing, for its metrics."""

    open: int = 0
    """Admitted and not yet closed."""
    waiting: int = 0
    """Accepted, waiting for a slot."""
    waited: int = 0
    """So far: connections that had to wait for a slot."""
    reset: int = 0
    """So far: connections reset at accept because the waiting room was full."""


def runner_options(limits: Limits) -> dict[str, Any]:
    """Keyword arguments of ``web.AppRunner`` that go with ``limits``."""
    return {"keepalive_timeout": limits.idle_timeout}


TLS_READ_BUFFER = 32 * 1024
"""Bytes one server connection reads from its socket at a time (two full TLS records)."""


class _ServerTLS(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a read buffer of ``TLS_READ_BUFFER``: its own is 256 KiB,
    allocated for every connection and, once the allocator reuses memory, touched whole, which
    made each connection cost ~0.3 MiB; requests to these servers are a few KiB."""

    max_size = TLS_READ_BUFFER


async def _start_server_tls(
    raw: asyncio.Transport,
    protocol: asyncio.Protocol,
    context: ssl.SSLContext,
    handshake_timeout: float,
) -> asyncio.Transport:
    """``loop.start_tls(raw, protocol, context, server_side=True)`` with ``_ServerTLS``
    (start_tls has no way to choose the protocol class): the TLS transport once the handshake
    is done."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    tls = _ServerTLS(
        loop,
        protocol,
        context,
        waiter,
        server_side=True,
        call_connection_made=False,
        # typeshed says int; asyncio takes seconds as a float (start_tls's are).
        ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]
    )
    # As start_tls: paused until the protocol has its transport, so no data comes first.
    raw.pause_reading()
    raw.set_protocol(tls)
    made = loop.call_soon(tls.connection_made, raw)
    resumed = loop.call_soon(raw.resume_reading)
    try:
        await waiter
    except BaseException:
        raw.close()
        made.cancel()
        resumed.cancel()
        raise
    # What start_tls returns.
    transport: asyncio.Transport = tls._app_transport
    return transport


class _Stage(enum.Enum):
    WAITING = "waiting"
    ADMITTED = "admitted"
    CLOSED = "closed"


class _Slots:
    """Counts open connections, in total and by peer address, and keeps the waiting room."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.open = 0
        self.by_peer: collections.Counter[str] = collections.Counter()
        self.waiting: dict[_Connection, str] = {}
        """Connections waiting for a slot, oldest first (dicts keep insertion order)."""
        self.waiting_by_peer: collections.Counter[str] = collections.Counter()
        self.reset = 0
        """Connections reset because the waiting room (or their peer's half of it) was full."""
        self.waited = 0
        """Connections that had to wait for a slot."""
        self._reset_logged: float | None = None
        self.server = ""
        """The server's address, for the log."""

    def _fits(self, peer: str) -> bool:
        return self.open < self.limits.max_connections and (
            self.by_peer[peer] < self.limits.max_per_peer
        )

    def _take(self, peer: str) -> None:
        self.open += 1
        self.by_peer[peer] += 1

    def arrive(self, connection: _Connection, peer: str) -> _Stage:
        """Admit ``connection`` if a slot is free, else seat it in the waiting room (WAITING),
        else CLOSED: it is to be reset."""
        if self._fits(peer):
            self._take(peer)
            return _Stage.ADMITTED
        limits = self.limits
        if len(self.waiting) >= limits.max_waiting or (
            self.waiting_by_peer[peer] >= limits.max_waiting // 2
        ):
            self.reset += 1
            self._log_reset(peer)
            return _Stage.CLOSED
        self.waiting[connection] = peer
        self.waiting_by_peer[peer] += 1
        self.waited += 1
        return _Stage.WAITING

    def _log_reset(self, peer: str) -> None:
        now = time.monotonic()
        if self._reset_logged is not None and now - self._reset_logged < RESET_LOG_INTERVAL:
            return
        self._reset_logged = now
        most = self.waiting_by_peer.most_common(1)
        log.warning(
            "Reset a connection: the server's waiting room is full",
            extra={
                "server": self.server,
                "peer": peer,
                "reset_so_far": self.reset,
                "open": self.open,
                "waiting": len(self.waiting),
                "most_waiting_from": most[0][0] if most else None,
            },
        )

    def leave(self, connection: _Connection) -> None:
        """``connection`` left the waiting room without a slot (its deadline, its peer)."""
        peer = self.waiting.pop(connection, None)
        if peer is not None:
            self._forget(self.waiting_by_peer, peer)

    def give_back(self, peer: str) -> None:
        self.open -= 1
        self._forget(self.by_peer, peer)
        self._admit_waiting()

    def _admit_waiting(self) -> None:
        # The oldest first; one whose peer is still at its cap keeps its seat.
        for connection, peer in list(self.waiting.items()):
            if self.open >= self.limits.max_connections:
                return
            if self.by_peer[peer] < self.limits.max_per_peer:
                del self.waiting[connection]
                self._forget(self.waiting_by_peer, peer)
                self._take(peer)
                connection.admit_soon()

    @staticmethod
    def _forget(counter: collections.Counter[str], peer: str) -> None:
        counter[peer] -= 1
        if counter[peer] <= 0:
            del counter[peer]


class _Connection(asyncio.Protocol):
    """One accepted connection: admitted, seated to wait, or reset; once admitted upgraded to
    TLS, then handed to aiohttp's handler with every event passed through."""

    def __init__(
        self,
        slots: _Slots,
        handler_factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
    ):
        self._slots = slots
        self._handler_factory = handler_factory
        self._ssl_context = ssl_context
        self._stage = _Stage.CLOSED
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
        stage = self._slots.arrive(self, self._peer)
        if stage is _Stage.CLOSED:
            # Before any TLS work: refusing costs a socket accept and a reset.
            transport.abort()
            return
        self._stage = stage
        self._raw = transport
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._slots.limits.head_timeout, self._expire)
        if stage is _Stage.WAITING:
            transport.pause_reading()
            return
        self._start(transport)

    def admit_soon(self) -> None:
        """Called by the slots when this waiting connection got one."""
        self._stage = _Stage.ADMITTED
        # Not from inside the connection_lost that freed the slot.
        asyncio.get_running_loop().call_soon(self._start_admitted)

    def _start_admitted(self) -> None:
        raw = self._raw
        if self._stage is _Stage.ADMITTED and raw is not None and not raw.is_closing():
            self._start(raw)

    def _start(self, raw: asyncio.Transport) -> None:
        if self._ssl_context is None:
            raw.resume_reading()
            self._serve(raw)
            return
        raw.pause_reading()
        loop = asyncio.get_running_loop()
        self._upgrading = loop.create_task(self._upgrade(raw, self._ssl_context))

    async def _upgrade(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        try:
            tls = await _start_server_tls(raw, self, context, self._slots.limits.head_timeout)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError):
            raw.abort()
            self._close()
            return
        if tls is None or self._stage is not _Stage.ADMITTED:
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
        stage, self._stage = self._stage, _Stage.CLOSED
        self._raw = None
        if stage is _Stage.ADMITTED:
            self._slots.give_back(self._peer)
        elif stage is _Stage.WAITING:
            self._slots.leave(self)


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
        port = self.port if isinstance(self._server, asyncio.Server) else self._port
        return f"{scheme}://{self._host}:{port}"

    def connections(self) -> Connections:
        slots = self.slots
        return Connections(slots.open, len(slots.waiting), slots.waited, slots.reset)

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
        self.slots.server = self.name

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        server = self._server
        assert isinstance(server, asyncio.Server)
        sockets = server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else self._port
