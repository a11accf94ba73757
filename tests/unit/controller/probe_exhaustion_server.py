"""The health-probe server alone in a process, for test_probe_exhaustion.py.

Prints one JSON line when listening (``{"port": ...}``), then every 50 ms the process's RSS
(KiB), the largest delay of a 10 ms timer on its event loop in that window and the number of
open file descriptors. ``--head-timeout`` shortens the deadline for a first request's head so
that the test need not wait for the default; the other limits are the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import exhaustion
from deviceplugin_operator.controller import probes


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-timeout", type=float, default=None)
    args = parser.parse_args()
    server = probes.ProbeServer(**exhaustion.limit_options(probes.ProbeServer, args.head_timeout))
    server.checks["always"] = lambda: True
    await server.start("127.0.0.1:0")
    await exhaustion.report(server.port)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
