"""Machines with and without each Intel device, as nfd-worker (v0.17) describes them in a
``NodeFeature`` object, and the labels each must get from the shipped NodeFeatureRules.

What nfd-worker reports, from its sources: every PCI device as a ``pci.device`` instance (vendor,
device, class as lower-case hex without 0x, the class cut to class and subclass); the names in
/proc/modules as ``kernel.loadedmodule``; those plus the built-in modules (the .ko file's base
name, so vfio-pci keeps its dash) as ``kernel.enabledmodule``; the CPUID flags as ``cpu.cpuid``;
``sgx.enabled``/``sgx.epc`` in ``cpu.security`` only when the firmware enabled SGX (the EPC size
in bytes); the kernel configuration as ``kernel.config``.

The expected labels are written by hand from the hardware, not derived from the rules: a rule
that matches too much or too little makes the test fail. Every device has a positive machine and
near misses: the device without its driver, a virtual function or an unknown device id, a
matching driver without the device, SGX switched off in the firmware or unsupported by the kernel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

PREFIX = "intel.feature.node.kubernetes.io/"
NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
EPC = "sgx.intel.com/epc"


def pci(vendor: str, device: str, klass: str, **extra: str) -> dict[str, str]:
    return {
        "vendor": vendor,
        "device": device,
        "class": klass,
        "subsystem_vendor": vendor,
        "subsystem_device": "0000",
        **extra,
    }


# What every server has: an Intel host bridge, an ASPEED BMC's VGA (a display device of another
# vendor), an Intel E810 NIC.
BASE_PCI = (
    pci("8086", "09a2", "0600"),
    pci("1a03", "2000", "0300"),
    pci("8086", "1593", "0200", sriov_totalvfs="128"),
)
BASE_MODULES = ("ast", "ice", "nvme", "overlay", "br_netfilter")
BASE_BUILTIN = ("unix", "crc32c_generic")
BASE_CPUID = ("AESNI", "AVX", "AVX2", "AVX512F", "SSE4", "VMX")
BASE_KCONFIG: Mapping[str, str] = {"X86_64": "y", "NO_HZ": "y"}

SGX_CPUID = ("SGX", "SGXLC")
SGX_KCONFIG: Mapping[str, str] = {**BASE_KCONFIG, "X86_SGX": "y"}

# Intel devices (vendor 8086) as their physical functions report them.
ARC_A770 = pci("8086", "56a0", "0300")
BATTLEMAGE_B580 = pci("8086", "e20b", "0300")
FLEX_170 = pci("8086", "56c0", "0380")
QAT_4XXX = pci("8086", "4940", "0b40", sriov_totalvfs="16")
QAT_4XXX_VF = pci("8086", "4941", "0b40")
QAT_C62X = pci("8086", "37c8", "0b40", sriov_totalvfs="16")
DSA_SPR = pci("8086", "0b25", "0880")
IAA_SPR = pci("8086", "0cfe", "0880")
DLB2 = pci("8086", "2710", "0b40", sriov_totalvfs="16")
ARRIA10 = pci("8086", "09c4", "1200")
NPU_LNL = pci("8086", "643e", "1200")
UNKNOWN_ACCELERATOR = pci("8086", "7f00", "1200")


@dataclasses.dataclass(frozen=True)
class Machine:
    """One fake node: what nfd-worker would find on it and what the rules must make of it."""

    name: str
    pci: Sequence[Mapping[str, str]] = ()
    modules: Sequence[str] = ()
    """Loaded modules, besides the base ones."""
    builtin: Sequence[str] = ()
    """Built-in modules, besides the base ones."""
    cpuid: Sequence[str] = ()
    security: Mapping[str, str] = dataclasses.field(default_factory=dict)
    kconfig: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(BASE_KCONFIG))
    labels: frozenset[str] = frozenset()
    """The devices whose ``intel.feature.node.kubernetes.io/<device>`` label it must get."""

    @property
    def expected_labels(self) -> dict[str, str]:
        return {PREFIX + device: "true" for device in self.labels}

    @property
    def epc(self) -> str | None:
        """The sgx.intel.com/epc capacity it must get (the EPC bytes), when it is SGX-labelled."""
        return self.security.get("sgx.epc") if "sgx" in self.labels else None

    def node_feature(self, namespace: str, worker_version: str) -> dict[str, Any]:
        """The NodeFeature object nfd-worker would write for this machine."""
        loaded = [*BASE_MODULES, *self.modules]
        return {
            "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
            "kind": "NodeFeature",
            "metadata": {
                "name": self.name,
                "namespace": namespace,
                "labels": {NODE_NAME_LABEL: self.name},
                "annotations": {"nfd.node.kubernetes.io/worker.version": worker_version},
            },
            "spec": {
                "labels": {},
                "features": {
                    "flags": {
                        "cpu.cpuid": _flags([*BASE_CPUID, *self.cpuid]),
                        "kernel.loadedmodule": _flags(loaded),
                        "kernel.enabledmodule": _flags([*loaded, *BASE_BUILTIN, *self.builtin]),
                    },
                    "attributes": {
                        "cpu.model": {
                            "elements": {"vendor_id": "Intel", "family": "6", "id": "143"}
                        },
                        "cpu.security": {"elements": dict(self.security)},
                        "kernel.config": {"elements": dict(self.kconfig)},
                        "kernel.version": {"elements": {"full": "6.8.0-49-generic"}},
                    },
                    "instances": {
                        "pci.device": {
                            "elements": [
                                {"attributes": dict(device)} for device in (*BASE_PCI, *self.pci)
                            ]
                        }
                    },
                },
            },
        }


def _flags(names: Sequence[str]) -> dict[str, Any]:
    return {"elements": {name: {} for name in names}}


def _sgx(epc: int) -> dict[str, str]:
    return {"sgx.enabled": "true", "sgx.epc": str(epc)}


MACHINES: Sequence[Machine] = (
    Machine("plain-server"),
    # GPU: i915 or xe, loaded or built in; display (0300) or display controller (0380).
    Machine("gpu-arc-i915", pci=[ARC_A770], modules=["i915"], labels=frozenset({"gpu"})),
    Machine("gpu-bmg-xe-builtin", pci=[BATTLEMAGE_B580], builtin=["xe"], labels=frozenset({"gpu"})),
    Machine("gpu-flex-i915", pci=[FLEX_170], modules=["i915"], labels=frozenset({"gpu"})),
    Machine("gpu-no-driver", pci=[ARC_A770]),
    # i915 loaded, yet the only display device is the ASPEED's: vendor and class must be of one
    # device.
    Machine("aspeed-with-i915", modules=["i915"]),
    # QAT: intel_qat and vfio-pci (loaded as vfio_pci, or built in as vfio-pci).
    Machine(
        "qat-4xxx",
        pci=[QAT_4XXX],
        modules=["intel_qat", "qat_4xxx", "vfio_pci", "vfio"],
        labels=frozenset({"qat"}),
    ),
    Machine(
        "qat-c62x-vfio-builtin",
        pci=[QAT_C62X],
        modules=["intel_qat", "qat_c62x"],
        builtin=["vfio-pci"],
        labels=frozenset({"qat"}),
    ),
    Machine("qat-no-vfio", pci=[QAT_4XXX], modules=["intel_qat", "qat_4xxx"]),
    Machine("qat-vf-in-vm", pci=[QAT_4XXX_VF], modules=["intel_qat", "qat_4xxxvf", "vfio_pci"]),
    # SGX: CPU with Flexible Launch Control, enabled in the firmware, kernel with X86_SGX.
    Machine(
        "sgx-server",
        cpuid=SGX_CPUID,
        security=_sgx(68_451_041_280),
        kconfig=SGX_KCONFIG,
        labels=frozenset({"sgx"}),
    ),
    Machine("sgx-off-in-firmware", cpuid=SGX_CPUID, kconfig=SGX_KCONFIG),
    Machine("sgx-without-flc", cpuid=["SGX"], security=_sgx(134_217_728), kconfig=SGX_KCONFIG),
    Machine("sgx-old-kernel", cpuid=SGX_CPUID, security=_sgx(68_451_041_280)),
    # DSA and IAA: both class 0880 with idxd, told apart by device id.
    Machine("dsa-spr", pci=[DSA_SPR], modules=["idxd", "idxd_bus"], labels=frozenset({"dsa"})),
    Machine("iaa-spr", pci=[IAA_SPR], modules=["idxd", "idxd_bus"], labels=frozenset({"iaa"})),
    Machine("dsa-no-idxd", pci=[DSA_SPR]),
    # DLB 2.0 with dlb2 (same class as QAT).
    Machine("dlb2", pci=[DLB2], modules=["dlb2"], labels=frozenset({"dlb"})),
    Machine("dlb-no-driver", pci=[DLB2], modules=["intel_qat"]),
    # Arria 10 with the DFL or the OPAE driver (same class as the NPU).
    Machine(
        "fpga-dfl", pci=[ARRIA10], modules=["dfl_pci", "dfl"], labels=frozenset({"fpga-arria10"})
    ),
    Machine(
        "fpga-opae", pci=[ARRIA10], modules=["intel_fpga_pci"], labels=frozenset({"fpga-arria10"})
    ),
    Machine("fpga-no-driver", pci=[ARRIA10], modules=["intel_vpu"]),
    # NPU with intel_vpu; an unknown accelerator of the same class with intel_vpu is none.
    Machine("npu-lunar-lake", pci=[NPU_LNL], modules=["intel_vpu"], labels=frozenset({"npu"})),
    Machine("npu-unknown-id", pci=[UNKNOWN_ACCELERATOR], modules=["intel_vpu"]),
    # Everything at once: each rule holds on its own.
    Machine(
        "every-device",
        pci=[FLEX_170, QAT_4XXX, DSA_SPR, IAA_SPR, DLB2, ARRIA10, NPU_LNL],
        modules=[
            "i915",
            "intel_qat",
            "qat_4xxx",
            "vfio_pci",
            "idxd",
            "dlb2",
            "dfl_pci",
            "intel_vpu",
        ],
        cpuid=SGX_CPUID,
        security=_sgx(274_877_906_944),
        kconfig=SGX_KCONFIG,
        labels=frozenset({"gpu", "qat", "sgx", "dsa", "iaa", "dlb", "fpga-arria10", "npu"}),
    ),
)
