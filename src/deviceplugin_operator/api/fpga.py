"""The ``fpga.intel.com/v2`` kinds: AcceleratorFunction and FpgaRegion.

Namespaced mappings from user-facing FPGA resource names to bitstream and region identities,
read by the FPGA pod mutator. The operator never writes them.
"""

from __future__ import annotations

from typing import Annotated

import pydantic

from deviceplugin_operator.api import meta, wire

GROUP = "fpga.intel.com"
VERSION = "v2"

ACCELERATOR_FUNCTION = meta.ResourceType(
    group=GROUP,
    version=VERSION,
    kind="AcceleratorFunction",
    plural="acceleratorfunctions",
    namespaced=True,
    short_names=("af",),
)
FPGA_REGION = meta.ResourceType(
    group=GROUP,
    version=VERSION,
    kind="FpgaRegion",
    plural="fpgaregions",
    namespaced=True,
    short_names=("fpga",),
)

AfuId = Annotated[str, pydantic.Field(pattern=r"^[0-9a-f]{8,40}$")]
InterfaceId = Annotated[str, pydantic.Field(pattern=r"^[0-9a-f]{8,32}$")]


class AcceleratorFunctionSpec(wire.Model):
    """AcceleratorFunctionSpec contains actual specs for AcceleratorFunction."""

    afu_id: AfuId
    """Identifier of the accelerator function unit (the bitstream)."""

    interface_id: InterfaceId
    """Identifier of the FPGA region interface the bitstream is built for."""

    # The reference's schema, to the character: ``^af|region$`` is "starts with af" or
    # "ends with region" (alternation binds loosest), so "afx" and "subregion" are accepted
    # too. Objects its CRD stored must stay valid under ours; the FPGA pod mutator is where
    # a mode other than af/region matters, and it denies pods asking for such a function
    # with the reference's message ('... is registered with unknown mode "afx" instead of
    # "af" or "region"').
    mode: Annotated[str, pydantic.Field(pattern=r"^af|region$")]
    """Mode of operation: af (preprogrammed) or region (programmed on demand)."""


class AcceleratorFunctionStatus(wire.Model):
    """AcceleratorFunctionStatus is an empty object used to satisfy operator-sdk."""


class FpgaRegionSpec(wire.Model):
    """FpgaRegionSpec contains actual specs for FpgaRegion."""

    interface_id: InterfaceId
    """Identifier of the FPGA region interface."""


class FpgaRegionStatus(wire.Model):
    """FpgaRegionStatus is an empty object used to satisfy operator-sdk."""


class AcceleratorFunction(wire.Model):
    """AcceleratorFunction is a specification for an Accelerator Function resource
    provided by a FPGA-based programmable hardware accelerator."""

    api_version: str = ACCELERATOR_FUNCTION.api_version
    kind: str = ACCELERATOR_FUNCTION.kind
    # A factory, not an instance: an instance would build ObjectMeta's validator at import.
    metadata: meta.ObjectMeta = pydantic.Field(default_factory=meta.ObjectMeta)
    spec: AcceleratorFunctionSpec
    status: AcceleratorFunctionStatus | None = None


class FpgaRegion(wire.Model):
    """FpgaRegion is a specification for a FPGA region resource which can be programmed
    with a bitstream."""

    api_version: str = FPGA_REGION.api_version
    kind: str = FPGA_REGION.kind
    metadata: meta.ObjectMeta = pydantic.Field(default_factory=meta.ObjectMeta)
    spec: FpgaRegionSpec
    status: FpgaRegionStatus | None = None
