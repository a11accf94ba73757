"""The health-probe server alone in a process, for test_probe_exhaustion.py.

Prints one JSON line when listening (``{"port": ...}``), then every 50 ms the process's RSS
(KiB), the largest delay of a 10 ms timer on its event loop in that window and the number of
open file descriptors. ``--head-timeout`` shortens the deadline for a first request's head so
that the test need not wait for the default; the other limits are the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import pathlib
import sys
import time

from deviceplugin_operator.controller import probes


def rss_kib() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_files() -> int:
    return sum(1 for _ in pathlib.Path("/proc/self/fd").iterdir())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-timeout", type=float, default=None)
    args = parser.parse_args()
    options = {}
    # The code before the fix had no limits; it runs with this script for the record.
    if (
        args.head_timeout is not None
        and "limits" in inspect.signature(probes.ProbeServer).parameters
    ):
        from deviceplugin_operator import listening

        options["limits"] = listening.Limits(head_timeout=args.head_timeout)
    server = probes.ProbeServer(**options)
    server.checks["always"] = lambda: True
    await server.start("127.0.0.1:0")
    print(json.dumps({"port": server.port}), flush=True)
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


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
