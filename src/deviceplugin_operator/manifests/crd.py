"""CustomResourceDefinitions generated from the pydantic models and the device registry.

pydantic's JSON schema is turned into a Kubernetes structural schema: references inlined,
``Optional`` written as an optional property (never a null type), titles and null defaults
dropped, keys and ``required`` lists sorted like controller-gen's. The fields' descriptions
are their attribute docstrings (``wire.attribute_docstrings``), added here rather than when the
models are defined, which would cost every operator start the time to read them. The ten CRDs
keep the reference's names, scopes, printer columns (one more: DEVICES) and file names.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic

from deviceplugin_operator import devices
from deviceplugin_operator.api import fpga, meta, plugin, wire
from deviceplugin_operator.manifests import rendering

BASES = "crd/bases"
KUSTOMIZATION = "crd/kustomization.yaml"

_API_VERSION_DOC = """\
APIVersion defines the versioned schema of this representation of an object.
Servers should convert recognized schemas to the latest internal value, and
may reject unrecognized values.
More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"""
_KIND_DOC = """\
Kind is a string value representing the REST resource this object represents.
Servers may infer this from the endpoint the client submits requests to.
Cannot be updated.
In CamelCase.
More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"""

DEVICE_PLUGIN_COLUMNS: tuple[Mapping[str, str], ...] = (
    {"jsonPath": ".status.desiredNumberScheduled", "name": "Desired", "type": "integer"},
    {"jsonPath": ".status.numberReady", "name": "Ready", "type": "integer"},
    {"jsonPath": ".status.deviceTotals", "name": "Devices", "type": "string"},
    {"jsonPath": ".spec.nodeSelector", "name": "Node Selector", "type": "string"},
    {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
)
"""``kubectl get`` columns of every device plugin kind: NAME DESIRED READY DEVICES NODE
SELECTOR AGE (the reference's, plus DEVICES: what the plugins' nodes advertise)."""


@dataclasses.dataclass(frozen=True)
class Definition:
    """What one CRD is generated from."""

    resource: meta.ResourceType
    description: str
    spec: type[pydantic.BaseModel]
    status: type[pydantic.BaseModel]
    spec_required: bool = False
    status_subresource: bool = False
    printer_columns: tuple[Mapping[str, str], ...] = ()

    @property
    def file_name(self) -> str:
        """Path under deployments/operator, e.g. ``crd/bases/fpga.intel.com_fpgaregions.yaml``."""
        return f"{BASES}/{self.resource.group}_{self.resource.plural}.yaml"


def definitions() -> list[Definition]:
    """Every CRD the operator installs: one per device kind, then the two FPGA mappings."""
    result = [
        Definition(
            resource=kind.resource,
            description=kind.description,
            spec=kind.spec,
            status=plugin.DevicePluginStatus,
            status_subresource=True,
            printer_columns=DEVICE_PLUGIN_COLUMNS,
        )
        for kind in devices.KINDS.values()
    ]
    for root, resource, spec, status in (
        (
            fpga.AcceleratorFunction,
            fpga.ACCELERATOR_FUNCTION,
            fpga.AcceleratorFunctionSpec,
            fpga.AcceleratorFunctionStatus,
        ),
        (fpga.FpgaRegion, fpga.FPGA_REGION, fpga.FpgaRegionSpec, fpga.FpgaRegionStatus),
    ):
        result.append(
            Definition(
                resource=resource,
                description=inspect.cleandoc(root.__doc__ or ""),
                spec=spec,
                status=status,
                spec_required=True,
            )
        )
    return result


def custom_resource_definition(definition: Definition) -> dict[str, Any]:
    """The CustomResourceDefinition object for ``definition``."""
    resource = definition.resource
    root: dict[str, Any] = {
        "description": definition.description,
        "properties": {
            "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
            "kind": {"description": _KIND_DOC, "type": "string"},
            "metadata": {"type": "object"},
            "spec": structural_schema(definition.spec),
            "status": structural_schema(definition.status),
        },
        "type": "object",
    }
    if definition.spec_required:
        root["required"] = ["spec"]

    names: dict[str, Any] = {
        "kind": resource.kind,
        "listKind": resource.list_kind,
        "plural": resource.plural,
        "singular": resource.singular,
    }
    if resource.short_names:
        names["shortNames"] = list(resource.short_names)
    version: dict[str, Any] = {
        "name": resource.version,
        "schema": {"openAPIV3Schema": root},
        "served": True,
        "storage": True,
    }
    if definition.printer_columns:
        version["additionalPrinterColumns"] = [dict(c) for c in definition.printer_columns]
    if definition.status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name},
        "spec": {
            "group": resource.group,
            "names": names,
            "scope": "Namespaced" if resource.namespaced else "Cluster",
            "versions": [version],
        },
    }


def structural_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as a Kubernetes structural schema."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    for cls in _models(model):
        if cls is not model and cls.__name__ not in defs:
            raise ValueError(f"{model.__name__}: no schema definition named {cls.__name__}")
        _describe_fields(schema if cls is model else defs[cls.__name__], cls)
    return _structural(schema, defs)


def _models(model: type[pydantic.BaseModel]) -> Iterator[type[pydantic.BaseModel]]:
    """``model`` and every model its fields contain, at any depth, each once."""
    seen: dict[str, type[pydantic.BaseModel]] = {}
    pending: list[Any] = [model]
    while pending:
        kind = pending.pop()
        if isinstance(kind, type) and issubclass(kind, pydantic.BaseModel):
            if kind.__name__ in seen:
                if seen[kind.__name__] is not kind:
                    raise ValueError(f"two models named {kind.__name__} in {model.__name__}")
                continue
            seen[kind.__name__] = kind
            pending += [field.annotation for field in kind.model_fields.values()]
        else:
            pending += typing.get_args(kind)
    yield from seen.values()


def _describe_fields(schema: dict[str, Any], model: type[pydantic.BaseModel]) -> None:
    """Each property of ``model``'s schema without a description gets its docstring."""
    properties = schema.get("properties", {})
    for name, doc in wire.attribute_docstrings(model).items():
        field = model.model_fields.get(name)
        node = properties.get((field.alias or name) if field else None)
        if node is not None and "description" not in node:
            node["description"] = doc


