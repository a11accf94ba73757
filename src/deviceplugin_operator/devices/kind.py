"""DeviceKind: the record that turns a spec model, a base DaemonSet and two hooks into a kind.

Everything generic (rendering, status, admission routes, CRDs, RBAC) reads a kind through this
record, so a device never needs code outside its own module: variation is data, and where a
device needs behaviour it gets a named hook here.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import types
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar

import yaml

from deviceplugin_operator.api import meta, plugin
from deviceplugin_operator.devices import podspec

IMAGE_MIN_VERSION = "0.36.0"
"""The oldest plugin image version this operator runs; also the tag of the default images."""

IMAGE_VENDOR = "intel"
"""Repository path of the default images, e.g. ``intel/intel-gpu-plugin``."""

SpecT = TypeVar("SpecT", bound=plugin.DevicePluginSpec)


def _no_args(spec: plugin.DevicePluginSpec) -> list[str]:
    return []


def _no_selector() -> Mapping[str, str]:
    return types.MappingProxyType({})


@functools.cache
def _template(name: str) -> dict[str, Any]:
    resource = importlib.resources.files("deviceplugin_operator.devices").joinpath(
        "templates", f"{name}.yaml"
    )
    # libyaml's loader when PyYAML has it: the pure-Python one takes ~25 ms for the eight
    # templates, all before the operator's first list (the label selector names them).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loaded: dict[str, Any] = yaml.load(resource.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    return loaded


@functools.cache
def _template_json(name: str) -> str:
    return json.dumps(_template(name))


@dataclasses.dataclass(frozen=True)
class PodMutator:
    """A Pod admission webhook that a device brings besides its resource's own two.

    Both the admission server (its route) and the manifest generators (its entry in the
    MutatingWebhookConfiguration) read this record, so the two cannot disagree.
    """

    webhook: str
    """Name of the webhook entry, e.g. ``sgx.mutator.webhooks.intel.com``."""

    path: str
    """URL path the admission server serves it at (the reference's)."""

    resource_domain: str
    """Prefix of the extended resources it acts on, e.g. ``sgx.intel.com``: only pods whose
    containers ask for one of them are sent to it."""

    reinvocation_policy: Literal["Never", "IfNeeded"] | None = None

    reads: tuple[meta.ResourceType, ...] = ()
    """Resources it reads in every namespace (RBAC get/list/watch; informers in the manager)."""

    @property
    def match_condition(self) -> str:
        """The name of its CEL ``matchConditions`` entry."""
        return f"requests-{self.resource_domain.split('.', 1)[0]}-resources"

    @property
    def match_expression(self) -> str:
        """CEL: some container (not init container: the mutators do not look at those) names
        a ``<resource_domain>/...`` resource in ``limits`` or ``requests``. ``has()`` guards
        each optional field, as reading an absent one is an evaluation error, which the API
        server would treat as the failure policy says."""
        names = f"r.startsWith('{self.resource_domain}/')"
        return (
            "object.spec.containers.exists(c, has(c.resources) && ("
            f"(has(c.resources.limits) && c.resources.limits.exists(r, {names})) || "
            f"(has(c.resources.requests) && c.resources.requests.exists(r, {names}))))"
        )


@dataclasses.dataclass(frozen=True)
class DeviceKind(Generic[SpecT]):
    """One ``deviceplugin.intel.com/v1`` kind and how to render its DaemonSet."""

    name: str
    """Device name as the ``--devices`` flag spells it, e.g. ``gpu``; also names the template
    ``templates/<name>.yaml``."""

    title: str
    """What the hardware is called in prose, e.g. ``GPU`` or ``QuickAssist Technology``."""

    spec: type[SpecT]
    """The pydantic model of the resource's ``spec``."""

    image: str
    """Basename of the plugin image, e.g. ``intel-gpu-plugin``."""

    init_image: str | None = None
    """Basename of the init container image, or None for a kind without ``initImage``."""

    plugin_args: Callable[[SpecT], list[str]] = _no_args
    """The plugin's arguments after ``-v <logLevel>``, in the reference's order."""

    customize_pod: Callable[[podspec.PodSpec, SpecT], None] | None = None
    """Edits the rendered pod spec in place: init containers, their volumes and env. The spec
    it gets has its images already upgraded."""

    required_node_selector: Mapping[str, str] = dataclasses.field(default_factory=_no_selector)
    """Labels added to a user's nodeSelector unless the user set those keys."""

    pod_mutator: PodMutator | None = None
    """The Pod webhook the device brings (SGX, FPGA), or None."""

    def __post_init__(self) -> None:
        has_init_field = issubclass(self.spec, plugin.DevicePluginSpecWithInitImage)
        if has_init_field != (self.init_image is not None):
            raise TypeError(f"{self.name}: init_image must be set iff the spec has initImage")

    @property
    def kind(self) -> str:
        """The resource kind, e.g. ``GpuDevicePlugin``."""
        return f"{self.name.capitalize()}DevicePlugin"

    @property
    def plural(self) -> str:
        """The resource plural, e.g. ``gpudeviceplugins``."""
        return f"{self.name}deviceplugins"

    @property
    def resource(self) -> meta.ResourceType:
        return meta.ResourceType(
            group=plugin.GROUP,
            version=plugin.VERSION,
            kind=self.kind,
            plural=self.plural,
            namespaced=False,
        )

    @property
    def resource_domain(self) -> str:
        """Domain of the extended resources its plugin advertises on nodes, e.g.
        ``gpu.intel.com`` (``gpu.intel.com/i915``, FPGA's ``fpga.intel.com/af-...``)."""
        return f"{self.name}.intel.com"

    @property
    def display_name(self) -> str:
        """The name OLM shows, e.g. ``Intel GPU Device Plugin``."""
        return f"Intel {self.title} Device Plugin"

    @property
    def description(self) -> str:
        """The CRD's description of the resource."""
        return (
            f"{self.kind} is the Schema for the {self.plural} API. It represents the "
            f"{self.title} device plugin responsible for advertising Intel {self.title} "
            "hardware resources to the kubelet."
        )

    @property
    def default_image(self) -> str:
        """The image the defaulting webhook stores when ``spec.image`` is empty."""
        return f"{IMAGE_VENDOR}/{self.image}:{IMAGE_MIN_VERSION}"

    @property
    def template(self) -> dict[str, Any]:
        """A fresh copy of the base DaemonSet (reference: ``deployments/<dev>_plugin/base``):
        decoded from its cached JSON, ~6x faster than a deep copy, once per reconcile."""
        fresh: dict[str, Any] = json.loads(_template_json(self.name))
        return fresh

    @property
    def base_name(self) -> str:
        """Name of the base DaemonSet and value of its ``app`` label, e.g. ``intel-gpu-plugin``:
        the template's ``metadata.name``, which is ``intel-<name>-plugin`` for every kind (a
        test holds the templates to it), so that naming the kinds' DaemonSets and Pods at
        start-up (the informers' label selector) parses no template."""
        return f"intel-{self.name}-plugin"

    @property
    def mutate_path(self) -> str:
        """URL path of the defaulting webhook."""
        return f"/mutate-{plugin.GROUP.replace('.', '-')}-{plugin.VERSION}-{self.singular}"

    @property
    def validate_path(self) -> str:
        """URL path of the validating webhook."""
        return f"/validate-{plugin.GROUP.replace('.', '-')}-{plugin.VERSION}-{self.singular}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def spec_of(self, resource: Mapping[str, Any]) -> SpecT:
        """Parse the ``spec`` of a resource of this kind (an absent spec is an empty one)."""
        return self.spec.model_validate(resource.get("spec") or {})
