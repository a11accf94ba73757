"""The owner of a real-node cluster's namespaces: ``python -m localcluster.owner CONFIG.json``.

``Cluster`` starts it under ``unshare --net --mount --propagation private`` and hands it the
listening sockets it created on the host (127.0.0.1:<port>). Inside its new namespaces it

* brings ``lo`` up and puts the node address (10.99.0.1/32) on it,
* mounts private tmpfs over /run, /var/lib and /var/log, so the fixed paths of kubelet,
  containerd and CNI (``/var/lib/kubelet/device-plugins``, ``/run/containerd``,
  ``/run/netns``, ``/var/log/pods`` ...) never touch the host's,
* bind-mounts small files holding the values kubelet wants over the kernel tunables kubelet
  would otherwise write (``vm.overcommit_memory``, ``kernel.panic``, ...), so the host's
  values never change,
* writes the ready file, then forwards every connection accepted on a host socket to its
  target inside the namespace (a socket keeps the namespace it was created in).

Every other process of the cluster joins these namespaces with ``nsenter -t <owner> -n -m``.
When the owner and the last of them exit, the namespaces and every mount in them are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
from typing import Any


def _run(*argv: str) -> None:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed (exit {completed.returncode}): {completed.stderr.strip()}"
        )


def setup(config: dict[str, Any]) -> None:
    """Network address, private mounts and sysctl files, in this process's namespaces."""
    _run("ip", "link", "set", "lo", "up")
    _run("ip", "addr", "add", f"{config['address']}/32", "dev", "lo")
    for path in config["tmpfs"]:
        _run("mount", "-t", "tmpfs", "-o", "mode=0755", "localcluster", path)
    sysctl_dir = pathlib.Path(config["sysctl_dir"])
    sysctl_dir.mkdir(parents=True, exist_ok=True)
    for name, value in config["sysctls"].items():
        source = sysctl_dir / name.replace("/", ".")
        source.write_text(f"{value}\n")
        _run("mount", "--bind", str(source), f"/proc/sys/{name}")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.transport.abort()


def _forwarder(host: str, port: int) -> Any:
    async def forward(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.transport.abort()
            return
        try:
            await asyncio.gather(
                _pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer)
            )
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()

    return forward


async def serve(forwards: list[dict[str, Any]]) -> None:
    """Forward each inherited listening socket to its target until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers = []
    for forward in forwards:
        listener = socket.socket(fileno=forward["fd"])
        servers.append(
            await asyncio.start_server(
                _forwarder(forward["host"], forward["port"]), sock=listener, limit=1 << 16
            )
        )
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config: dict[str, Any] = json.loads(pathlib.Path(args[0]).read_text())
    try:
        setup(config)
    except (RuntimeError, OSError) as error:
        print(f"owner: setup failed: {error}", file=sys.stderr, flush=True)
        return 1
    ready = pathlib.Path(config["ready_file"])
    info = {
        "pid": os.getpid(),
        "net": os.readlink("/proc/self/ns/net"),
        "mnt": os.readlink("/proc/self/ns/mnt"),
    }
    partial = ready.with_name(ready.name + ".tmp")
    partial.write_text(json.dumps(info))
    partial.replace(ready)
    print(f"owner: ready {info}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config["forwards"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
