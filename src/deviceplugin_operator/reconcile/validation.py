"""The checks a ``*DevicePlugin`` spec must pass, shared by the validating webhook and the
reconciler: one source of truth for what is refused and with which words.

The webhook (``admission.rules``) answers a refused object with ``Invalid.message``; the
reconciler applies the same checks to what is stored, since a resource created while its
kind's webhook was not registered (webhooks exist only for the enabled kinds, CRDs for all of
them) was never judged, and a plugin image runs privileged on every selected node.

``parse`` and ``check`` are the reference's ``ValidateCreate``: the spec must first parse with
the kind's model (the message names the field), then the reference's checks run in its order
and the first failure is the message, word for word. Deliberate fixes:

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
``docker.io``. Whoever may create these resources is root on the selected nodes; the
allow-list keeps that to known images.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pydantic

from deviceplugin_operator import devices
from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind as device_kind
from deviceplugin_operator.reconcile import images

_DIGEST = "@sha256:[0-9a-f]{64}"
_PCI_ID = re.compile(r"0x[0-9a-f]{4}")

SpecT = TypeVar("SpecT", bound=plugin.DevicePluginSpec)


class Invalid(ValueError):  # noqa: N818 - reads as the verdict it is
    """The spec is refused; ``message`` is the webhook's denial (``invalid resource: ...``)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def parse(kind: devices.DeviceKind[SpecT], obj: Mapping[str, Any]) -> SpecT:
    """The spec of ``obj`` as the kind's model; ``Invalid`` naming the first bad field."""
    try:
        return kind.spec_of(obj)
    except pydantic.ValidationError as error:
        raise Invalid(f"invalid resource: {_schema_problem(error)}") from None


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


def check(
    kind: devices.DeviceKind[Any],
    spec: plugin.DevicePluginSpec,
    *,
    allowed_registries: Sequence[str] = (),
) -> None:
    """``Invalid`` with the first problem of a parsed (and defaulted) ``spec``."""
    check_wire(kind, spec.wire(), allowed_registries=allowed_registries)


def check_wire(
    kind: devices.DeviceKind[Any],
    wire: Mapping[str, Any],
    *,
    allowed_registries: Sequence[str] = (),
) -> None:
    """``check`` of a parsed spec in its wire form (``spec.wire()``), for a caller that
    needs that form too."""
    for rule in CHECKS[kind.name]:
        rule(kind, wire)
    if allowed_registries:
        for field in ("image", "initImage"):
            if wire.get(field):
                check_registry(wire[field], allowed_registries, f"spec.{field}")


def check_image(image: str, expected: str, minimum: str = device_kind.IMAGE_MIN_VERSION) -> None:
    """The reference's ``validatePluginImage``: ``<any path>/<expected>`` pinned by digest or
    tagged with a version >= ``minimum`` (with the fixes above); ``Invalid`` otherwise."""
    if (problem := _image_problem(image, expected, minimum)) is not None:
        raise Invalid(problem)


@functools.lru_cache(maxsize=512)
def _image_problem(image: str, expected: str, minimum: str) -> str | None:
    """``check_image``'s verdict, kept per image: every review and every reconcile of a spec
    checks the same few images again (regular expressions built per call, two parses)."""
    try:
        if not re.fullmatch(rf"(?:.*/)?{re.escape(expected)}{_DIGEST}", image):
            _check_tagged(image, expected, minimum)
        images.ImageRef.parse(image)
    except Invalid as invalid:
        return invalid.message
    except ValueError as error:
        return f"invalid resource: {error}"
    return None


def _check_tagged(image: str, expected: str, minimum: str) -> None:
    parts = image.rsplit("/", 1)[-1].split(":", 1)
    if len(parts) != 2:
        raise Invalid(f'invalid resource: incorrect image field "{image}"')
    name, tag = parts
    if name.removesuffix("@sha256") != expected:
        raise Invalid(
            f'invalid resource: incorrect image name "{name}". '
            f"Make sure you use '<vendor>/{expected}'"
        )
    tagged = re.fullmatch(rf"(.+){_DIGEST}", tag)
    if tagged:
        tag = tagged.group(1)
    try:
        version = images.Version.parse(tag)
    except ValueError as error:
        raise Invalid(
            f"invalid resource: {error}: Make sure it's either valid SHA digest or semver tag"
        ) from None
    if version < images.Version.parse(minimum):
        raise Invalid(
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
        raise Invalid("invalid resource: ProvisioningConfig is set with no InitImage")


_QAT_CONFIGURABLE = frozenset({"4xxxvf", "420xxvf", "6xxxvf"})


def _qat_config(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if not spec.get("provisioningConfig"):
        return
    _config_needs_init_image(kind, spec)
    if not _QAT_CONFIGURABLE & set(spec.get("kernelVfDrivers") or ()):
        raise Invalid(
            "invalid resource: ProvisioningConfig is available only for 4xxx and 420xx devices"
        )


def _gpu_policy(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    policy = spec.get("preferredAllocationPolicy") or ""
    if (spec.get("sharedDevNum") or 0) <= 1 and policy in ("packed", "balanced"):
        raise Invalid(
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
                raise Invalid(f"invalid resource: Empty PCI Device ID in {label}")
            if not _PCI_ID.fullmatch(item):
                raise Invalid(f"invalid resource: Invalid PCI Device ID: {item}")

    return check


def _gpu_exclusive_ids(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if spec.get("allowIDs") and spec.get("denyIDs"):
        raise Invalid("invalid resource: AllowIDs and DenyIDs cannot be used together")


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
    """``Invalid`` unless ``image`` comes from one of ``allowed``: a registry host (with
    port), optionally followed by a path prefix; whole path components are compared."""
    try:
        repository = _repository(image)
    except ValueError as error:
        raise Invalid(f"invalid resource: {error}") from None
    for entry in allowed:
        prefix = entry.strip().rstrip("/")
        if prefix and (repository == prefix or repository.startswith(prefix + "/")):
            return
    raise Invalid(
        f'invalid resource: {field} "{image}" is not from an allowed registry '
        f"({', '.join(allowed)}); use an image from one of them or ask the cluster admin "
        "to allow its registry (--allowed-image-registries)"
    )
