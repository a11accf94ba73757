"""Defaulting and validation of the ``*DevicePlugin`` resources, as pure functions.

The rules and messages are the reference operator's (``webhook_common.go`` and the
``<kind>deviceplugin_webhook.go`` files), with these deliberate fixes:

* DLB and FPGA init images are checked against their real names ``intel-dlb-initcontainer`` and
  ``intel-fpga-initcontainer`` (the reference expects ``*-initimage`` and so rejects its own
  samples), and an FPGA resource without ``initImage`` is valid.
* The digest form is anchored: ``evil-intel-gpu-plugin@sha256:...`` is not ``intel-gpu-plugin``.
* ``name:tag@sha256:<digest>`` is accepted when the tag is a valid version >= the minimum.
* QAT ``provisioningConfig`` is also allowed for ``6xxxvf`` devices (they support cfg_services).

Beyond the reference, ``warnings`` returns admission warnings (never denials) for settings that
are legal but probably not what the user meant.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from deviceplugin_operator import devices
from deviceplugin_operator.devices import kind as device_kind
from deviceplugin_operator.reconcile import images

_DIGEST = "@sha256:[0-9a-f]{64}"
_PCI_ID = re.compile(r"^0x[0-9a-f]{4}$")


class Rejected(Exception):  # noqa: N818 - reads as the admission verdict
    """The resource is invalid; the message is what kubectl prints after "denied the request: "."""


def check_image(image: str, expected: str, minimum: str = device_kind.IMAGE_MIN_VERSION) -> None:
    """Reference ``validatePluginImage``: ``<any path>/<expected>`` with a digest or a semver tag
    of at least ``minimum``."""
    if re.fullmatch(rf"(?:.*/)?{re.escape(expected)}{_DIGEST}", image):
        return
    base = image.rsplit("/", 1)[-1]
    parts = base.split(":", 1)
    if len(parts) != 2:
        raise Rejected(f'invalid resource: incorrect image field "{image}"')
    name, tag = parts
    if name.removesuffix("@sha256") != expected:
        raise Rejected(
            f'invalid resource: incorrect image name "{name}". '
            f"Make sure you use '<vendor>/{expected}'"
        )
    tag_only = re.fullmatch(rf"(.+){_DIGEST}", tag)
    if tag_only:
        tag = tag_only.group(1)
    try:
        version = images.Version.parse(tag)
    except ValueError as error:
        raise Rejected(
            f"invalid resource: {error}: Make sure it's either valid SHA digest or semver tag"
        ) from error
    if version < images.Version.parse(minimum):
        raise Rejected(
            f'invalid resource: version "{version}" is too low. Should be at least "{minimum}"'
        )


def default_image(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> str | None:
    """The image the defaulting webhook sets, or None when ``spec.image`` is set already."""
    return None if spec.get("image") else kind.default_image


Check = Callable[[devices.DeviceKind[Any], Mapping[str, Any]], None]


def _image(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    check_image(spec.get("image") or "", kind.image)


def _init_image_if_set(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if spec.get("initImage") and kind.init_image:
        check_image(spec["initImage"], kind.init_image)


def _config_needs_init_image(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if spec.get("provisioningConfig") and not spec.get("initImage"):
        raise Rejected("invalid resource: ProvisioningConfig is set with no InitImage")


_QAT_CONFIGURABLE = frozenset({"4xxxvf", "420xxvf", "6xxxvf"})


def _qat_config(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if not spec.get("provisioningConfig"):
        return
    _config_needs_init_image(kind, spec)
    if not _QAT_CONFIGURABLE & set(spec.get("kernelVfDrivers") or ()):
        raise Rejected(
            "invalid resource: ProvisioningConfig is available only for 4xxx and 420xx devices"
        )


def _gpu_policy(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    policy = spec.get("preferredAllocationPolicy") or ""
    if (spec.get("sharedDevNum") or 0) <= 1 and policy in ("packed", "balanced"):
        raise Rejected(
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
                raise Rejected(f"invalid resource: Empty PCI Device ID in {label}")
            if not _PCI_ID.match(item):
                raise Rejected(f"invalid resource: Invalid PCI Device ID: {item}")

    return check


def _gpu_exclusive_ids(kind: devices.DeviceKind[Any], spec: Mapping[str, Any]) -> None:
    if spec.get("allowIDs") and spec.get("denyIDs"):
        raise Rejected("invalid resource: AllowIDs and DenyIDs cannot be used together")


# Each kind's checks in the reference's order: the first failing one names the problem.
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


def validate(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> None:
    """Raise ``Rejected`` when ``obj`` (a whole resource, CREATE or UPDATE) is invalid."""
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise Rejected("invalid resource: spec must be an object")
    try:
        kind.spec_of(obj)
    except pydantic.ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in ("spec", *problem["loc"]))
        raise Rejected(f"invalid resource: {field}: {problem['msg']}") from error
    for check in CHECKS[kind.name]:
        check(kind, spec)


@dataclasses.dataclass(frozen=True)
class Context:
    """What warnings need to know about the cluster, gathered by the caller."""

    other_selectors: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    """nodeSelector of every other resource of the same kind, by resource name."""
    config_map_exists: bool | None = None
    """Whether the ``provisioningConfig`` ConfigMap exists; None when unknown or not set."""
    plugin_namespace: str = "kube-system"


_DEFAULT_SELECTOR = {"kubernetes.io/arch": "amd64"}


def _overlapping(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether a node could match both selectors (no key demands two different values)."""
    return all(b.get(key, value) == value for key, value in a.items())


def warnings(kind: devices.DeviceKind[Any], obj: Mapping[str, Any], context: Context) -> list[str]:
    """Admission warnings for a valid resource; each names the field and the fix."""
    spec = obj.get("spec") or {}
    found: list[str] = []
    if spec.get("monitoringMode") and not spec.get("enableMonitoring"):
        found.append(
            "spec.monitoringMode has no effect without spec.enableMonitoring: true; "
            "set enableMonitoring or remove monitoringMode"
        )
    selector = spec.get("nodeSelector") or _DEFAULT_SELECTOR
    for other, other_selector in sorted(context.other_selectors.items()):
        if _overlapping(selector, other_selector or _DEFAULT_SELECTOR):
            found.append(
                f"spec.nodeSelector may select the same nodes as {kind.kind} {other}, which "
                "would run two plugins per node; make the nodeSelectors disjoint"
            )
    if spec.get("provisioningConfig") and context.config_map_exists is False:
        found.append(
            f"spec.provisioningConfig: ConfigMap {spec['provisioningConfig']} does not exist in "
            f"{context.plugin_namespace}; create it there or the init container cannot start"
        )
    return found
