"""What keeps secrets out of a support bundle.

A bundle is attached to public issue reports, so nothing in it may grant access. Secrets are
never read at all; what is read goes through ``Redactor``:

* environment variable values are replaced unless the variable is one of the operator's own
  (``KEPT_ENV``, ``<IMAGE>_SHA``): a value can be anything, ``valueFrom`` references stay;
* ``metadata.managedFields`` and the ``last-applied-configuration`` annotation (a copy of the
  whole object as applied, env values included) are dropped;
* annotation values whose key names a secret (token, password, credential ...) or that look
  like a token (a long unbroken run of letters and digits) are replaced;
* every string, logs included, is scrubbed of JSON Web Tokens (service account tokens),
  ``Bearer`` credentials, ``token=``/``password=`` values and the literal secrets the caller
  knows (the kubeconfig's token, client key and password).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"

KEPT_ENV = frozenset(
    {"DEVICEPLUGIN_NAMESPACE", "DEVICEPLUGIN_SECRET", "POD_NAMESPACE", "ENABLED_QAT_PF_PCIIDS"}
)
"""Variables whose values say how the operator or a plugin is configured and hold no secret
(``DEVICEPLUGIN_SECRET`` is the name of a pull secret, not its content)."""

_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
_SECRET_KEY = re.compile(r"token|secret|passw|credential|api[-_]?key|private|auth", re.I)
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9+/=_.~-]{24,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")
_BEARER = re.compile(r"(bearer\s+)[^\s\"',;]{8,}", re.I)
_ASSIGNED = re.compile(r"((?:token|password|passwd)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]{6,}", re.I)


def _looks_like_token(value: str) -> bool:
    return bool(
        _TOKEN_LIKE.fullmatch(value)
        and re.search(r"[0-9]", value)
        and re.search(r"[A-Za-z]", value)
    )


class Redactor:
    """Scrubs objects and text; ``known`` are literal secrets to remove wherever they occur."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known = sorted({k for k in known if len(k) >= 6}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self.known:
            text = text.replace(secret, REDACTED)
        text = _JWT.sub(REDACTED, text)
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        return _ASSIGNED.sub(lambda m: m.group(1) + REDACTED, text)

    def obj(self, value: Any) -> Any:
        """A scrubbed copy of a decoded JSON value."""
        if isinstance(value, dict):
            copied: dict[str, Any] = {}
            for key, item in value.items():
                if key == "managedFields":
                    continue
                if key == "annotations" and isinstance(item, dict):
                    copied[key] = self._annotations(item)
                elif key == "env" and isinstance(item, list):
                    copied[key] = [self._variable(v) for v in item]
                else:
                    copied[key] = self.obj(item)
            return copied
        if isinstance(value, list):
            return [self.obj(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def _annotations(self, annotations: dict[str, Any]) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, value in annotations.items():
            if key in _DROPPED_ANNOTATIONS:
                continue
            text = str(value)
            secret = _SECRET_KEY.search(key.rpartition("/")[2]) or _looks_like_token(text)
            kept[key] = REDACTED if secret else self.text(text)
        return kept

    def _variable(self, variable: Any) -> Any:
        if not isinstance(variable, dict):
            return self.obj(variable)
        name = str(variable.get("name", ""))
        copied = self.obj(variable)
        if "value" in copied and not (name in KEPT_ENV or name.endswith("_SHA")):
            copied["value"] = REDACTED
        return copied


def kubeconfig_secrets(config: Any) -> list[str]:
    """The credentials in a decoded kubeconfig: every user's token, password, client key,
    and the token of an auth provider."""
    found: list[str] = []
    if not isinstance(config, dict):
        return found
    for entry in config.get("users") or ():
        user = (entry or {}).get("user") or {}
        for field in ("token", "password", "client-key-data"):
            if isinstance(user.get(field), str):
                found.append(user[field])
        provider = (user.get("auth-provider") or {}).get("config") or {}
        found.extend(str(v) for k, v in provider.items() if "token" in k or "secret" in k)
    return found
