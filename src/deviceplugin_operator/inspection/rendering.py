"""``render``: the DaemonSets the operator would create for the resources in a file, offline.

Each ``deviceplugin.intel.com/v1`` document goes through what the operator does with a stored
resource: the validating webhook's checks (``reconcile.validation``, same messages), the image
policy and then ``reconcile.daemonset.desired_daemonset`` itself, with the ``Settings`` that
cli.py builds from the operator's own flags and environment. There is no second renderer:
what is printed is what the reconciler would create. Documents of other API groups (a
kustomize build also holds Namespaces, FPGA mappings ...) are passed over; a ``List`` (what
``kubectl get -o yaml`` prints) is read item by item.

A resource that does not exist yet has no UID: its DaemonSet's owner reference then carries
``UNKNOWN_UID``; given a resource read from the cluster, it carries the real one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from deviceplugin_operator import devices, settings
from deviceplugin_operator.api import plugin
from deviceplugin_operator.reconcile import daemonset, images, validation

UNKNOWN_UID = "<uid of the resource, set by the API server>"
"""Owner reference UID of a DaemonSet rendered for a resource that was never stored."""


class InputError(ValueError):
    """The input cannot be read as YAML documents; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Document:
    """One object of the input and where it was found (``file#3`` or ``file#3.items[0]``)."""

    where: str
    body: Mapping[str, Any]


@dataclasses.dataclass
class Result:
    """What a render produced: DaemonSets in input order, problems (the resource would be
    refused or could not run), notes (what was deliberately left out)."""

    daemonsets: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def documents(text: str, source: str) -> list[Document]:
    """The objects of a YAML (or JSON) stream; ``List`` objects are opened up."""
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise InputError(f"{source}: not valid YAML: {error}") from None
    found: list[Document] = []
    for index, body in enumerate(loaded, start=1):
        if body is None:
            continue
        found.extend(_opened(f"{source}#{index}", body))
    return found


def _opened(where: str, body: object) -> Iterator[Document]:
    if isinstance(body, Mapping) and str(body.get("kind", "")).endswith("List"):
        for index, item in enumerate(body.get("items") or ()):
            yield from _opened(f"{where}.items[{index}]", item)
        return
    yield Document(where, body if isinstance(body, Mapping) else {"": body})


def kind_of(body: Mapping[str, Any]) -> devices.DeviceKind[Any] | None:
    """The device kind of a ``deviceplugin.intel.com`` object, None for other groups;
    ``validation.Invalid`` for an unknown kind or version of that group."""
    api_version = str(body.get("apiVersion") or "")
    if api_version.partition("/")[0] != plugin.GROUP:
        return None
    if api_version != plugin.API_VERSION:
        raise validation.Invalid(
            f"apiVersion {api_version!r} is not served: use {plugin.API_VERSION}"
        )
    name = str(body.get("kind") or "")
    for kind in devices.KINDS.values():
        if kind.kind == name:
            return kind
    known = ", ".join(kind.kind for kind in devices.KINDS.values())
    raise validation.Invalid(f"kind {name!r} is not a {plugin.GROUP} kind (one of: {known})")


def render_resource(
    kind: devices.DeviceKind[Any],
    resource: Mapping[str, Any],
    config: settings.Settings,
    *,
    allowed_registries: Sequence[str] = (),
) -> dict[str, Any]:
    """The DaemonSet the reconciler would make of ``resource``: ``validation.Invalid`` with the
    webhook's message when it would be refused, ``daemonset.RenderError`` when it cannot be
    rendered."""
    metadata = resource.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not name or not isinstance(name, str):
        raise validation.Invalid("metadata.name: required: name the resource")
    spec = validation.parse(kind, resource)
    # The webhook judges the spec as written; the reconciler judges it again with its images
    # raised to the minimum (what would run): both are what a resource has to pass.
    validation.check(kind, spec, allowed_registries=allowed_registries)
    raised, _ = images.upgraded_spec(
        spec.model_copy(update={"image": spec.image or kind.default_image}),
        overrides=config.image_overrides,
    )
    validation.check(kind, raised, allowed_registries=allowed_registries)
    uid = str(metadata.get("uid") or UNKNOWN_UID)
    return daemonset.desired_daemonset(kind, name, uid, spec, config)


def render(
    found: Sequence[Document],
    config: settings.Settings,
    *,
    allowed_registries: Sequence[str] = (),
) -> Result:
    """Every DaemonSet the operator with ``config`` would create for ``found``."""
    result = Result()
    for document in found:
        body = document.body
        label = f"{document.where} ({body.get('kind', '?')} {_name(body)})"
        try:
            kind = kind_of(body)
            if kind is None:
                continue
            if kind.name not in config.devices:
                result.notes.append(
                    f"{label}: not rendered: {kind.name} is not in --devices, so the operator "
                    "leaves it alone"
                )
                continue
            result.daemonsets.append(
                render_resource(kind, body, config, allowed_registries=allowed_registries)
            )
        except validation.Invalid as invalid:
            result.problems.append(f"{label}: {invalid.message}")
        except daemonset.RenderError as error:
            result.problems.append(f"{label}: cannot be rendered: {error}")
    return result


def _name(body: Mapping[str, Any]) -> str:
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return str(name) if name else "<no name>"
