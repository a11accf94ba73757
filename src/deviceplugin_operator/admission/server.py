"""The HTTPS admission server: AdmissionReview v1 in, a verdict (and a JSON patch) out.

Routes come from ``endpoints.webhooks`` for the enabled devices only, at the reference's
paths, so existing webhook configurations keep working and a disabled device's paths answer
404. There is one handler per verb (default, validate, SGX pods, FPGA pods), not per kind.

Bad input gets a well-formed answer and the server stays up: a body that is not JSON or not an
AdmissionReview is a 400 with a message, a body over ``MAX_BODY`` a 413, one without a
Content-Length a 411, a content type other than JSON a 415, a review of the wrong kind or
resource a denial; a bug in a rule is logged and answered with a denial (``status.code`` 500
inside an HTTP 200), never an HTTP 500.

No client can exhaust the process that also renews the Lease and answers the probes (one 3 MB
pod review with 27,000 containers held the event loop for 1.7 s): connections are capped and
given deadlines (``listening.GuardedSite``); bodies are read only while the bytes of all bodies
being handled stay within ``BODY_BUDGET`` and within ``READ_TIMEOUT``; reviews are parsed, and
pods mutated, on ``WORKERS`` threads of their own, not on the event loop, once the body is over
``INLINE_BODY`` bytes (below it, the hop to a thread costs more than the parse); a pod with more
than ``MAX_CONTAINERS`` containers is denied with a message.

TLS (``tls_context``): TLS 1.2 or newer, forward-secret AEAD suites only (ECDHE with AES-GCM
or ChaCha20-Poly1305), ALPN ``http/1.1``. Certificates come from a ``CertificateSource``:
``StaticCertificate`` (PEM in memory, e.g. the self-managed CA's) or ``DirectoryCertificate``
(``tls.crt``/``tls.key`` mounted from a Secret by cert-manager or the OpenShift service CA);
``ReloadingCertificate`` polls a source and loads a changed pair into the live context, so new
handshakes use it while open connections keep theirs.

Client authentication (opt-in, ``tls_context(client_ca=...)`` and ``allowed_clients``): the
handshake requires a client certificate signed by that CA, so a caller without one never gets
to send a request; with ``allowed_clients`` only certificates whose common name or a DNS name
is listed get an answer, others a 403. kube-apiserver presents one when its
``--admission-control-config-file`` gives the webhook plugins a kubeconfig with it
(SECURITY.md). Off by default: managed control planes often cannot be configured so.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import pathlib
import ssl
import tempfile
import time
import types
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from aiohttp import web

from deviceplugin_operator import devices, listening
from deviceplugin_operator.admission import endpoints, errors, fpga, review, rules, sgx

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
"""Largest accepted request body; anything bigger is refused with 413. An object in etcd has
at most 1.5 MiB: a pod review (CREATE) carries one, and an UPDATE of a device-plugin resource
(a few KiB) two, so real reviews stay well below."""

BODY_BUDGET = 2 * MAX_BODY
"""Bytes of request bodies handled at once, from reading to answering; a request waits (at
most ``READ_TIMEOUT``) until its Content-Length fits. Parsed, a review takes about 7 times its
size, so this bounds the memory of requests to about 50 MiB."""

READ_TIMEOUT = 10.0
"""Seconds a request may take to get its turn and send its body: the API server's own timeout
for a webhook call is 10 s."""

WORKERS = 2
"""Threads that parse large reviews and mutate large pods: the event loop never does that
work, and at most this many of them are in memory as Python objects."""

INLINE_BODY = 32 * 1024
"""Reviews up to this many bytes are parsed on the event loop: a typical one (2-10 KB) parses
in ~10 us, while handing it to a worker thread and back costs ~0.1 ms of every request's
latency. Larger ones (up to ~0.1 ms inline) go to the workers, so no review holds the loop."""

INLINE_CONTAINERS = 16
"""Pods with up to this many containers and init containers are mutated on the event loop
(tens of microseconds); larger ones on the workers."""

MAX_CONTAINERS = 1000
"""Containers of a pod the Pod mutators handle (about 0.1 s of work); more are denied.
Kubernetes sets no limit, but no real pod comes near it."""

CONTEXT_TIMEOUT = 2.0
"""Seconds the warnings may wait for cluster lookups before they are skipped: the API server
gives the whole call 10 s, and a slow lookup must not turn into a failed admission."""

T = TypeVar("T")
MaybeAwaitable: TypeAlias = T | Awaitable[T]

ContextProvider = Callable[[devices.DeviceKind[Any], Mapping[str, Any]], Awaitable[rules.Context]]
"""Gathers what the warnings for one resource under review need to know about the cluster."""

SelectorsProvider = Callable[
    [devices.DeviceKind[Any]], MaybeAwaitable[Mapping[str, Mapping[str, str] | None]]
]
"""``spec.nodeSelector`` of every resource of a kind, by resource name (e.g. from a cache)."""


async def _resolved(value: MaybeAwaitable[T]) -> T:
    if isinstance(value, Awaitable):
        return await value
    return value


def context_provider(*, selectors: SelectorsProvider | None = None) -> ContextProvider:
    """A ``ContextProvider`` from the lookup the warnings use (sync or async); without it,
    overlapping nodeSelectors are not warned about."""

    async def provide(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> rules.Context:
        others: Mapping[str, Mapping[str, str] | None] = {}
        if selectors is not None:
            others = await _resolved(selectors(kind))
        return rules.Context(other_selectors=others)

    return provide


async def _no_context(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> rules.Context:
    return rules.Context()


# TLS -------------------------------------------------------------------------------------


def tls_context(
    source: CertificateSource | None = None,
    *,
    enable_http2: bool = False,
    client_ca: pathlib.Path | None = None,
) -> ssl.SSLContext:
    """A server context with the pair of ``source`` loaded (none yet when None); with
    ``client_ca`` (a PEM file of CA certificates) every client must present a certificate it
    signed, else the handshake fails.

    ALPN offers HTTP/1.1 alone even with ``enable_http2``: aiohttp does not speak HTTP/2, and
    offering ``h2`` would make the API server's client pick a protocol nobody answers.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    if enable_http2:
        log.info("Kept HTTP/1.1 on the webhook server: HTTP/2 is not available there")
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    if source is not None:
        load_pem(context, *source.load())
    return context


