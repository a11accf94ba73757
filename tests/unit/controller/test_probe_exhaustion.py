"""Issue 14, point 2 for the health-probe port: no client can exhaust the process through
``/healthz`` and ``/readyz`` (served on the event loop that also renews the Lease).

The probe server runs alone in a child process (``probe_exhaustion_server.py``) reporting its
RSS, event-loop lag and open file descriptors every 50 ms. Attacked with 1000 TCP connections
that send nothing and 1000 that send half a request line, all from 127.0.0.1, while a
"kubelet" from 127.0.0.2 probes ``/healthz``. Before the fix (a plain aiohttp ``TCPSite``) every
one of those connections stayed open as long as the client liked: aiohttp has no deadline for a
first request.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import time
from collections.abc import Iterator

import pytest

import exhaustion
from deviceplugin_operator import listening

HERE = pathlib.Path(__file__).parent
FLOOD = int(os.environ.get("DP_PROBE_FLOOD", "1000"))
HEAD_TIMEOUT = 3.0
"""The child's deadline for a first request head, shorter than the default to keep this quick."""
KUBELET = "127.0.0.2"
"""Another loopback address: the probing kubelet is not the flooding peer."""

pytestmark = pytest.mark.slow


@pytest.fixture
def child() -> Iterator[exhaustion.Child]:
    with exhaustion.child(HERE / "probe_exhaustion_server.py", HEAD_TIMEOUT) as started:
        yield started


def connect(port: int, send: bytes) -> socket.socket | None:
    sock = socket.socket()
    try:
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        if send:
            sock.sendall(send)
        return sock
    except OSError:
        sock.close()
        return None


def flood(port: int, send: bytes) -> contextlib.AbstractContextManager[list[socket.socket]]:
    return exhaustion.many_connections(lambda: connect(port, send), FLOOD)


def open_on_server(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the server has not closed (nor reset)."""
    still = 0
    for sock in sockets:
        sock.settimeout(0.005)
        try:
            if sock.recv(1) != b"":
                still += 1
        except TimeoutError:
            still += 1
        except OSError:
            pass
    return still


def kubelet_probe(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(KUBELET, 0)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    return int(reply.split()[1])


@pytest.mark.parametrize(
    "send",
    [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Ag"],
    ids=["nothing-sent", "partial-request-line"],
)
def test_probe_port_floods_are_capped_and_cut_at_the_head_deadline(
    child: exhaustion.Child, send: bytes
) -> None:
    assert kubelet_probe(child.port) == 200
    rss, fds = child.latest("rss_kib"), child.latest("fds")
    started = time.monotonic()
    with flood(child.port, send) as opened:
        grown_mib = (child.latest("rss_kib") - rss) / 1024
        held = open_on_server(opened)
        record = {"opened": len(opened), "held": held, "rss_growth_mib": round(grown_mib, 1)}
        print("probe flood", send[:3], record)
        # Served: the peer's cap; the rest of those held wait unread (a socket each).
        assert held <= listening.LIMITS.max_per_peer + listening.LIMITS.max_waiting // 2, record
        assert grown_mib < 20, record
        assert kubelet_probe(child.port) == 200, "another peer is still answered"
        # Every connection held was closed by the server at its head deadline.
        deadline = started + HEAD_TIMEOUT + 5
        while child.latest("fds") > fds + 2 and time.monotonic() < deadline:
            pass
        left = child.latest("fds") - fds
        print("probe flood: descriptors still held after the deadline", left)
        assert left <= 2
        assert open_on_server(opened) == 0
    assert child.worst_lag(started) < 0.5


def test_probe_server_takes_the_limits() -> None:
    from deviceplugin_operator.controller import probes

    assert probes.ProbeServer().limits == listening.LIMITS
