"""Who may scrape ``--metrics-secure`` metrics: the API server decides, as with
controller-runtime's ``filters.WithAuthenticationAndAuthorization``.

A scrape must carry a bearer token. A TokenReview asks the API server whose token it is; a
SubjectAccessReview then asks whether that user may ``get`` the non-resource URL scraped
(``/metrics``), which a ClusterRole grants with ``nonResourceURLs: ["/metrics"]``. The operator
itself needs ``create`` on ``tokenreviews`` and ``subjectaccessreviews`` for this.

Decisions are cached per token, verb and path: allowed ones for ``ALLOW_TTL`` (a Prometheus
scrape every few seconds would otherwise cost two API requests each), refusals for
``DENY_TTL`` (so a role just granted works within seconds, and a client repeating a junk token
costs one review, not one per request). Reviews for tokens not in the cache are rate-limited
(``REVIEWS_PER_SECOND``, bursts of ``REVIEW_BURST``): a flood of distinct junk tokens gets
429 without reaching the API server, while a cached scraper keeps its answers.
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
DENY_TTL = 5.0
"""Seconds a refusal (unknown token, or no access) is reused."""
REVIEWS_PER_SECOND = 5.0
"""Token reviews asked for per second on average, for tokens not in the cache."""
REVIEW_BURST = 20
_MAX_CACHED = 1024


class Verdict(enum.Enum):
    ALLOWED = 200
    UNAUTHENTICATED = 401
    FORBIDDEN = 403
    THROTTLED = 429


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
        deny_ttl: float = DENY_TTL,
        reviews_per_second: float = REVIEWS_PER_SECOND,
        review_burst: int = REVIEW_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.allow_ttl = allow_ttl
        self.deny_ttl = deny_ttl
        self.reviews_per_second = reviews_per_second
        self.review_burst = review_burst
        self._clock = clock
        self._decided: dict[tuple[str, str, str], tuple[float, Decision]] = {}
        self._tokens = float(review_burst)
        self._refilled = clock()

    async def decide(self, authorization: str | None, verb: str, path: str) -> Decision:
        """The decision for a request with this ``Authorization`` header.

        Raises ``errors.KubeError`` when the API server could not be asked.
        """
        token = bearer_token(authorization)
        if token is None:
            return Decision(Verdict.UNAUTHENTICATED)
        key = (hashlib.sha256(token.encode()).hexdigest(), verb, path)
        now = self._clock()
        cached = self._decided.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if not self._may_review(now):
            return Decision(Verdict.THROTTLED)

        user = await self._authenticate(token)
        if user is None:
            decision = Decision(Verdict.UNAUTHENTICATED)
        else:
            username = str(user.get("username") or "")
            allowed = await self._authorize(user, verb, path)
            decision = Decision(Verdict.ALLOWED if allowed else Verdict.FORBIDDEN, username)
        ttl = self.allow_ttl if decision.verdict is Verdict.ALLOWED else self.deny_ttl
        self._remember(key, self._clock() + ttl, decision)
        return decision

    def _may_review(self, now: float) -> bool:
        """Take one review from the token bucket, if there is one."""
        self._tokens = min(
            float(self.review_burst),
            self._tokens + (now - self._refilled) * self.reviews_per_second,
        )
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

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

    def _remember(self, key: tuple[str, str, str], until: float, decision: Decision) -> None:
        if len(self._decided) >= _MAX_CACHED:
            now = self._clock()
            self._decided = {k: v for k, v in self._decided.items() if v[0] > now}
            if len(self._decided) >= _MAX_CACHED:
                self._decided.clear()
        self._decided[key] = (until, decision)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
