"""The SGX Pod mutator (reference ``pkg/webhooks/sgx``): SGX containers get their enclave
device, the quote provider its provision device, and aesmd users the aesmd socket.

For every container that asks for ``sgx.intel.com/epc`` (init containers are not looked at,
as in the reference):

* ``sgx.intel.com/enclave: 1`` in limits and requests, and ``sgx.intel.com/provision: 1`` too
  when the container is the one the ``sgx.intel.com/quote-provider`` annotation names;
* with quote provider ``aesmd``: a mount of volume ``aesmd-socket`` at ``/var/run/aesmd``
  (unless something is mounted there) and ``SGX_AESM_ADDR=1`` in its environment.

The pod then gets the ``aesmd-socket`` volume (with quote provider ``aesmd`` and a volume of
that name not there yet): an in-memory ``emptyDir`` when an ``aesmd`` container shares the pod
with at least one other SGX container (sidecar mode), else the host's ``/var/run/aesmd``
(aesmd DaemonSet mode); and the annotation ``sgx.intel.com/epc`` with the pod's total EPC in
BinarySI (``1Mi``, ``3Mi``).

Fixes over the reference: a second call on its own output changes nothing (the webhook is
registered with ``reinvocationPolicy: IfNeeded``; the reference appended ``SGX_AESM_ADDR``
again each time), an ``SGX_AESM_ADDR`` the user set (also via ``valueFrom``) is kept rather
than shadowed by a duplicate, and quantities compare by amount (``1Mi`` equals ``1048576``).
The result is a JSON patch that only adds or replaces, so every other field is untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deviceplugin_operator.admission import errors, resources, review

DOMAIN = "sgx.intel.com"
EPC = "sgx.intel.com/epc"
ENCLAVE = "sgx.intel.com/enclave"
PROVISION = "sgx.intel.com/provision"
QUOTE_PROVIDER = "sgx.intel.com/quote-provider"
EPC_ANNOTATION = "sgx.intel.com/epc"
AESMD = "aesmd"
AESMD_DIRECTORY = "/var/run/aesmd"
AESMD_VOLUME = "aesmd-socket"
AESMD_ADDRESS = "SGX_AESM_ADDR"


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise errors.Rejected(f"{what} must be an object", code=400)
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.Rejected(f"{what} must be a list", code=400)
    return value


def _append(ops: list[review.Operation], path: str, present: Any, item: Any) -> None:
    """Append ``item`` to the list at ``path``, creating the list when it is absent."""
    if isinstance(present, list):
        ops.append(review.add(path + "/-", item))
    else:
        ops.append(review.add(path, [item]))


def _set_one(
    ops: list[review.Operation], index: int, container: Mapping[str, Any], resource: str
) -> None:
    """``resource: 1`` in the container's limits and requests, unless it is there already."""
    for field, present in zip(
        ("limits", "requests"), resources.container_resources(container), strict=True
    ):
        if not (resource in present and resources.equal(present[resource], 1)):
            ops.append(
                review.add(
                    review.pointer("spec", "containers", index, "resources", field, resource), "1"
                )
            )


def mutate(pod: object) -> list[review.Operation]:
    """The JSON patch for a Pod being created; ``Rejected`` when its SGX requests are
    invalid (requests differing from limits, fractional amounts)."""
    pod = _object(pod, "the Pod")
    metadata = _object(pod.get("metadata"), "metadata")
    annotations = _object(metadata.get("annotations"), "metadata.annotations")
    quote_provider = annotations.get(QUOTE_PROVIDER)
    if not isinstance(quote_provider, str):
        quote_provider = ""
    spec = _object(pod.get("spec"), "spec")
    containers = _list(spec.get("containers"), "spec.containers")

    ops: list[review.Operation] = []
    total_epc = 0
    epc_users = 0
    aesmd_present = False
    for index, raw in enumerate(containers):
        container = _object(raw, f"spec.containers[{index}]")
        epc = resources.requested(container, DOMAIN).get(EPC)
        if epc is None:
            continue
        total_epc += epc.amount
        epc_users += 1
        name = container.get("name")
        if quote_provider == name:
            _set_one(ops, index, container, PROVISION)
        _set_one(ops, index, container, ENCLAVE)
        if quote_provider != AESMD:
            continue
        aesmd_present = aesmd_present or name == AESMD
        path = review.pointer("spec", "containers", index)
        mounts = _list(container.get("volumeMounts"), f"spec.containers[{index}].volumeMounts")
        if not any(
            isinstance(mount, Mapping)
            and str(mount.get("mountPath", "")).rstrip("/") == AESMD_DIRECTORY
            for mount in mounts
        ):
            mount = {"name": AESMD_VOLUME, "mountPath": AESMD_DIRECTORY}
            _append(ops, path + "/volumeMounts", container.get("volumeMounts"), mount)
        env = _list(container.get("env"), f"spec.containers[{index}].env")
        if not any(isinstance(var, Mapping) and var.get("name") == AESMD_ADDRESS for var in env):
            variable = {"name": AESMD_ADDRESS, "value": "1"}
            _append(ops, path + "/env", container.get("env"), variable)

    volumes = _list(spec.get("volumes"), "spec.volumes")
    has_volume = any(
        isinstance(volume, Mapping) and volume.get("name") == AESMD_VOLUME for volume in volumes
    )
    if epc_users and quote_provider == AESMD and not has_volume:
        if aesmd_present and epc_users >= 2:
            source: dict[str, Any] = {"emptyDir": {"medium": "Memory"}}
        else:
            source = {"hostPath": {"path": AESMD_DIRECTORY, "type": "DirectoryOrCreate"}}
        _append(ops, "/spec/volumes", spec.get("volumes"), {"name": AESMD_VOLUME, **source})

    if total_epc:
        size = resources.binary_si(total_epc)
        if annotations.get(EPC_ANNOTATION) != size:
            if metadata.get("annotations") is not None:
                path = review.pointer("metadata", "annotations", EPC_ANNOTATION)
                ops.append(review.add(path, size))
            elif pod.get("metadata") is not None:
                ops.append(review.add("/metadata/annotations", {EPC_ANNOTATION: size}))
            else:
                ops.append(review.add("/metadata", {"annotations": {EPC_ANNOTATION: size}}))
    return ops