def client_names(certificate: Mapping[str, Any] | None) -> set[str]:
    """The common name and the DNS names of a peer certificate (``getpeercert()``)."""
    if not certificate:
        return set()
    names = {
        str(value)
        for rdn in certificate.get("subject", ())
        for key, value in rdn
        if key == "commonName"
    }
    names.update(str(value) for key, value in certificate.get("subjectAltName", ()) if key == "DNS")
    return names


class CertificateSource(Protocol):
    """Where a serving certificate comes from."""

    def load(self) -> tuple[bytes, bytes]:
        """(certificate chain PEM, private key PEM); OSError when it cannot be read."""
        ...


@dataclasses.dataclass(frozen=True)
class StaticCertificate:
    """A pair held in memory (e.g. the operator's self-managed certificate)."""

    cert: bytes
    key: bytes

    def load(self) -> tuple[bytes, bytes]:
        return self.cert, self.key


@dataclasses.dataclass(frozen=True)
class DirectoryCertificate:
    """``tls.crt``/``tls.key`` in a directory, read afresh on every ``load``."""

    directory: pathlib.Path
    cert_name: str = "tls.crt"
    key_name: str = "tls.key"

    def load(self) -> tuple[bytes, bytes]:
        return (
            (self.directory / self.cert_name).read_bytes(),
            (self.directory / self.key_name).read_bytes(),
        )


def load_pem(
    context: ssl.SSLContext, cert: bytes, key: bytes, directory: pathlib.Path | None = None
) -> None:
    """Load a PEM pair into ``context``; ``ssl.SSLError`` (and ``context`` unchanged) when it
    is not a matching pair.

    The ssl module reads chains only from files: on Linux they are anonymous in-memory files,
    so the key never touches a disk; elsewhere a private temporary directory (inside
    ``directory`` when given) holds them for the duration of the call.
    """
    with _pem_files(cert, key, directory) as (cert_file, key_file):
        # A pair failing half-way would leave the live context with the new certificate and
        # the old key, refusing every handshake: it is tried on a scratch context first.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
        context.load_cert_chain(cert_file, key_file)


@contextlib.contextmanager
def _pem_files(
    cert: bytes, key: bytes, directory: pathlib.Path | None
) -> Iterator[tuple[str, str]]:
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        files = [os.fdopen(os.memfd_create(name), "wb") for name in ("tls.crt", "tls.key")]
        try:
            for file, data in zip(files, (cert, key), strict=True):
                file.write(data)
                file.flush()
            yield f"/proc/self/fd/{files[0].fileno()}", f"/proc/self/fd/{files[1].fileno()}"
        finally:
            for file in files:
                file.close()
        return
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="webhook-tls-", dir=directory) as private:
        cert_path, key_path = pathlib.Path(private, "tls.crt"), pathlib.Path(private, "tls.key")
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        yield str(cert_path), str(key_path)


