"""The admission server alone in a process, for tests/unit/admission/test_server_exhaustion.py.

Prints one JSON line when listening (``{"port": ...}``), then every 50 ms the process's RSS
(KiB), the largest delay of a 10 ms timer on the server's event loop in that window (what a
Lease renewal or a probe would have waited) and the connections the server holds open. With
``--head-timeout`` the server's deadline for a first request's head is shortened, so that a
test need not wait for the default; the other limits are the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import inspect
import json
import pathlib
import sys
import tempfile
import time

from deviceplugin_operator import devices
from deviceplugin_operator.admission import server
from deviceplugin_operator.controller import certificates


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
    bundle = certificates.issue(
        ["127.0.0.1"], datetime.datetime.now(datetime.UTC), common_name="exhaustion"
    )
    context = server.tls_context(server.StaticCertificate(bundle.cert, bundle.key))
    options = {}
    # The code before the fix had no limits; it is run with this script for the record.
    if (
        args.head_timeout is not None
        and "limits" in inspect.signature(server.AdmissionServer).parameters
    ):
        from deviceplugin_operator import listening

        options["limits"] = listening.Limits(head_timeout=args.head_timeout)
    admission = server.AdmissionServer([devices.KINDS["sgx"], devices.KINDS["gpu"]], **options)
    with tempfile.TemporaryDirectory():
        port = await admission.start("127.0.0.1", 0, context)
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


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
