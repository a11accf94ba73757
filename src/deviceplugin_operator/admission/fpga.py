"""The FPGA Pod mutator (reference ``pkg/fpgacontroller/patcher``) and the mappings it reads.

AcceleratorFunction and FpgaRegion resources (``fpga.intel.com/v2``, namespaced) name the
FPGA resources users may ask for and say which resource the device plugin really advertises:

* an AcceleratorFunction in mode ``af`` maps ``fpga.intel.com/<name>`` to
  ``fpga.intel.com/af-<interfaceId[:3]>.<afuId[:3]>.<base64url(hex(interfaceId+afuId))>``
  (a preprogrammed function; e.g. ``d5005-nlb3-preprogrammed`` maps to
  ``fpga.intel.com/af-bfa.f7d.v6xNhR7oVv6MlYZc4buqLfffQFy9es9yIvFEsLk6zRg``);
* an AcceleratorFunction in any other mode maps to ``fpga.intel.com/region-<interfaceId>``
  (mode ``region``: the function is programmed on demand, which the CRI hook learns from the
  ``FPGA_REGION_<n>``/``FPGA_AFU_<n>`` variables the mutator adds);
* an FpgaRegion maps to ``fpga.intel.com/region-<interfaceId>`` in mode ``regiondevel`` (the
  workload programs the region itself).

``Mappings`` holds these per namespace, with a reference count per real resource (an
*identity*): a pod may also ask for a real resource directly, and may do so in a namespace
where some mapping leads to it. The AcceleratorFunction and FpgaRegion watchers call
``apply_*`` with the objects as listed or watched (or ``add_*``/``remove_*`` with models); an
update replaces the name's mapping, releasing the identity it had. The webhook calls
``mutate``. A lock guards the state, so watchers in
other threads and the event loop can share one object.

``mutate`` replaces each requested mapping by its real resource (same amount in limits and
requests), adds the region variables, and denies unknown resources, modes mixed in one
container, and the request errors of ``resources.requested``. Fixed against the reference
(spec §8 item 17): a directly requested identity no longer ends the container's processing
(the reference returned early and left the container's other mappings unreplaced); the
environment is written as JSON and keeps the container's variables in their order with their
``valueFrom`` — only the user's own ``FPGA_REGION*``/``FPGA_AFU*`` variables are dropped, from
each container whose requests are rewritten; a container also asking for the real resource
directly keeps that amount on top; an update of a mapping releases the identity it had;
resources and region numbers follow the resource names' order, not Go's random map order.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

import pydantic

from deviceplugin_operator.admission import errors, resources, review
from deviceplugin_operator.api import fpga as fpga_api

DOMAIN = "fpga.intel.com"
AF = "af"
REGION = "region"
REGION_DEVEL = "regiondevel"
RESERVED_ENV_PREFIXES = ("FPGA_REGION", "FPGA_AFU")
MAX_PROGRAMMED_REGIONS = 1024
"""Region-mode functions one container may ask for: far above any node's FPGA count, low
enough that a request for 10**18 of them cannot make the webhook build 10**18 variables."""


def af_resource(interface_id: str, afu_id: str) -> str:
    """The resource the plugin advertises for a preprogrammed function (mode ``af``)."""
    try:
        raw = binascii.unhexlify(interface_id + afu_id)
    except (binascii.Error, ValueError) as error:
        raise errors.InvalidMapping(
            f"interfaceId {interface_id!r} and afuId {afu_id!r} are not hexadecimal: {error}"
        ) from None
    encoded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{DOMAIN}/af-{interface_id[:3]}.{afu_id[:3]}.{encoded}"


def region_resource(interface_id: str) -> str:
    """The resource the plugin advertises for an FPGA region."""
    return f"{DOMAIN}/region-{interface_id}"


@dataclasses.dataclass(frozen=True)
class Target:
    """Where one user-facing resource leads."""

    resource: str
    """The real resource, e.g. ``fpga.intel.com/region-ce48...``."""

    mode: str
    interface_id: str
    afu_id: str = ""


class _Namespace:
    def __init__(self) -> None:
        self.functions: dict[str, Target] = {}
        self.regions: dict[str, Target] = {}
        self.identities: collections.Counter[str] = collections.Counter()

    def put(self, table: dict[str, Target], name: str, mapping: Target) -> None:
        previous = table.get(name)
        if previous is not None:
            self._release(previous.resource)
        table[name] = mapping
        self.identities[mapping.resource] += 1

    def drop(self, table: dict[str, Target], name: str) -> None:
        previous = table.pop(name, None)
        if previous is not None:
            self._release(previous.resource)

    def _release(self, resource: str) -> None:
        self.identities[resource] -= 1
        if self.identities[resource] <= 0:
            del self.identities[resource]

    def lookup(self, resource: str) -> Target | None:
        # An AcceleratorFunction and an FpgaRegion of the same name: the function wins.
        name = resource.removeprefix(DOMAIN + "/")
        return self.functions.get(name) or self.regions.get(name)

    @property
    def empty(self) -> bool:
        return not (self.functions or self.regions)


class Mappings:
    """The FPGA resource mappings of every namespace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._namespaces: dict[str, _Namespace] = {}

    def _namespace(self, namespace: str) -> _Namespace:
        return self._namespaces.setdefault(namespace, _Namespace())

    def _forget_if_empty(self, namespace: str) -> None:
        state = self._namespaces.get(namespace)
        if state is not None and state.empty:
            del self._namespaces[namespace]

    # Watchers --------------------------------------------------------------------------

    def add_accelerator_function(self, function: fpga_api.AcceleratorFunction) -> None:
        """Add or update an AcceleratorFunction; ``InvalidMapping`` when an ``af``-mode
        function's ids are not hexadecimal (the mapping is then left as it was)."""
        spec = function.spec
        if spec.mode == AF:
            resource = af_resource(spec.interface_id, spec.afu_id)
        else:
            resource = region_resource(spec.interface_id)
        mapping = Target(resource, spec.mode, spec.interface_id, spec.afu_id)
        with self._lock:
            state = self._namespace(function.metadata.namespace or "")
            state.put(state.functions, function.metadata.name, mapping)

    def remove_accelerator_function(self, namespace: str, name: str) -> None:
        """Forget a deleted AcceleratorFunction (nothing happens when it is unknown)."""
        with self._lock:
            state = self._namespaces.get(namespace)
            if state is not None:
                state.drop(state.functions, name)
                self._forget_if_empty(namespace)

    def add_region(self, region: fpga_api.FpgaRegion) -> None:
        """Add or update an FpgaRegion."""
        interface_id = region.spec.interface_id
        mapping = Target(region_resource(interface_id), REGION_DEVEL, interface_id)
        with self._lock:
            state = self._namespace(region.metadata.namespace or "")
            state.put(state.regions, region.metadata.name, mapping)

    def remove_region(self, namespace: str, name: str) -> None:
        """Forget a deleted FpgaRegion (nothing happens when it is unknown)."""
        with self._lock:
            state = self._namespaces.get(namespace)
            if state is not None:
                state.drop(state.regions, name)
                self._forget_if_empty(namespace)

    # Objects as the API server sends them --------------------------------------------

    def apply_accelerator_function(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        """Bring one AcceleratorFunction from a list or watch into the mappings: a deleted
        one is forgotten, any other added or replaced. One that cannot be mapped (not a valid
        object, ids not hexadecimal) takes its name's previous mapping away and raises
        ``InvalidMapping``: pods then get a denial naming it, not a stale answer."""
        namespace, name = _identity(obj)
        if deleted:
            self.remove_accelerator_function(namespace, name)
            return
        try:
            self.add_accelerator_function(fpga_api.AcceleratorFunction.model_validate(obj))
        except (pydantic.ValidationError, errors.InvalidMapping) as error:
            self.remove_accelerator_function(namespace, name)
            raise errors.InvalidMapping(str(error)) from None

    def apply_region(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        """``apply_accelerator_function`` for an FpgaRegion."""
        namespace, name = _identity(obj)
        if deleted:
            self.remove_region(namespace, name)
            return
        try:
            self.add_region(fpga_api.FpgaRegion.model_validate(obj))
        except pydantic.ValidationError as error:
            self.remove_region(namespace, name)
            raise errors.InvalidMapping(str(error)) from None

    # Reading ---------------------------------------------------------------------------

    def resources(self, namespace: str) -> dict[str, str]:
        """User-facing resource → real resource, for one namespace."""
        with self._lock:
            state = self._namespaces.get(namespace)
            if state is None:
                return {}
            return {
                f"{DOMAIN}/{name}": mapping.resource
                for table in (state.regions, state.functions)
                for name, mapping in table.items()
            }

    def identities(self, namespace: str) -> dict[str, int]:
        """Real resource → how many mappings lead to it, for one namespace."""
        with self._lock:
            state = self._namespaces.get(namespace)
            return dict(state.identities) if state is not None else {}

    def mutate(self, pod: object, namespace: str) -> list[review.Operation]:
        """The JSON patch for a Pod created in ``namespace`` (``metadata.namespace`` wins when
        set); ``Rejected`` when it asks for what this namespace cannot give."""
        if not isinstance(pod, Mapping):
            raise errors.Rejected("the Pod is not a JSON object", code=400)
        metadata = pod.get("metadata")
        if isinstance(metadata, Mapping) and isinstance(metadata.get("namespace"), str):
            namespace = metadata["namespace"] or namespace
        spec = pod.get("spec")
        if spec is None:
            return []
        if not isinstance(spec, Mapping):
            raise errors.Rejected("spec must be an object", code=400)
        containers = spec.get("containers") or []
        if not isinstance(containers, list):
            raise errors.Rejected("spec.containers must be a list", code=400)
        ops: list[review.Operation] = []
        with self._lock:
            state = self._namespaces.get(namespace) or _Namespace()
            for index, container in enumerate(containers):
                if not isinstance(container, Mapping):
                    raise errors.Rejected(f"spec.containers[{index}] must be an object", code=400)
                ops += _container_ops(state, namespace, index, container)
        return ops


def _identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _container_ops(
    state: _Namespace, namespace: str, index: int, container: Mapping[str, Any]
) -> list[review.Operation]:
    requested = resources.requested(container, DOMAIN)
    ops: list[review.Operation] = []
    real: dict[str, int] = collections.defaultdict(int)
    region_env: list[dict[str, str]] = []
    mode: str | None = None
    mapped: set[str] = set()
    for name, request in requested.items():
        mapping = state.lookup(name)
        if mapping is None:
            if name in state.identities:
                continue
            raise errors.Rejected(_unknown(name, namespace))
        if mapping.mode not in (AF, REGION, REGION_DEVEL):
            raise errors.Rejected(
                f'"{name}" is registered with unknown mode "{mapping.mode}" instead of '
                f'"{AF}" or "{REGION}"'
            )
        if mode is not None and mapping.mode != mode:
            raise errors.Rejected(
                "container cannot be scheduled as it requires resources operated in different modes"
            )
        mode = mapping.mode
        if mapping.mode == REGION:
            if len(region_env) // 2 + request.amount > MAX_PROGRAMMED_REGIONS:
                raise errors.Rejected(
                    f'"{name}": at most {MAX_PROGRAMMED_REGIONS} FPGA functions can be '
                    "programmed for one container"
                )
            for _ in range(request.amount):
                number = len(region_env) // 2 + 1
                region_env.append({"name": f"FPGA_REGION_{number}", "value": mapping.interface_id})
                region_env.append({"name": f"FPGA_AFU_{number}", "value": mapping.afu_id})
        for field in ("limits", "requests"):
            path = review.pointer("spec", "containers", index, "resources", field, name)
            ops.append(review.remove(path))
        mapped.add(name)
        real[mapping.resource] += request.amount
    if not real:
        return ops
    for resource, amount in real.items():
        # A container asking for the real resource directly as well keeps that amount on top.
        direct = requested.get(resource) if resource not in mapped else None
        total = amount + (direct.amount if direct is not None else 0)
        for field in ("limits", "requests"):
            path = review.pointer("spec", "containers", index, "resources", field, resource)
            ops.append(review.add(path, str(total)))
    env = container.get("env") or []
    if not isinstance(env, list):
        raise errors.Rejected(f"spec.containers[{index}].env must be a list", code=400)
    kept = [var for var in env if not _reserved(var)]
    if region_env or len(kept) != len(env):
        ops.append(
            review.add(review.pointer("spec", "containers", index, "env"), kept + region_env)
        )
    return ops


def _unknown(resource: str, namespace: str) -> str:
    # The reference's words first, then what to do about it.
    short = resource.removeprefix(DOMAIN + "/")
    return (
        f'no such resource: "{resource}": namespace "{namespace}" has no AcceleratorFunction '
        f'or FpgaRegion named "{short}" ({fpga_api.GROUP}/{fpga_api.VERSION}); create the '
        "mapping in this namespace (see deployments/operator/samples/mappings-collection.yaml) "
        "or request a resource the FPGA device plugin advertises"
    )


def _reserved(variable: Any) -> bool:
    name = variable.get("name") if isinstance(variable, Mapping) else None
    return isinstance(name, str) and name.startswith(RESERVED_ENV_PREFIXES)