def _structural(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    node = dict(schema)
    node.pop("$defs", None)
    node.pop("title", None)
    if node.get("default", 0) is None:
        del node["default"]

    if "$ref" in node:
        target = _structural(defs[node.pop("$ref").rsplit("/", 1)[-1]], defs)
        node = {**target, **node}
    if "anyOf" in node:
        options = [option for option in node.pop("anyOf") if option != {"type": "null"}]
        if len(options) != 1:
            raise ValueError(f"not expressible as a structural schema: {schema}")
        node = {**_structural(options[0], defs), **node}

    if "properties" in node:
        properties = {
            name: _structural(value, defs) for name, value in sorted(node["properties"].items())
        }
        if properties:
            node["properties"] = properties
        else:
            del node["properties"]
    if isinstance(node.get("items"), Mapping):
        node["items"] = _structural(node["items"], defs)
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        node["additionalProperties"] = _structural(additional, defs)
    elif additional is False:
        # Unknown fields are pruned by the API server; false would make the schema invalid
        # next to properties.
        del node["additionalProperties"]
    if "required" in node:
        node["required"] = sorted(node["required"])
    return {key: node[key] for key in sorted(node)}


def files() -> dict[str, str]:
    """Generated files under deployments/operator: every CRD and the crd kustomization."""
    generated = {
        definition.file_name: rendering.yaml_document(custom_resource_definition(definition))
        for definition in definitions()
    }
    resources = [name.removeprefix("crd/") for name in generated]
    generated[KUSTOMIZATION] = rendering.yaml_document({"resources": resources}, start=False)
    return generated
