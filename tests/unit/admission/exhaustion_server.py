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
import sys
import tempfile

import exhaustion
from deviceplugin_operator import devices
from deviceplugin_operator.admission import server
from deviceplugin_operator.controller import certificates


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-timeout", type=float, default=None)
    args = parser.parse_args()
    bundle = certificates.issue(
        ["127.0.0.1"], datetime.datetime.now(datetime.UTC), common_name="exhaustion"
    )
    context = server.tls_context(server.StaticCertificate(bundle.cert, bundle.key))
    options = exhaustion.limit_options(server.AdmissionServer, args.head_timeout)
    admission = server.AdmissionServer([devices.KINDS["sgx"], devices.KINDS["gpu"]], **options)
    with tempfile.TemporaryDirectory():
        port = await admission.start("127.0.0.1", 0, context)
    await exhaustion.report(port)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
