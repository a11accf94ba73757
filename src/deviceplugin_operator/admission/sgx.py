"""The SGX Pod mutator: pods asking for SGX EPC get the enclave (and provision) resources, the
aesmd socket and the ``sgx.intel.com/epc`` annotation, as the reference's ``/mutate--v1-pod``.

Fixed against the reference: the mutation is idempotent (reinvocation adds no second
``SGX_AESM_ADDR``, mount or volume), requests and limits are compared as quantities
(``1Mi`` equals ``1048576``), and env vars with ``valueFrom`` are left as they are.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from deviceplugin_operator.admission import rules

PREFIX = "sgx.intel.com/"
EPC = PREFIX + "epc"
ENCLAVE = PREFIX + "enclave"
PROVISION = PREFIX + "provision"
QUOTE_PROVIDER = PREFIX + "quote-provider"
AESMD = "aesmd"
AESMD_DIR = "/var/run/aesmd"
AESMD_VOLUME = "aesmd-socket"

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_SUFFIXES: dict[str, Decimal | int] = {
    **_BINARY,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_QUANTITY = re.compile(
    r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$"
)


def quantity(text: str | int) -> Decimal:
    """A Kubernetes resource quantity as a number; ValueError when it is not one."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"invalid quantity {text!r}")
    try:
        return Decimal(match.group(1)) * Decimal(_SUFFIXES[match.group(2)])
    except InvalidOperation as error:
        raise ValueError(f"invalid quantity {text!r}") from error


def binary_si(value: int) -> str:
    """Go's ``resource.NewQuantity(value, BinarySI).String()``: ``1048576`` → ``1Mi``."""
    if value == 0:
        return "0"
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if value % _BINARY[suffix] == 0:
            return f"{value // _BINARY[suffix]}{suffix}"
    return str(value)


def requested(container: Mapping[str, Any], prefix: str) -> dict[str, int]:
    """The container's resources under ``prefix``: requests must equal limits and be whole."""
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    found: dict[str, int] = {}
    for name in sorted({*limits, *requests}):
        if not name.startswith(prefix):
            continue
        try:
            limit = quantity(limits[name]) if name in limits else None
            request = quantity(requests[name]) if name in requests else None
        except ValueError as error:
            raise rules.Rejected(f"{error} for {name!r}") from error
        if limit is None or request is None or limit != request:
            raise rules.Rejected(
                f"'limits' and 'requests' for \"{name}\" must be equal as extended resources "
                "cannot be overcommitted"
            )
        if limit != limit.to_integral_value():
            raise rules.Rejected(f'resource quantity isn\'t of integral type for "{name}"')
        found[name] = int(limit)
    return found


def mutate(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod after SGX mutation (a new object; ``pod`` is not changed)."""
    result = copy.deepcopy(dict(pod))
    metadata = result.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    provider = annotations.get(QUOTE_PROVIDER, "")
    spec = result.setdefault("spec", {})
    total_epc = 0
    users = 0
    aesmd_present = False
    for container in spec.get("containers") or []:
        wanted = requested(container, PREFIX)
        if EPC not in wanted:
            continue
        total_epc += wanted[EPC]
        resources = container.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        requests = resources.setdefault("requests", {})
        extra = {ENCLAVE: "1"} | ({PROVISION: "1"} if provider == container.get("name") else {})
        for name, value in extra.items():
            limits[name] = requests[name] = value
        users += 1
        if provider == AESMD:
            mounts = container.setdefault("volumeMounts", [])
            if not any(m.get("mountPath") == AESMD_DIR for m in mounts):
                mounts.append({"name": AESMD_VOLUME, "mountPath": AESMD_DIR})
            aesmd_present = aesmd_present or container.get("name") == AESMD
            env = container.setdefault("env", [])
            if not any(e.get("name") == "SGX_AESM_ADDR" for e in env):
                env.append({"name": "SGX_AESM_ADDR", "value": "1"})
    if users and provider == AESMD:
        volumes = spec.setdefault("volumes", [])
        if not any(v.get("name") == AESMD_VOLUME for v in volumes):
            if aesmd_present and users >= 2:
                volumes.append({"name": AESMD_VOLUME, "emptyDir": {"medium": "Memory"}})
            else:
                volumes.append(
                    {
                        "name": AESMD_VOLUME,
                        "hostPath": {"path": AESMD_DIR, "type": "DirectoryOrCreate"},
                    }
                )
    if total_epc:
        metadata["annotations"] = {**annotations, EPC: binary_si(total_epc)}
    return result


def patch(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch from ``pod`` to its mutation (empty when nothing changes)."""
    mutated = mutate(pod)
    ops: list[dict[str, Any]] = []
    before_meta = pod.get("metadata") or {}
    if mutated["metadata"].get("annotations") != before_meta.get("annotations"):
        if "metadata" not in pod:
            ops.append({"op": "add", "path": "/metadata", "value": {}})
        ops.append(
            {
                "op": "add",
                "path": "/metadata/annotations",
                "value": mutated["metadata"]["annotations"],
            }
        )
    before_spec = pod.get("spec") or {}
    for field in ("containers", "volumes"):
        if mutated["spec"].get(field) != before_spec.get(field):
            ops.append({"op": "add", "path": f"/spec/{field}", "value": mutated["spec"][field]})
    return ops
