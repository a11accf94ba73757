"""A minimal synchronous HTTPS client for the local apiserver and the components' health ports.

The cluster tooling needs a handful of requests (health, create nodes, read a few objects)
and must work before any Kubernetes client library is installed, so it uses the stdlib.
"""

from __future__ import annotations

import json
import pathlib
import ssl
import urllib.error
import urllib.request
from typing import Any

from localcluster import errors

JsonObject = dict[str, Any]


class ApiClient:
    """Authenticated requests to one apiserver with a client certificate."""

    def __init__(self, server: str, *, ca: pathlib.Path, cert: pathlib.Path, key: pathlib.Path):
        self.server = server
        self._context = ssl.create_default_context(cafile=str(ca))
        self._context.load_cert_chain(str(cert), str(key))

    def request(
        self,
        method: str,
        path: str,
        body: JsonObject | None = None,
        *,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, bytes]:
        """Send a request; return (status, body) for every HTTP answer, raise on no answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        request.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=timeout) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            raise errors.ClusterError(f"{method} {self.server}{path} failed: {error}") from error

    def ready(self) -> bool:
        status, _ = self.request("GET", "/readyz", timeout=2.0)
        return status == 200

    def get(self, path: str) -> JsonObject | None:
        """The object at ``path``, or None when it does not exist."""
        status, body = self.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise errors.ClusterError(f"GET {path} answered {status}: {body[:300]!r}")
        result: JsonObject = json.loads(body)
        return result

    def create(self, path: str, body: JsonObject) -> JsonObject | None:
        """POST ``body``; None when it already exists."""
        status, reply = self.request("POST", path, body)
        if status == 409:
            return None
        if status not in (200, 201):
            raise errors.ClusterError(f"POST {path} answered {status}: {reply[:300]!r}")
        result: JsonObject = json.loads(reply)
        return result


def _unverified() -> ssl.SSLContext:
    # Health endpoints of the controller-manager and scheduler serve self-signed certificates
    # that they generate at start; only liveness is read from them.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def healthz(port: int) -> bool:
    """Whether a component's secure port on 127.0.0.1 answers ``/healthz`` with 200."""
    url = f"https://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, context=_unverified(), timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def ok(url: str) -> bool:
    """Whether ``url`` (HTTP, or HTTPS without verification) answers 200."""
    try:
        with urllib.request.urlopen(url, context=_unverified(), timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def etcd_healthy(client_url: str) -> bool:
    try:
        with urllib.request.urlopen(client_url + "/health", timeout=2) as reply:
            return bool(json.loads(reply.read()).get("health") == "true")
    except (urllib.error.URLError, OSError, ValueError):
        return False
