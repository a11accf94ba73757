"""Who may scrape ``--metrics-secure`` metrics: the API server decides, as with
controller-runtime's ``filters.WithAuthenticationAndAuthorization``.

A scrape must carry a bearer token. A TokenReview asks the API server whose token it is; a
SubjectAccessReview then asks whether that user may ``get`` the non-resource URL scraped
(``/metrics``), which a ClusterRole grants with ``nonResourceURLs: ["/metrics"]``. The operator
itself needs ``create`` on ``tokenreviews`` and ``subjectaccessreviews`` for this.

Positive decisions are cached briefly per token, verb and path (a Prometheus scrape every few
seconds would otherwise cost two API requests each); refusals are not cached, so a role just
granted works at the next scrape.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import time
from collections.abc import Callable

from deviceplugin_operator.kube import client, objects, resources

TOKEN_REVIEWS = resources.Resource(
    "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False
)
SUBJECT_ACCESS_REVIEWS = resources.Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)
ALLOW_TTL = 10.0
"""Seconds a positive decision is reused."""
_MAX_CACHED = 1024


class Verdict(enum.Enum):
    ALLOWED = 200
    UNAUTHENTICATED = 401
    FORBIDDEN = 403


@dataclasses.dataclass(frozen=True)
class Decision:
    verdict: Verdict
    user: str = ""
    """The authenticated user name ("" when unauthenticated)."""


class Authorizer:
    """Authenticates bearer tokens and authorises requests through the API server."""

    def __init__(
        self,
        kube: client.KubeClient,
        *,
        allow_ttl: float = ALLOW_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.allow_ttl = allow_ttl
        self._clock = clock
        self._allowed: dict[tuple[str, str, str], tuple[float, str]] = {}

    async def decide(self, authorization: str | None, verb: str, path: str) -> Decision:
        """The decision for a request with this ``Authorization`` header.

        Raises ``errors.KubeError`` when the API server could not be asked.
        """
        token = bearer_token(authorization)
        if token is None:
            return Decision(Verdict.UNAUTHENTICATED)
        key = (hashlib.sha256(token.encode()).hexdigest(), verb, path)
        now = self._clock()
        cached = self._allowed.get(key)
        if cached is not None and cached[0] > now:
            return Decision(Verdict.ALLOWED, cached[1])

        user = await self._authenticate(token)
        if user is None:
            return Decision(Verdict.UNAUTHENTICATED)
        username = str(user.get("username") or "")
        if not await self._authorize(user, verb, path):
            return Decision(Verdict.FORBIDDEN, username)
        self._remember(key, now + self.allow_ttl, username)
        return Decision(Verdict.ALLOWED, username)

    async def _authenticate(self, token: str) -> objects.JsonObject | None:
        review = await self.kube.create(
            TOKEN_REVIEWS,
            {
                "apiVersion": TOKEN_REVIEWS.api_version,
                "kind": TOKEN_REVIEWS.kind,
                "spec": {"token": token},
            },
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return None
        user: objects.JsonObject = status.get("user") or {}
        return user

    async def _authorize(self, user: objects.JsonObject, verb: str, path: str) -> bool:
        spec: objects.JsonObject = {
            "user": user.get("username") or "",
            "groups": user.get("groups") or [],
            "nonResourceAttributes": {"path": path, "verb": verb},
        }
        if user.get("uid"):
            spec["uid"] = user["uid"]
        if user.get("extra"):
            spec["extra"] = user["extra"]
        review = await self.kube.create(
            SUBJECT_ACCESS_REVIEWS,
            {
                "apiVersion": SUBJECT_ACCESS_REVIEWS.api_version,
                "kind": SUBJECT_ACCESS_REVIEWS.kind,
                "spec": spec,
            },
        )
        status = review.get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied")

    def _remember(self, key: tuple[str, str, str], until: float, user: str) -> None:
        if len(self._allowed) >= _MAX_CACHED:
            now = self._clock()
            self._allowed = {k: v for k, v in self._allowed.items() if v[0] > now}
            if len(self._allowed) >= _MAX_CACHED:
                self._allowed.clear()
        self._allowed[key] = (until, user)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
