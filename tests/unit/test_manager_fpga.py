"""The manager's FPGA wiring on the in-memory API: AcceleratorFunctions and FpgaRegions of
every namespace feed the FPGA Pod mutator's mappings (added, replaced, deleted), and the
operator is not ready, nor judges FPGA pods, before their first lists are in."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

import fakes
from deviceplugin_operator import manager
from deviceplugin_operator.api import fpga as fpga_api
from deviceplugin_operator.kube import resources
from polling import eventually_async

IFACE = "ce48969398f05f33946d560708be108a"
AFU = "d8424dc4a4a3c413f89e433683f9040b"
REGION = f"fpga.intel.com/region-{IFACE}"
AF = "fpga.intel.com/af-ce4.d84.zkiWk5jwXzOUbVYHCL4QithCTcSko8QT-J5DNoP5BAs"
FUNCTIONS = resources.Resource.of(
    fpga_api.ACCELERATOR_FUNCTION.api_version,
    fpga_api.ACCELERATOR_FUNCTION.kind,
    fpga_api.ACCELERATOR_FUNCTION.plural,
)
REGIONS = resources.Resource.of(
    fpga_api.FPGA_REGION.api_version, fpga_api.FPGA_REGION.kind, fpga_api.FPGA_REGION.plural
)


def function(name: str, namespace: str, mode: str = "af", afu: str = AFU) -> dict[str, Any]:
    return {
        "apiVersion": FUNCTIONS.api_version,
        "kind": FUNCTIONS.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"afuId": afu, "interfaceId": IFACE, "mode": mode},
    }


def region(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": REGIONS.api_version,
        "kind": REGIONS.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interfaceId": IFACE},
    }


async def readyz(mgr: manager.Manager) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{mgr.probes.port}/readyz") as reply,
    ):
        return reply.status


async def test_mappings_of_every_namespace_follow_adds_updates_and_deletes() -> None:
    kube = fakes.FakeKubeClient()
    await kube.create(FUNCTIONS, function("nlb0", "team-a"))
    await kube.create(REGIONS, region("arria10", "team-b"))
    async with fakes.embedded_manager(kube, ("fpga",)) as mgr:
        mappings = mgr.fpga_mappings

        async def listed() -> bool:
            return mgr.mappings_synced()

        await eventually_async(listed, timeout=5)
        assert mappings.resources("team-a") == {"fpga.intel.com/nlb0": AF}
        assert mappings.resources("team-b") == {"fpga.intel.com/arria10": REGION}

        await kube.replace(FUNCTIONS, "nlb0", function("nlb0", "team-a", mode="region"))
        await kube.create(FUNCTIONS, function("nlb0-af", "team-b"))

        async def updated() -> bool:
            return mappings.resources("team-a") == {"fpga.intel.com/nlb0": REGION} and (
                "fpga.intel.com/nlb0-af" in mappings.resources("team-b")
            )

        await eventually_async(updated, timeout=5)
        # The update released the af identity the function had.
        assert mappings.identities("team-a") == {REGION: 1}

        await kube.delete(FUNCTIONS, "nlb0", "team-a")
        await kube.delete(REGIONS, "arria10", "team-b")

        async def deleted() -> bool:
            return mappings.resources("team-a") == {} and mappings.resources("team-b") == {
                "fpga.intel.com/nlb0-af": AF
            }

        await eventually_async(deleted, timeout=5)


async def test_an_unmappable_update_removes_the_mapping_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = fakes.FakeKubeClient()
    await kube.create(FUNCTIONS, function("nlb0", "team"))
    async with fakes.embedded_manager(kube, ("fpga",)) as mgr:
        await eventually_async(lambda: _has(mgr, "team", "fpga.intel.com/nlb0"), timeout=5)
        with caplog.at_level(logging.WARNING, logger="deviceplugin_operator.manager"):
            # The CRD's pattern admits an odd number of hex digits, which are no bytes.
            await kube.replace(FUNCTIONS, "nlb0", function("nlb0", "team", afu="d8424dc4a"))

            async def gone() -> bool:
                return mgr.fpga_mappings.resources("team") == {}

            await eventually_async(gone, timeout=5)
        (record,) = [r for r in caplog.records if r.getMessage() == "Ignored FPGA mapping"]
        assert record.__dict__["object"] == "nlb0"
        assert record.__dict__["namespace"] == "team"
        assert "not hexadecimal" in record.__dict__["error"]


async def _has(mgr: manager.Manager, namespace: str, resource: str) -> bool:
    return resource in mgr.fpga_mappings.resources(namespace)


async def test_readiness_and_fpga_pods_wait_for_the_first_lists() -> None:
    kube = fakes.HeldLists(FUNCTIONS)
    await kube.create(FUNCTIONS, function("nlb0", "team"))
    async with fakes.embedded_manager(kube, ("fpga", "gpu")) as mgr:
        await mgr.daemonsets.wait_synced()
        await mgr.pods.wait_synced()
        for inf in mgr.plugin_informers:
            await inf.wait_synced()
        assert not mgr.synced()
        assert not mgr.admission.fpga_loaded()
        assert await readyz(mgr) == 500
        kube.release.set()

        async def ready() -> bool:
            return await readyz(mgr) == 200

        await eventually_async(ready, timeout=5)
        assert mgr.admission.fpga_loaded()
        assert mgr.fpga_mappings.resources("team") == {"fpga.intel.com/nlb0": AF}


async def test_without_fpga_nothing_is_watched() -> None:
    kube = fakes.FakeKubeClient()
    async with fakes.embedded_manager(kube, ("gpu",)) as mgr:
        assert mgr.mapping_informers == []
        await eventually_async(lambda: _synced(mgr), timeout=5)
        watched = {call.resource for call in kube.calls}
        assert FUNCTIONS.plural not in watched
        assert REGIONS.plural not in watched


async def _synced(mgr: manager.Manager) -> bool:
    return mgr.synced()
