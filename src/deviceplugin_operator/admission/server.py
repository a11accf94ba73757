"""The HTTPS admission server: AdmissionReview v1 in, a verdict (and a JSON patch) out.

Routes are generated from the device registry for the enabled devices only, at the
reference's paths (``/mutate-deviceplugin-intel-com-v1-<kind>``,
``/validate-deviceplugin-intel-com-v1-<kind>``), so existing webhook configurations keep
working; one handler per verb serves every kind. Bad input gets a well-formed answer: an
unreadable body is a 400 with a message, an oversized one a 413, a review of the wrong kind a
denial — never a 500, and the server stays up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import pathlib
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from deviceplugin_operator import devices
from deviceplugin_operator.admission import rules, sgx

log = logging.getLogger(__name__)

SGX_POD_PATH = "/mutate--v1-pod"
"""The reference's path of the SGX Pod mutator."""

MAX_BODY = 3 * 1024 * 1024
"""The apiserver never sends more than a 3 MiB object; anything bigger is refused with 413."""

ContextProvider = Callable[[devices.DeviceKind[Any], Mapping[str, Any]], Awaitable[rules.Context]]


async def _no_context(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> rules.Context:
    return rules.Context()


def tls_context(*, enable_http2: bool = False) -> ssl.SSLContext:
    """TLS >= 1.2 with forward-secret AEAD suites only, HTTP/1.1 by ALPN.

    aiohttp serves HTTP/1.1 only, so ``--enable-http2`` cannot offer ``h2`` here: advertising
    it would break clients that pick it.
    """
    if enable_http2:
        log.info("Serving webhooks over HTTP/1.1: HTTP/2 is not available in this server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.set_alpn_protocols(["http/1.1"])
    return context


def load_pem(context: ssl.SSLContext, cert: bytes, key: bytes, directory: pathlib.Path) -> None:
    """Load a PEM pair into ``context`` (the ssl module reads files only: written to
    ``directory`` first). New handshakes use it; open connections keep the old one."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key)
    cert_file.write_bytes(cert)
    context.load_cert_chain(cert_file, key_file)


@dataclasses.dataclass
class MountedCertificates:
    """``tls.crt``/``tls.key`` from a mounted directory, reloaded when they change."""

    directory: pathlib.Path
    context: ssl.SSLContext
    _stamp: tuple[float, float] | None = None

    def _mtimes(self) -> tuple[float, float]:
        return (
            (self.directory / "tls.crt").stat().st_mtime,
            (self.directory / "tls.key").stat().st_mtime,
        )

    def reload_if_changed(self) -> bool:
        """Load the pair when it is new or changed; whether it was loaded."""
        try:
            stamp = self._mtimes()
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        try:
            self.context.load_cert_chain(self.directory / "tls.crt", self.directory / "tls.key")
        except (OSError, ssl.SSLError) as error:
            log.warning("Loading mounted certificate failed", extra={"error": str(error)})
            return False
        self._stamp = stamp
        log.info("Loaded webhook certificate", extra={"directory": str(self.directory)})
        return True

    async def watch(self, period: float = 5.0) -> None:
        while True:
            await asyncio.sleep(period)
            self.reload_if_changed()


def _review_response(uid: str, allowed: bool, **fields: Any) -> web.Response:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed, **fields}
    return web.json_response(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    )


def _denied(uid: str, message: str, code: int = 403) -> web.Response:
    return _review_response(uid, False, status={"code": code, "message": message})


class AdmissionServer:
    """The webhook endpoints of the enabled kinds."""

    def __init__(
        self,
        kinds: Sequence[devices.DeviceKind[Any]],
        *,
        context_provider: ContextProvider = _no_context,
    ):
        self.kinds = {kind.mutate_path: kind for kind in kinds} | {
            kind.validate_path: kind for kind in kinds
        }
        self.context_provider = context_provider
        self.sgx_pods = any(kind.name == "sgx" for kind in kinds)
        self.serving = False
        self.port: int | None = None
        self.calls = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        for path, kind in self.kinds.items():
            handler = self._mutate if path == kind.mutate_path else self._validate
            app.router.add_post(path, handler)
        if self.sgx_pods:
            app.router.add_post(SGX_POD_PATH, self._mutate_sgx_pod)
        return app

    async def _mutate_sgx_pod(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        try:
            review = await request.json()
        except (ValueError, UnicodeDecodeError) as error:
            return web.Response(status=400, text=f"Malformed AdmissionReview: {error}")
        admission = review.get("request") if isinstance(review, dict) else None
        if not isinstance(admission, dict) or not isinstance(admission.get("uid"), str):
            return web.Response(status=400, text="Malformed AdmissionReview: no request.uid")
        uid = admission["uid"]
        if (admission.get("kind") or {}).get("kind") != "Pod":
            return _denied(uid, f"unexpected kind {(admission.get('kind') or {}).get('kind')!r}")
        pod = admission.get("object")
        if not isinstance(pod, dict):
            return _review_response(uid, True)
        try:
            ops = sgx.patch(pod)
        except rules.Rejected as rejected:
            return _denied(uid, str(rejected))
        if not ops:
            return _review_response(uid, True)
        encoded = base64.b64encode(json.dumps(ops).encode()).decode()
        return _review_response(uid, True, patchType="JSONPatch", patch=encoded)

    async def _review(
        self, request: web.Request
    ) -> tuple[devices.DeviceKind[Any], str, Mapping[str, Any]] | web.Response:
        """The kind, request uid and object of a review, or the response that refuses it."""
        self.calls += 1
        kind = self.kinds[request.path]
        try:
            review = await request.json()
        except web.HTTPRequestEntityTooLarge:
            raise
        except (ValueError, UnicodeDecodeError) as error:
            return web.Response(status=400, text=f"Malformed AdmissionReview: {error}")
        admission = review.get("request") if isinstance(review, dict) else None
        if not isinstance(admission, dict) or not isinstance(admission.get("uid"), str):
            return web.Response(status=400, text="Malformed AdmissionReview: no request.uid")
        uid = admission["uid"]
        requested = admission.get("kind") or {}
        if requested.get("kind") != kind.kind:
            return _denied(
                uid, f"unexpected kind {requested.get('kind')!r}: this path admits {kind.kind}"
            )
        obj = admission.get("object")
        if not isinstance(obj, dict):
            return _denied(uid, "invalid resource: the object could not be decoded", 400)
        return kind, uid, obj

    async def _mutate(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._review(request)
        if isinstance(parsed, web.Response):
            return parsed
        kind, uid, obj = parsed
        spec = obj.get("spec")
        patch: list[dict[str, Any]] = []
        if not isinstance(spec, dict):
            if spec is not None:
                return _denied(uid, "invalid resource: spec must be an object", 400)
            patch.append({"op": "add", "path": "/spec", "value": {}})
            spec = {}
        image = rules.default_image(kind, spec)
        if image is not None:
            patch.append({"op": "add", "path": "/spec/image", "value": image})
        if not patch:
            return _review_response(uid, True)
        encoded = base64.b64encode(json.dumps(patch).encode()).decode()
        return _review_response(uid, True, patchType="JSONPatch", patch=encoded)

    async def _validate(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._review(request)
        if isinstance(parsed, web.Response):
            return parsed
        kind, uid, obj = parsed
        try:
            rules.validate(kind, obj)
        except rules.Rejected as rejected:
            return _denied(uid, str(rejected))
        try:
            context = await self.context_provider(kind, obj)
        except Exception:  # a failing lookup must never turn a valid resource away
            log.exception("Gathering warning context failed", extra={"kind": kind.kind})
            context = rules.Context()
        found = rules.warnings(kind, obj, context)
        return _review_response(uid, True, **({"warnings": found} if found else {}))

    async def start(self, host: str, port: int, context: ssl.SSLContext) -> None:
        @web.middleware
        async def never_500(request: web.Request, handler: Any) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("Admission request failed", extra={"path": request.path})
                return web.Response(status=400, text="The admission request could not be handled")
            return response

        app = self.app()
        app.middlewares.append(never_500)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        self.serving = True
        log.info("Started admission server", extra={"port": self.port})

    async def stop(self) -> None:
        self.serving = False
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
