"""Defaulting and validation of the ``*DevicePlugin`` resources, as pure functions.

``default`` is the reference's ``Default()``: the plugin image, when empty, becomes
``intel/intel-<dev>-plugin:<minimum version>``; nothing else changes. It returns a JSON patch.

``validate`` is the reference's ``ValidateCreate``/``ValidateUpdate`` (an UPDATE is judged by
its new object alone): the spec must first parse with the kind's model (a denial names the
field), then the reference's checks run in its order and the first failure is the denial,
word for word. Deliberate fixes:

* DLB and FPGA init images are checked against their real names ``intel-dlb-initcontainer``
  and ``intel-fpga-initcontainer`` (the reference expects ``*-initimage`` and so rejects its
  own samples), and an FPGA resource without ``initImage`` is valid.
* The digest form is anchored: ``evil-intel-gpu-plugin@sha256:...`` is not
  ``intel-gpu-plugin``.
* ``name:tag@sha256:<digest>`` is accepted when the tag is a valid version >= the minimum.
* An image that passes those checks must also be a valid image reference (the reference let
  ``INTEL/intel-gpu-plugin:0.36.0`` through to a DaemonSet that can never pull it).
* QAT ``provisioningConfig`` is also allowed for ``6xxxvf`` devices (they read cfg_services
  too; the message keeps the reference's wording).

Opt-in (``allowed_registries``, empty by default as in the reference): the plugin and init
images must come from one of the given registries, each optionally narrowed to a path prefix
(``registry.example.com``, ``docker.io/intel``); Docker Hub shorthand (``intel/x``) is
``docker.io``. A plugin image runs privileged on every selected node, so whoever may create
these resources is root on those nodes; the allow-list keeps that to known images.

A valid resource may still get warnings (never denials), each naming the field and the fix:
GPU ``monitoringMode`` without ``enableMonitoring``; a nodeSelector that can select the same
nodes as another resource of the kind (two plugins per node). What the cluster holds arrives
in ``Context``. Whether a ``provisioningConfig`` ConfigMap exists is not said here: anyone who
can reach the webhook port could ask, and the resource's status reports it to its owner.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from deviceplugin_operator import devices
from deviceplugin_operator.admission import errors, review
from deviceplugin_operator.devices import kind as device_kind
from deviceplugin_operator.reconcile import images

_DIGEST = "@sha256:[0-9a-f]{64}"
_PCI_ID = re.compile(r"0x[0-9a-f]{4}")


@dataclasses.dataclass(frozen=True)
class Context:
    """What the warnings need to know about the cluster, gathered by the caller."""

    other_selectors: Mapping[str, Mapping[str, str] | None] = dataclasses.field(
        default_factory=dict
    )
    """``spec.nodeSelector`` of the resources of the same kind, by resource name (the one
    under review is skipped by name)."""


# Defaulting ------------------------------------------------------------------------------


def default(kind: devices.DeviceKind[Any], obj: object) -> list[review.Operation]:
    """The patch that defaults ``obj``: set ``spec.image`` when it is absent or empty."""
    if not isinstance(obj, Mapping):
        raise errors.Rejected("invalid resource: the object is not a JSON object", code=400)
    spec = obj.get("spec")
    if spec is None:
        return [review.add("/spec", {"image": kind.default_image})]
    if not isinstance(spec, Mapping):
        raise errors.Rejected("invalid resource: spec: must be an object", code=400)
    image = spec.get("image")
    if image is not None and not isinstance(image, str):
        raise errors.Rejected("invalid resource: spec.image: must be a string", code=400)
    if image:
        return []
    return [review.add("/spec/image", kind.default_image)]


# Validation ------------------------------------------------------------------------------


def check_image(image: str, expected: str, minimum: str = device_kind.IMAGE_MIN_VERSION) -> None:
    """The reference's ``validatePluginImage``: ``<any path>/<expected>`` pinned by digest or
    tagged with a version >= ``minimum`` (with the fixes above); ``Rejected`` otherwise."""
    if not re.fullmatch(rf"(?:.*/)?{re.escape(expected)}{_DIGEST}", image):
        _check_tagged(image, expected, minimum)
    try:
        images.ImageRef.parse(image)
    except ValueError as error:
        raise errors.Rejected(f"invalid resource: {error}") from None


def _check_tagged(image: str, expected: str, minimum: str) -> None:
    parts = image.rsplit("/", 1)[-1].split(":", 1)
    if len(parts) != 2:
        raise errors.Rejected(f'invalid resource: incorrect image field "{image}"')
    name, tag = parts
    if name.removesuffix("@sha256") != expected:
        raise errors.Rejected(
            f'invalid resource: incorrect image name "{name}". '
            f"Make sure you use '<vendor>/{expected}'"
        )
    tagged = re.fullmatch(rf"(.+){_DIGEST}", tag)
    if tagged:
        tag = tagged.group(1)
    try:
        version = images.Version.parse(tag)
    except ValueError as error:
        raise errors.Rejected(
            f"invalid resource: {error}: Make sure it's either valid SHA digest or semver tag"
        ) from None
    if version < images.Version.parse(minimum):
        raise errors.Rejected(
            f'invalid resource: version "{version}" is too low. Should be at least "{minimum}"'
        )


Check = Callable[[devices.DeviceKind[Any], Mapping[str, Any]], None]
"""One reference check on the spec in wire form (types already checked by the model)."""


def _image(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    check_image(spec.get("image") or "", kind.image)


def _init_image_if_set(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if spec.get("initImage") and kind.init_image:
        check_image(spec["initImage"], kind.init_image)


def _config_needs_init_image(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if spec.get("provisioningConfig") and not spec.get("initImage"):
        raise errors.Rejected("invalid resource: ProvisioningConfig is set with no InitImage")


_QAT_CONFIGURABLE = frozenset({"4xxxvf", "420xxvf", "6xxxvf"})


def _qat_config(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if not spec.get("provisioningConfig"):
        return
    _config_needs_init_image(kind, spec)
    if not _QAT_CONFIGURABLE & set(spec.get("kernelVfDrivers") or ()):
        raise errors.Rejected(
            "invalid resource: ProvisioningConfig is available only for 4xxx and 420xx devices"
        )


def _gpu_policy(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    policy = spec.get("preferredAllocationPolicy") or ""
    if (spec.get("sharedDevNum") or 0) <= 1 and policy in ("packed", "balanced"):
        raise errors.Rejected(
            f"invalid resource: '{policy}' PreferredAllocationPolicy is valid only when "
            "setting sharedDevNum > 1"
        )


def _pci_ids(field: str, label: str) -> Check:
    def check(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
        value = spec.get(field) or ""
        if not value:
            return
        for item in value.split(","):
            if not item:
                raise errors.Rejected(f"invalid resource: Empty PCI Device ID in {label}")
            if not _PCI_ID.fullmatch(item):
                raise errors.Rejected(f"invalid resource: Invalid PCI Device ID: {item}")

    return check


def _gpu_exclusive_ids(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if spec.get("allowIDs") and spec.get("denyIDs"):
        raise errors.Rejected("invalid resource: AllowIDs and DenyIDs cannot be used together")


CHECKS: Mapping[str, Sequence[Check]] = {
    "dlb": (_init_image_if_set, _image),
    "dsa": (_image, _config_needs_init_image, _init_image_if_set),
    "fpga": (_image, _init_image_if_set),
    "gpu": (
        _gpu_policy,
        _pci_ids("allowIDs", "AllowIDs"),
        _pci_ids("denyIDs", "DenyIDs"),
        _gpu_exclusive_ids,
        _image,
    ),
    "iaa": (_image, _config_needs_init_image, _init_image_if_set),
    "npu": (_image,),
    "qat": (_init_image_if_set, _qat_config, _image),
    "sgx": (_image, _init_image_if_set),
}
"""Each kind's checks in the reference's order: the first failing one names the problem."""


def _parsed(
    kind: devices.DeviceKind[Any], obj: object
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The object and its spec in wire form, once the kind's model accepts the spec."""
    if not isinstance(obj, Mapping):
        raise errors.Rejected("invalid resource: the object is not a JSON object", code=400)
    try:
        spec = kind.spec_of(obj)
    except pydantic.ValidationError as error:
        raise errors.Rejected(f"invalid resource: {_schema_problem(error)}") from None
    return obj, spec.wire()


