"""SGX (Software Guard Extensions) device plugin."""

from __future__ import annotations

from typing import Annotated

import pydantic

from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind, nfd, podspec


class SgxDevicePluginSpec(plugin.DevicePluginSpecWithInitImage):
    """SgxDevicePluginSpec defines the desired state of SgxDevicePlugin."""

    init_image: str | None = None
    """InitImage is a container image with tools (i.e., SGX NFD source hook) installed on each node.
    Recommendation is to leave this unset and prefer the SGX NodeFeatureRule instead."""

    enclave_limit: Annotated[int, pydantic.Field(ge=1)] | None = None
    """EnclaveLimit is a number of containers that can share the same SGX enclave device."""

    provision_limit: Annotated[int, pydantic.Field(ge=1)] | None = None
    """ProvisionLimit is a number of containers that can share the same SGX provision device."""

    dcap_infra_resources: bool | None = None
    """Deprecated: DcapInfraResources flag enables two special resources for Intel DCAP infrastructure containers.
    This is will be removed/modified in the future."""  # noqa: E501


def _args(spec: SgxDevicePluginSpec) -> list[str]:
    args = [
        *("-enclave-limit", str(spec.enclave_limit or 1)),
        *("-provision-limit", str(spec.provision_limit or 1)),
    ]
    if spec.dcap_infra_resources:
        args.append("-dcap-infra-resources")
    return args


def _nfd_hook(pod: podspec.PodSpec, spec: SgxDevicePluginSpec) -> None:
    if spec.init_image:
        nfd.add_source_hook(
            pod, name="intel-sgx-initcontainer", image=spec.init_image, volume="nfd-features"
        )


KIND = kind.DeviceKind(
    name="sgx",
    title="Software Guard Extensions",
    spec=SgxDevicePluginSpec,
    image="intel-sgx-plugin",
    init_image="intel-sgx-initcontainer",
    plugin_args=_args,
    customize_pod=_nfd_hook,
    pod_mutator=kind.PodMutator(
        webhook="sgx.mutator.webhooks.intel.com",
        path="/mutate--v1-pod",
        resource_domain="sgx.intel.com",
        # The reference's: another webhook's change (a sidecar injected) calls it again.
        reinvocation_policy="IfNeeded",
    ),
)
