"""In-process micro-benchmark of one GPU reconcile's status path (no API server, no timing
assertions): the reconciler over never-started caches and the fake client of the unit tests.

Two scenarios of one resource with its DaemonSet and ready pods on nodes with devices:

* ``steady``: the stored status is what would be written: a reconcile makes no request.
* ``ticking``: as ``steady``, but each reconcile is a second after the one before (the status
  is computed anew each time: the reconciler keeps the last one for the same second only).
* ``change``: each reconcile sees ``numberReady`` move and writes the status (the time in the
  fake client's patch is left out; the informers catch up with the write outside the timing).

Prints the median microseconds per reconcile of each; ``--profile`` adds a cProfile top 15.
Run: ``.venv/bin/python tools/status_microbench.py [--rounds N] [--profile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import datetime
import pathlib
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "unit" / "controller")]

from gpu_reconciler import GPU_PLUGINS, NAMESPACE, one_gpu_resource  # noqa: E402

import fakes  # noqa: E402
from deviceplugin_operator.controller import reconciler  # noqa: E402
from deviceplugin_operator.kube import objects, resources  # noqa: E402
from deviceplugin_operator.reconcile import status  # noqa: E402

PODS = 3
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _pod(ds: dict[str, Any], index: int) -> dict[str, Any]:
    return status.pod_essentials(
        {
            "metadata": {
                "name": f"p{index}",
                "namespace": NAMESPACE,
                "uid": f"pod-{index}",
                "resourceVersion": str(1000 + index),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "DaemonSet",
                        "name": objects.name(ds),
                        "uid": objects.uid(ds),
                        "controller": True,
                    }
                ],
            },
            "spec": {"nodeName": f"n{index}"},
            "status": {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": "2025-12-31T00:00:00Z",
                    }
                ],
                "containerStatuses": [
                    {
                        "name": "plugin",
                        "image": "intel/intel-gpu-plugin:0.32.0",
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": "2025-12-31T00:00:00Z"}},
                    }
                ],
            },
        }
    )


def _node(index: int) -> dict[str, Any]:
    figures = {"gpu.intel.com/i915": "2", "gpu.intel.com/memory.max": "8G", "cpu": "8"}
    return status.node_essentials(
        {
            "metadata": {"name": f"n{index}", "resourceVersion": str(2000 + index)},
            "status": {"capacity": figures, "allocatable": figures},
        },
        ("gpu.intel.com",),
    )


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime.datetime:
        return self.now


async def reconciled_resource(
    clock: _Clock | None = None,
) -> tuple[fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler]:
    """GpuDevicePlugin ``a`` reconciled with its DaemonSet's ``PODS`` pods ready on nodes with
    devices: the fake client holds the status the reconciler wrote, the caches show it."""
    kube, cached, rec = await one_gpu_resource(status_interval=0, clock=clock or _Clock())
    await rec.reconcile("a")
    (ds,) = kube.stored(resources.DAEMON_SETS)
    ds = copy.deepcopy(ds)
    ds["status"] = {
        "observedGeneration": 1,
        "desiredNumberScheduled": PODS,
        "numberReady": PODS,
        "updatedNumberScheduled": PODS,
    }
    cached.daemonsets.store.upsert(ds)
    for index in range(PODS):
        cached.pods.store.upsert(_pod(ds, index))
        cached.nodes.store.upsert(_node(index))
    await rec.reconcile("a")
    cached.plugins.store.upsert(copy.deepcopy(await kube.get(GPU_PLUGINS, "a")))
    await rec.reconcile("a")  # the cache shows the write: nothing to do from here on
    return kube, cached, rec


Scenario = Callable[[int, cProfile.Profile | None], Awaitable[list[float]]]


async def _steady(rounds: int, profiler: cProfile.Profile | None) -> list[float]:
    kube, _, rec = await reconciled_resource()
    kube.reset_counts()
    times = [await _timed(rec, profiler) for _ in range(rounds)]
    assert kube.writes == 0, "the steady scenario must write nothing"
    return times


async def _ticking(rounds: int, profiler: cProfile.Profile | None) -> list[float]:
    clock = _Clock()
    kube, _, rec = await reconciled_resource(clock)
    kube.reset_counts()
    times = []
    for _ in range(rounds):
        clock.now += datetime.timedelta(seconds=1)
        times.append(await _timed(rec, profiler))
    assert kube.writes == 0, "the ticking scenario must write nothing"
    return times


async def _change(rounds: int, profiler: cProfile.Profile | None) -> list[float]:
    kube, cached, rec = await reconciled_resource()
    kube.reset_counts()
    state = {"round": 0}

    def move() -> None:
        state["round"] += 1
        (ds,) = cached.daemonsets.list()
        ds = copy.deepcopy(ds)
        ds["status"]["numberReady"] = PODS - state["round"] % 2
        ds["metadata"]["resourceVersion"] = str(5000 + state["round"])
        cached.daemonsets.store.upsert(ds)

    async def caught_up() -> None:
        cached.plugins.store.upsert(copy.deepcopy(await kube.get(GPU_PLUGINS, "a")))

    # The fake client's patch (deep copies of the stored object) stands for a request to the
    # API server: its time is left out, as the operator's part of a write is what is measured.
    spent = [0.0]
    patch_status = kube.patch_status

    async def timed_patch(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await patch_status(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    kube.patch_status = timed_patch  # type: ignore[method-assign]
    times = []
    for _ in range(rounds):
        move()
        spent[0] = 0.0
        times.append(await _timed(rec, profiler) - spent[0])
        await caught_up()
    assert kube.requests["patch"] == rounds, "each round of the change scenario writes once"
    return times


async def _timed(rec: reconciler.Reconciler, profiler: cProfile.Profile | None) -> float:
    """Seconds of one reconcile of ``a`` (profiled, when a profiler is given)."""
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter()
    await rec.reconcile("a")
    elapsed = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    scenarios: tuple[tuple[str, Scenario], ...] = (
        ("steady", _steady),
        ("ticking", _ticking),
        ("change", _change),
    )
    for label, scenario in scenarios:
        times = asyncio.run(scenario(args.rounds, None))
        median = statistics.median(times) * 1e6
        low = statistics.quantiles(times, n=10)[0] * 1e6
        print(f"{label}: median {median:.1f} us per reconcile (p10 {low:.1f} us)")
        if args.profile:
            profiler = cProfile.Profile()
            asyncio.run(scenario(args.rounds, profiler))
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
