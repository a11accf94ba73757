"""TLS handshakes as a probing client makes them, and a control server that accepts TLS 1.0.

A refusal of TLS 1.0/1.1 proves nothing if the probing client cannot speak them (OpenSSL
builds and security levels often cannot): ``legacy_control`` serves the same certificate with
every version down to TLS 1.0, and a test asserts that the probe gets through to it before it
counts the operator's refusal.
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator

LEGACY = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1}


def handshake(port: int, version: ssl.TLSVersion) -> str | None:
    """The version negotiated by a client limited to ``version`` (all ciphers, security level
    0), or None when the server refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            return tls.version()
    except (ssl.SSLError, OSError):
        return None


@contextlib.contextmanager
def legacy_control(cert: bytes, key: bytes) -> Iterator[int]:
    """A server with this certificate that speaks every version down to TLS 1.0; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = pathlib.Path(directory, "c.crt"), pathlib.Path(directory, "c.key")
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError, ssl.SSLError), conn:
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
