"""What the exhaustion tests share (tests/unit/admission/test_server_exhaustion.py,
tests/unit/controller/test_probe_exhaustion.py): a server alone in a child process that reports
its RSS, event-loop lag and open file descriptors every 50 ms, and the test side that starts it
and reads those reports.

The child scripts (``exhaustion_server.py``, ``probe_exhaustion_server.py``) import this module
too: :func:`child` puts tests/ on their ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

TESTS = pathlib.Path(__file__).resolve().parent
Connection = TypeVar("Connection", bound=socket.socket)


# The child process's side.


def rss_kib() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_files() -> int:
    return sum(1 for _ in pathlib.Path("/proc/self/fd").iterdir())


def limit_options(server_class: type, head_timeout: float | None) -> dict[str, Any]:
    """``limits=`` with a shorter head deadline, for a server class that takes limits."""
    # The code before the fix had no limits; it runs with these scripts for the record.
    if head_timeout is None or "limits" not in inspect.signature(server_class).parameters:
        return {}
    from deviceplugin_operator import listening

    return {"limits": listening.Limits(head_timeout=head_timeout)}


async def report(port: int) -> None:
    """Print ``{"port": ...}``, then every 50 ms the RSS, the worst delay of a 10 ms timer on
    this event loop in that window, and the open file descriptors; forever."""
    print(json.dumps({"port": port}), flush=True)
    loop = asyncio.get_running_loop()
    window_started = loop.time()
    worst = 0.0
    while True:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - before - 0.01)
        if loop.time() - window_started >= 0.05:
            sample = {"rss_kib": rss_kib(), "lag": round(worst, 4), "fds": open_files()}
            print(json.dumps(sample), flush=True)
            window_started, worst = loop.time(), 0.0


# The test's side.


class Child:
    """The server process and what it reported."""

    def __init__(self, process: subprocess.Popen[str], port: int):
        self.process = process
        self.port = port
        self.samples: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.samples.append({"t": time.monotonic(), **json.loads(line)})

    def latest(self, key: str) -> float:
        """``key`` of a report made after now (the newest, 150 ms later)."""
        time.sleep(0.15)
        with self._lock:
            return float(self.samples[-1][key])

    def since(self, started: float) -> list[dict[str, Any]]:
        with self._lock:
            return [sample for sample in self.samples if sample["t"] >= started]

    def worst_lag(self, since: float) -> float:
        return max((float(sample["lag"]) for sample in self.since(since)), default=0.0)


@contextlib.contextmanager
def child(script: pathlib.Path, head_timeout: float) -> Iterator[Child]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TESTS), environment.get("PYTHONPATH")])
    )
    process = subprocess.Popen(
        [sys.executable, str(script), "--head-timeout", str(head_timeout)],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        yield Child(process, int(first["port"]))
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def many_connections(
    connect: Callable[[], Connection | None], count: int
) -> Iterator[list[Connection]]:
    """``count`` connections opened by ``connect`` 32 at a time (those refused left out), closed
    at the end."""
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        opened = [sock for sock in pool.map(lambda _: connect(), range(count)) if sock]
    try:
        yield opened
    finally:
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.close()