class ReloadingCertificate:
    """Keeps ``context`` serving the current pair of ``source``, checked every ``period``
    seconds by ``watch``. Contents are compared, not modification times: a Secret volume
    swaps a symlink, and two writes within one mtime tick would look like none."""

    def __init__(self, source: CertificateSource, context: ssl.SSLContext, *, period: float = 5.0):
        self.source = source
        self.context = context
        self.period = period
        self._loaded: tuple[bytes, bytes] | None = None

    def reload_if_changed(self) -> bool:
        """Load the pair when it is new or changed; whether it was loaded. A pair that cannot
        be read or does not match (a half-written update) is skipped until the next check."""
        try:
            pair = self.source.load()
        except OSError as error:
            log.warning("Reading the webhook certificate failed", extra={"error": str(error)})
            return False
        if pair == self._loaded:
            return False
        try:
            load_pem(self.context, *pair)
        except (OSError, ssl.SSLError) as error:
            log.warning("Loading the webhook certificate failed", extra={"error": str(error)})
            return False
        self._loaded = pair
        log.info("Loaded webhook certificate")
        return True

    @property
    def served(self) -> bytes | None:
        """The certificate chain (PEM) loaded last, None before one was."""
        return None if self._loaded is None else self._loaded[0]

    async def watch(self) -> None:
        """Check forever (cancel the task to stop)."""
        while True:
            await asyncio.sleep(self.period)
            self.reload_if_changed()


class MountedCertificates(ReloadingCertificate):
    """``tls.crt``/``tls.key`` mounted in ``directory``, reloaded when they change."""

    def __init__(self, directory: pathlib.Path, context: ssl.SSLContext, *, period: float = 5.0):
        super().__init__(DirectoryCertificate(directory), context, period=period)
        self.directory = directory


# The server ------------------------------------------------------------------------------


Answer = Callable[[endpoints.Webhook, review.AdmissionRequest], Awaitable[review.AdmissionResponse]]


class RequestObserver(Protocol):
    """Hears of each request to a webhook path: when it starts and how it ended."""

    def started(self, path: str) -> None: ...

    def finished(self, path: str, code: int, seconds: float) -> None: ...


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