def _schema_problem(error: pydantic.ValidationError) -> str:
    problem = error.errors(include_url=False)[0]
    field = "spec"
    for part in problem["loc"]:
        field += f"[{part}]" if isinstance(part, int) else f".{part}"
    given = problem.get("input")
    shown = ""
    if isinstance(given, str | int | float | bool) or given is None:
        shown = f" (got {json.dumps(given)[:64]})"
    return f"{field}: {problem['msg']}{shown}"


def validate(
    kind: devices.DeviceKind[Any],
    new: object,
    old: object = None,
    context: Context | None = None,
    *,
    allowed_registries: Sequence[str] = (),
) -> list[str]:
    """Judge ``new`` (CREATE, or UPDATE from ``old``): ``Rejected`` with the first problem,
    else the warnings for it. Only the new object is judged, as in the reference."""
    obj, spec = _parsed(kind, new)
    for check in CHECKS[kind.name]:
        check(kind, spec)
    if allowed_registries:
        for field in ("image", "initImage"):
            if spec.get(field):
                check_registry(spec[field], allowed_registries, f"spec.{field}")
    return _warnings(kind, obj, spec, context or Context())


def _repository(reference: str) -> str:
    """``registry/path`` with Docker Hub's shorthands spelled out."""
    image = images.ImageRef.parse(reference)
    registry = image.registry or "docker.io"
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = "docker.io"
    path = image.path
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return f"{registry}/{path}"


