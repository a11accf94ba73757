"""Defaulting and validation of the ``*DevicePlugin`` resources, as pure functions.

``default`` is the reference's ``Default()``: the plugin image, when empty, becomes
``intel/intel-<dev>-plugin:<minimum version>``; nothing else changes. It returns a JSON patch.

``validate`` is the reference's ``ValidateCreate``/``ValidateUpdate`` (an UPDATE is judged by
its new object alone): the checks of ``reconcile.validation`` (the reference's, with its
deliberate fixes, and the opt-in registry allow-list), shared with the reconciler, which
applies them to stored resources the webhook never saw; the first failure is the denial.

A valid resource may still get warnings (never denials), each naming the field and the fix:
GPU ``monitoringMode`` without ``enableMonitoring``; a nodeSelector that can select the same
nodes as another resource of the kind (two plugins per node). What the cluster holds arrives
in ``Context``. Whether a ``provisioningConfig`` ConfigMap exists is not said here: anyone who
can reach the webhook port could ask, and the resource's status reports it to its owner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from deviceplugin_operator import devices
from deviceplugin_operator.admission import errors, review
from deviceplugin_operator.reconcile import validation


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


def _object(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise errors.Rejected("invalid resource: the object is not a JSON object", code=400)
    return obj


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
    obj = _object(new)
    try:
        spec = validation.parse(kind, obj).wire()
        validation.check_wire(kind, spec, allowed_registries=allowed_registries)
    except validation.Invalid as invalid:
        raise errors.Rejected(invalid.message) from None
    return _warnings(kind, obj, spec, context or Context())


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