class AdmissionServer:
    """The webhook endpoints of the enabled kinds, served over HTTPS.

    ``kinds`` are the enabled device kinds (records of ``devices.KINDS``); SGX brings the SGX
    Pod mutator and FPGA the FPGA Pod mutator, which reads ``fpga_mappings`` (one is made when
    not given: feed it from the AcceleratorFunction and FpgaRegion watchers). Until
    ``fpga_loaded`` says they are complete (their first lists are in), FPGA pods are refused
    with a message to retry, never judged against a partial set of mappings.
    ``context_provider`` gathers what validation warnings need (see ``context_provider()``).
    ``allowed_registries`` (empty: any) are the registries, optionally with a path prefix,
    that plugin and init images must come from (``validation.check_registry``).
    ``allowed_clients`` (empty: any client the TLS context accepts) are the common or DNS
    names of the client certificates answered; others get a 403.
    ``observer`` hears of every request to a webhook path (the metrics).
    """

    def __init__(
        self,
        kinds: Iterable[devices.DeviceKind[Any]],
        *,
        context_provider: ContextProvider | None = None,
        fpga_mappings: fpga.Mappings | None = None,
        fpga_loaded: Callable[[], bool] | None = None,
        pod_failure_policy: endpoints.FailurePolicy = "Fail",
        max_body: int = MAX_BODY,
        context_timeout: float = CONTEXT_TIMEOUT,
        allowed_registries: Iterable[str] = (),
        allowed_clients: Iterable[str] = (),
        limits: listening.Limits = listening.LIMITS,
        body_budget: int = BODY_BUDGET,
        read_timeout: float = READ_TIMEOUT,
        max_containers: int = MAX_CONTAINERS,
        observer: RequestObserver | None = None,
    ):
        self.webhooks = endpoints.webhooks(
            (kind.name for kind in kinds), pod_failure_policy=pod_failure_policy
        )
        self._by_path = {webhook.path: webhook for webhook in self.webhooks}
        # (group, kind) of what each path admits, worked out once (not per review).
        self._admits = {
            webhook.path: (webhook.kind.resource.group, webhook.kind.kind)
            for webhook in self.webhooks
        }
        self.context_provider = context_provider or _no_context
        self.fpga_mappings = fpga_mappings if fpga_mappings is not None else fpga.Mappings()
        self.fpga_loaded = fpga_loaded or (lambda: True)
        self.max_body = max_body
        self.context_timeout = context_timeout
        self.allowed_registries = tuple(allowed_registries)
        self.allowed_clients = frozenset(allowed_clients)
        self.refused_clients = 0
        """Requests refused because their client certificate names no allowed client."""
        self.limits = limits
        self.read_timeout = read_timeout
        self.max_containers = max_containers
        self.observer = observer
        self._budget = _Budget(max(body_budget, max_body))
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None
        self._site: listening.GuardedSite | None = None
        self.calls = 0
        """Admission requests answered (tests see whether the API server called at all)."""
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._answers: Mapping[endpoints.Verb, Answer] = {
            endpoints.Verb.DEFAULT: self._default,
            endpoints.Verb.VALIDATE: self._validate,
            endpoints.Verb.MUTATE_SGX_POD: self._mutate_sgx_pod,
            endpoints.Verb.MUTATE_FPGA_POD: self._mutate_fpga_pod,
        }

    @property
    def serving(self) -> bool:
        """Whether the HTTPS listener is up (the readiness check)."""
        return self._runner is not None and self.port is not None

    def app(self) -> web.Application:
        """The aiohttp application: one POST route per webhook, each to its verb's handler."""
        app = web.Application(
            client_max_size=self.max_body, middlewares=[self._observed, _never_500]
        )
        # Outermost: a client not allowed gets nothing else of the server.
        app.middlewares.insert(0, self._known_client)
        for webhook in self.webhooks:
            app.router.add_post(webhook.path, self._handle)
        return app

    @web.middleware
    async def _observed(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        observer = self.observer
        if observer is None or request.path not in self._by_path:
            return await handler(request)
        observer.started(request.path)
        began = time.perf_counter()
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as error:
            code = error.status
            raise
        finally:
            observer.finished(request.path, code, time.perf_counter() - began)

    @web.middleware
    async def _known_client(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if self.allowed_clients:
            transport = request.transport
            names = client_names(transport.get_extra_info("peercert") if transport else None)
            if not names & self.allowed_clients:
                self.refused_clients += 1
                log.warning(
                    "Refused a webhook client not allowed by --webhook-client-names",
                    extra={"client": sorted(names), "peer": request.remote},
                )
                return web.Response(status=403, text="This client is not allowed")
        return await handler(request)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        webhook = self._by_path[request.path]
        if not _is_json(request.headers.get("Content-Type", "")):
            return web.Response(
                status=415,
                text=f"Content-Type {request.headers.get('Content-Type', '')!r}, "
                "expected application/json",
            )
        length = request.content_length
        if length is None:
            return web.Response(status=411, text="An AdmissionReview needs a Content-Length")
        if length > self.max_body:
            return web.Response(
                status=413, text=f"An AdmissionReview of {length} bytes is over {self.max_body}"
            )
        # Deadlines only for what can wait: a timer costs about as much as parsing a small
        # review, and a request that fits the budget and has arrived whole waits for nothing.
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        if not self._budget.take_now(length):
            try:
                async with asyncio.timeout_at(deadline):
                    await self._budget.take(length)
            except TimeoutError:
                return _busy()
        try:
            try:
                if request.content.is_eof():
                    body = await request.read()
                else:
                    async with asyncio.timeout_at(deadline):
                        body = await request.read()
                if len(body) <= INLINE_BODY:
                    admission = review.parse(body)
                else:
                    async with asyncio.timeout_at(deadline):
                        admission = await self._in_worker(review.parse, body)
            except errors.MalformedReview as malformed:
                return web.Response(status=400, text=f"Malformed AdmissionReview: {malformed}")
            except TimeoutError:
                return _busy()
            response = await self.answer(webhook, admission)
        finally:
            # Held until answered: the parsed review, not the body, is what takes the memory.
            self._budget.give_back(length)
        return web.Response(
            body=review.body_of(response), content_type="application/json", charset="utf-8"
        )

    async def _in_worker(self, function: Callable[..., T], *args: Any) -> T:
        if self._workers is None:
            self._workers = concurrent.futures.ThreadPoolExecutor(
                WORKERS, thread_name_prefix="admission"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers, functools.partial(function, *args))

    async def answer(
        self, webhook: endpoints.Webhook, request: review.AdmissionRequest
    ) -> review.AdmissionResponse:
        """The verdict of ``webhook`` on ``request``: what the route sends back, without HTTP."""
        self.calls += 1
        try:
            response = await self._answers[webhook.verb](webhook, request)
        except errors.Rejected as rejected:
            response = review.denied(request.uid, rejected.message, rejected.code)
        except Exception:
            log.exception(
                "Admission request failed", extra={"webhook": webhook.name, "uid": request.uid}
            )
            response = review.errored(
                request.uid, 500, "internal error in the admission webhook; see the operator log"
            )
        if not response.allowed:
            log.info(
                "Denied admission request",
                extra={
                    "webhook": webhook.name,
                    # Not "name": LogRecord's own attribute, which makes logging raise.
                    "object": request.name,
                    "namespace": request.namespace,
                    "reason": response.status.message if response.status else None,
                },
            )
        return response

    # Verbs -----------------------------------------------------------------------------

    def _resource_under_review(
        self, webhook: endpoints.Webhook, request: review.AdmissionRequest
    ) -> devices.DeviceKind[Any]:
        kind = webhook.kind
        admits = self._admits[webhook.path]
        if (request.kind.group, request.kind.kind) != admits:
            raise errors.Rejected(
                f'unexpected kind "{request.kind}": this webhook admits '
                f"{kind.resource.api_version} {kind.kind}",
                code=400,
            )
        return kind

    async def _default(
        self, webhook: endpoints.Webhook, request: review.AdmissionRequest
    ) -> review.AdmissionResponse:
        kind = self._resource_under_review(webhook, request)
        if request.operation not in ("CREATE", "UPDATE"):
            return review.allowed(request.uid)
        return review.allowed(request.uid, rules.default(kind, request.object))

    async def _validate(
        self, webhook: endpoints.Webhook, request: review.AdmissionRequest
    ) -> review.AdmissionResponse:
        kind = self._resource_under_review(webhook, request)
        if request.operation not in ("CREATE", "UPDATE"):
            return review.allowed(request.uid)
        context = rules.Context()
        if isinstance(request.object, Mapping):
            context = await self._context(kind, request.object)
        warnings = rules.validate(
            kind,
            request.object,
            request.old_object,
            context,
            allowed_registries=self.allowed_registries,
        )
        return review.allowed(request.uid, warnings=warnings)

    async def _context(
        self, kind: devices.DeviceKind[Any], obj: Mapping[str, Any]
    ) -> rules.Context:
        # Warnings are a courtesy: a failing or slow lookup loses them, never the admission.
        started = time.monotonic()
        try:
            lookup: Awaitable[rules.Context] = self.context_provider(kind, obj)
            if isinstance(lookup, types.CoroutineType):
                # The lookups answer from caches, mostly without waiting: run to the first
                # wait by hand, and only a lookup that waits gets a deadline (a timer costs
                # about a tenth of a small review's time in the server).
                try:
                    waiting_for = lookup.send(None)
                except StopIteration as done:
                    found: rules.Context = done.value
                    return found
                lookup = _Resumed(lookup, waiting_for)
            # A timeout scope, not wait_for: that wraps the lookup in a task of its own.
            async with asyncio.timeout(self.context_timeout):
                return await lookup
        except TimeoutError:
            log.warning(
                "Gathering warning context timed out",
                extra={"kind": kind.kind, "seconds": round(time.monotonic() - started, 3)},
            )
        except Exception:
            log.exception("Gathering warning context failed", extra={"kind": kind.kind})
        return rules.Context()

    def _pod_under_review(self, request: review.AdmissionRequest) -> int:
        """Check the request is a Pod with at most ``max_containers`` containers; how many
        containers and init containers it has."""
        if (request.resource.group, request.resource.version, request.resource.resource) != (
            "",
            "v1",
            "pods",
        ):
            raise errors.Rejected(f'unexpected resource type "{request.resource}"', code=400)
        pod = request.object
        spec = pod.get("spec") if isinstance(pod, Mapping) else None
        containers = spec.get("containers") if isinstance(spec, Mapping) else None
        if isinstance(containers, list) and len(containers) > self.max_containers:
            raise errors.Rejected(
                f"the Pod has {len(containers)} containers; this webhook handles at most "
                f"{self.max_containers} per Pod: split the workload into several Pods"
            )
        init = spec.get("initContainers") if isinstance(spec, Mapping) else None
        return sum(len(found) for found in (containers, init) if isinstance(found, list))

    async def _mutated(self, containers: int, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the event loop for a pod of a few containers (the hop to a
        worker would cost more), on a worker thread for a large one."""
        if containers <= INLINE_CONTAINERS:
            return function(*args)
        return await self._in_worker(function, *args)

    async def _mutate_sgx_pod(
        self, webhook: endpoints.Webhook, request: review.AdmissionRequest
    ) -> review.AdmissionResponse:
        containers = self._pod_under_review(request)
        if request.operation != "CREATE" or request.object is None:
            return review.allowed(request.uid)
        patch = await self._mutated(containers, sgx.mutate, request.object)
        if patch:
            log.info("Mutated SGX Pod", extra={"namespace": request.namespace, "uid": request.uid})
        return await self._mutated(containers, review.allowed, request.uid, patch)

    async def _mutate_fpga_pod(
        self, webhook: endpoints.Webhook, request: review.AdmissionRequest
    ) -> review.AdmissionResponse:
        containers = self._pod_under_review(request)
        if request.operation != "CREATE" or request.object is None:
            return review.allowed(request.uid)
        if not self.fpga_loaded():
            # A denial, not an error: kubectl shows it, and a controller creating the pod
            # (Job, ReplicaSet) retries.
            raise errors.Rejected(
                "the FPGA resource mappings (AcceleratorFunctions, FpgaRegions) are still "
                "being loaded; retry in a moment",
                code=503,
            )
        patch = await self._mutated(
            containers, self.fpga_mappings.mutate, request.object, request.namespace
        )
        if patch:
            log.info("Mutated FPGA Pod", extra={"namespace": request.namespace, "uid": request.uid})
        return await self._mutated(containers, review.allowed, request.uid, patch)

    # Lifecycle -------------------------------------------------------------------------

    async def start(self, host: str, port: int, context: ssl.SSLContext) -> int:
        """Listen on ``host:port`` (0: any free port) with TLS; the bound port."""
        runner = web.AppRunner(self.app(), access_log=None, **listening.runner_options(self.limits))
        await runner.setup()
        site = listening.GuardedSite(runner, host, port, ssl_context=context, limits=self.limits)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._site = site
        self.port = site.port
        log.info("Started admission server", extra={"port": self.port})
        return self.port

    def connections(self) -> listening.Connections:
        """What the server's connections are doing (all 0 before it started)."""
        return self._site.connections() if self._site is not None else listening.Connections()

    async def stop(self) -> None:
        """Stop listening; requests in flight are given a moment to finish."""
        runner, self._runner = self._runner, None
        self.port = None
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
            log.info("Stopped admission server")
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)


class _Resumed(Generic[T]):
    """The rest of a coroutine run by hand up to its first wait (on ``waiting_for``), to be
    awaited as the coroutine itself would be: what the task sends or throws goes on to it."""

    def __init__(self, coroutine: Coroutine[Any, Any, T], waiting_for: Any):
        self._coroutine = coroutine
        self._waiting_for = waiting_for

    def __await__(self) -> Generator[Any, None, T]:
        waiting_for = self._waiting_for
        while True:
            try:
                try:
                    yield waiting_for
                except BaseException as error:  # a cancellation (the deadline) included
                    waiting_for = self._coroutine.throw(error)
                else:
                    waiting_for = self._coroutine.send(None)
            except StopIteration as done:
                result: T = done.value
                return result


class _Budget:
    """Bytes that the requests being handled may hold at once."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_now(self, size: int) -> bool:
        """Hold ``size`` more bytes if they fit now; whether they were taken."""
        if self.held + size > self.capacity:
            return False
        self.held += size
        return True

    async def take(self, size: int) -> None:
        """Wait until ``size`` more bytes fit, and hold them."""
        while self.held + size > self.capacity:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


def _busy() -> web.Response:
    return web.Response(status=503, text="The admission request was not read in time; retry")


@web.middleware
async def _never_500(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        # Only reading the body can fail here (a client gone mid-request): the reviews have
        # their own catch-all, which answers with a denial.
        log.exception("Admission request could not be read", extra={"path": request.path})
        return web.Response(status=400, text="The admission request could not be read")