def check_registry(image: str, allowed: Sequence[str], field: str = "spec.image") -> None:
    """``Rejected`` unless ``image`` comes from one of ``allowed``: a registry host (with
    port), optionally followed by a path prefix; whole path components are compared."""
    try:
        repository = _repository(image)
    except ValueError as error:
        raise errors.Rejected(f"invalid resource: {error}") from None
    for entry in allowed:
        prefix = entry.strip().rstrip("/")
        if prefix and (repository == prefix or repository.startswith(prefix + "/")):
            return
    raise errors.Rejected(
        f'invalid resource: {field} "{image}" is not from an allowed registry '
        f"({', '.join(allowed)}); use an image from one of them or ask the cluster admin "
        "to allow its registry (--allowed-image-registries)"
    )


# Warnings --------------------------------------------------------------------------------


_TEMPLATE_SELECTORS: dict[str, Mapping[str, str]] = {}


def _template_selector(kind: devices.DeviceKind[Any]) -> Mapping[str, str]:
    if kind.name not in _TEMPLATE_SELECTORS:
        pod = kind.template["spec"]["template"]["spec"]
        _TEMPLATE_SELECTORS[kind.name] = dict(pod.get("nodeSelector") or {})
    return _TEMPLATE_SELECTORS[kind.name]


def effective_selector(
    kind: devices.DeviceKind[Any], node_selector: Mapping[str, str] | None
) -> dict[str, str]:
    """The nodeSelector the plugin pods get, as the DaemonSet is rendered."""
    selector = dict(node_selector or _template_selector(kind))
    for key, value in kind.required_node_selector.items():
        selector.setdefault(key, value)
    return selector


def _overlapping(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether one node can carry both label sets: no key asks for two different values."""
    return all(b.get(key, value) == value for key, value in a.items())


def _warnings(
    kind: devices.DeviceKind[Any],
    obj: Mapping[str, Any],
    spec: Mapping[str, Any],
    context: Context,
) -> list[str]:
    found: list[str] = []
    if spec.get("monitoringMode") and not spec.get("enableMonitoring"):
        found.append(
            "spec.monitoringMode has no effect without spec.enableMonitoring: true; "
            "set enableMonitoring or remove monitoringMode"
        )
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    selector = effective_selector(kind, spec.get("nodeSelector"))
    for other, other_selector in sorted(context.other_selectors.items()):
        if other == name:
            continue
        if _overlapping(selector, effective_selector(kind, other_selector)):
            found.append(
                f"spec.nodeSelector can select the same nodes as {kind.kind} {other}, which "
                "runs two plugins per node; make the nodeSelectors of the two disjoint"
            )
    return found
