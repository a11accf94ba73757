"""Spec and status shared by the eight ``deviceplugin.intel.com/v1`` kinds.

Each device module subclasses ``DevicePluginSpec`` (or ``DevicePluginSpecWithInitImage`` for the
seven kinds that can run an init container) with its own fields. Optional fields default to None,
which is how Go's ``omitempty`` zero values arrive; renderers apply the reference's defaults.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic

from deviceplugin_operator.api import meta, wire

GROUP = "deviceplugin.intel.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"


class DevicePluginSpec(wire.Model):
    """DevicePluginSpec defines the desired state of a device plugin."""

    image: str | None = None
    """Image is a container image with the device plugin executable."""

    node_selector: dict[str, str] | None = None
    """NodeSelector provides a simple way to constrain device plugin pods to nodes with particular labels."""  # noqa: E501

    tolerations: list[meta.Toleration] | None = None
    """Specialized nodes (e.g., with accelerators) can be Tainted to make sure unwanted pods are not scheduled on them. Tolerations can be set for the plugin pod to neutralize the Taint."""  # noqa: E501

    log_level: Annotated[int, pydantic.Field(ge=0)] | None = None
    """LogLevel sets the plugin's log level."""


class DevicePluginSpecWithInitImage(DevicePluginSpec):
    """A device plugin spec whose DaemonSet can run an init container."""

    init_image: str | None = None
    """InitImage is a container image with tools that prepare each node for the plugin."""


class AdvertisedDevice(wire.Model):
    """One extended resource of the kind's domain, summed over the nodes its plugin pods run on."""

    resource: str
    """The extended resource, e.g. gpu.intel.com/i915 or fpga.intel.com/af-<id>."""

    capacity: wire.Int64
    """Sum of the nodes' status.capacity of the resource."""

    allocatable: wire.Int64
    """Sum of the nodes' status.allocatable of the resource."""

    nodes: wire.Int32
    """How many of those nodes advertise more than zero of it (capacity)."""


_ATOMIC_LIST: dict[str, Any] = {"x-kubernetes-list-type": "atomic"}
"""Status lists only the operator writes, each time whole: as ``map`` lists the apiserver
tracked every entry's fields in ``managedFields`` and walked them on every write of the
resource, the user's spec changes included (+0.4 ms per write, 790 bytes; docs/benchmarks.md,
session 9)."""


class DevicePluginStatus(wire.Model):
    """DevicePluginStatus defines the observed state of a device plugin."""

    controlled_daemon_set: (
        Annotated[
            meta.ObjectReference,
            pydantic.Field(json_schema_extra={"x-kubernetes-map-type": "atomic"}),
        ]
        | None
    ) = None
    """ControlledDaemonSet references the DaemonSet controlled by the operator."""

    node_names: list[str] | None = None
    """The list of Node names where the device plugin pods are running."""

    desired_number_scheduled: wire.Int32
    """The total number of nodes that should be running the device plugin
    pod (including nodes correctly running the device plugin pod)."""

    number_ready: wire.Int32
    """The number of nodes that should be running the device plugin pod and have one
    or more of the device plugin pod running and ready."""

    observed_generation: Annotated[wire.Int64, pydantic.Field(ge=0)] | None = None
    """The .metadata.generation of the resource that this status was computed from."""

    conditions: (
        Annotated[
            list[meta.Condition],
            pydantic.Field(json_schema_extra=_ATOMIC_LIST),
        ]
        | None
    ) = None
    """Conditions: Ready (every selected node runs a ready plugin pod), Progressing (the
    DaemonSet is rolling out), Degraded (something needs attention, see the reason) and
    DevicesAdvertised (every node with a ready plugin pod advertises a resource of the
    kind's domain)."""

    devices: (
        Annotated[
            list[AdvertisedDevice],
            pydantic.Field(json_schema_extra=_ATOMIC_LIST),
        ]
        | None
    ) = None
    """The extended resources of the kind's domain that the nodes running its plugin pods
    advertise, one entry per resource name, sorted."""

    device_totals: str | None = None
    """The devices' allocatable totals in short (i915=6, millicores=6000), "none" when no
    node advertises one: the DEVICES column of kubectl get."""
