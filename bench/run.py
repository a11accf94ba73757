"""``python -m bench``: this operator, the reference operator and the floor side by side.

Starts its own local control plane in a temporary directory (never ``.cluster``), builds or
reuses the reference binary, runs the scenarios with the implementations one at a time,
writes ``bench/results/<scenario>.json`` (+ PNG plots when matplotlib is importable) and
stops every process it started.

    python -m bench                       # quick size (BENCH_SIZE=quick), ~15 minutes
    BENCH_SIZE=full python -m bench       # full size (hours on 2 cores)
    python -m bench --scenarios startup,latency --implementations this,floor
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from bench import admission, impls, kube, plots, reference, scenarios, stats
from bench.scenarios import say

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("startup", "latency", "admission", "convergence", "memory")

RATIO_FIGURES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "startup": (("first_daemonset_ms", "readyz_ms", "rss_mib_at_first_daemonset"), None),
    "reconcile_latency": (("p50_ms", "p99_ms", "pooled_p50_ms", "pooled_p99_ms"), "operation"),
    "convergence": (
        (
            "converge_s",
            "daemonsets_ready_s",
            "status_lag_p50_ms",
            "status_lag_max_ms",
            "cpu_s",
            "rss_mib_converged",
            "rss_mib_after_steady",
        ),
        "point",
    ),
    "api_efficiency": (("requests_per_min", "writes_per_min"), None),
    "memory": (("rss_mib", "rss_mib_peak"), "level"),
    "admission_latency": (("p50_ms", "p99_ms", "webhook_mean_ms"), "case"),
}


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(pathlib.Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    go = shutil.which("go")
    go_version = (
        subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout.strip()
        if go
        else None
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "go": go_version,
    }


def git_commit(revision: str = "worktree") -> str | None:
    if revision != "worktree":
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", revision],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (done.stdout.strip() + ("+dirty-src" if dirty else "")) or None


def load() -> list[float]:
    try:
        return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def goals(records: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The issue's goals checked against the figures (met True/False, None = not measured)."""
    result: list[dict[str, Any]] = []

    def fig(scenario: str, impl: str, figure: str, **params: Any) -> float | None:
        for rec in records.get(scenario, []):
            if rec["implementation"] == impl and all(
                rec["parameters"].get(k) == v for k, v in params.items()
            ):
                value = rec["figures"].get(figure)
                return float(value) if isinstance(value, (int, float)) else None
        return None

    def check(goal: str, met: bool | None, detail: str) -> None:
        result.append({"goal": goal, "met": met, "detail": detail})

    def versus(goal: str, mine: float | None, ref: float | None, unit: str) -> None:
        """``mine`` no worse than the reference's ``ref`` (the ratio in the detail)."""
        ratio = "" if not mine or not ref else f" ({mine / ref:.2f}x)"
        check(
            goal,
            None if mine is None or ref is None else mine <= ref,
            f"this {mine} {unit}, reference {ref} {unit}{ratio}",
        )

    for operation in ("create", "update", "recreate"):
        for percentile in ("p50", "p99"):
            versus(
                f"{operation} {percentile} no worse than the reference",
                fig("reconcile_latency", "this", f"{percentile}_ms", operation=operation),
                fig("reconcile_latency", "reference", f"{percentile}_ms", operation=operation),
                "ms",
            )
        mine = fig("reconcile_latency", "this", "p50_ms", operation=operation)
        floor = fig("reconcile_latency", "floor", "p50_ms", operation=operation)
        check(
            f"{operation} p50 within 2x the floor",
            None if mine is None or floor is None else mine <= 2 * floor,
            f"this {mine} ms, floor {floor} ms",
        )
    versus(
        "start-up to the first DaemonSet no worse than the reference",
        fig("startup", "this", "first_daemonset_ms"),
        fig("startup", "reference", "first_daemonset_ms"),
        "ms",
    )
    levels = [
        r["parameters"]["level"] for r in records.get("memory", []) if r["implementation"] == "this"
    ]
    for level in levels:
        mine = fig("memory", "this", "rss_mib", level=level)
        ref = fig("memory", "reference", "rss_mib", level=level)
        check(
            f"memory ({level}) below the reference",
            None if mine is None or ref is None else mine < ref,
            f"this {mine} MiB, reference {ref} MiB",
        )
    idle = fig("memory", "this", "rss_mib", level="idle")
    most = [lv for lv in levels if lv.startswith("unrelated_pods_")]
    if idle is not None and most:
        top = fig("memory", "this", "rss_mib", level=most[-1])
        flat = None if top is None else top <= idle * 1.10 + 2
        check("memory flat in unrelated pods (within 10%)", flat, f"idle {idle}, {most[-1]} {top}")
    for case in ("validate_cr@50", "validate_cr@200", "mutate_sgx_pod@50", "mutate_sgx_pod@200"):
        versus(
            f"webhook time through the apiserver ({case}/s) no worse than the reference",
            fig("admission_latency", "this", "webhook_mean_ms", case=case),
            fig("admission_latency", "reference", "webhook_mean_ms", case=case),
            "ms",
        )
    for operation in ("validate_cr", "mutate_sgx_pod", "direct_validate"):
        p99 = fig("admission_latency", "this", "p99_ms", case=f"{operation}@200")
        check(
            f"admission {operation} p99 under 10 ms at 200/s",
            None if p99 is None else p99 < 10,
            f"this {p99} ms",
        )
    writes = fig("api_efficiency", "this", "api_writes")
    check("zero steady-state writes", None if writes is None else writes == 0, f"{writes} writes")
    return result


async def run_all(
    args: argparse.Namespace, size: scenarios.Size, implementations: list[impls.Implementation]
) -> dict[str, list[dict[str, Any]]]:
    workdir = pathlib.Path(args.workdir)
    bench = scenarios.Bench(size, workdir, implementations)
    if args.this_from != "worktree":
        bench.this_source = impls.snapshot_source(args.this_from, workdir / "this-snapshot")
        say(f"This operator runs from {args.this_from} ({git_commit(args.this_from)})")
    say(f"Work directory (cluster, logs): {workdir}")
    records: dict[str, list[dict[str, Any]]] = {}
    context_extra: dict[str, Any] = {}
    try:
        # inside: a failure after the control plane started (the CRDs) must stop it too
        await asyncio.to_thread(bench.up)
        async with kube.Api(bench.cluster) as api:
            bench.api = api
            if "startup" in args.scenarios:
                records["startup"] = await scenarios.startup(bench)
            if "latency" in args.scenarios:
                records["reconcile_latency"] = await scenarios.latency(bench)
            if "admission" in args.scenarios:
                records["admission_latency"] = await admission.admission(
                    bench, size.admission_seconds
                )
            if "convergence" in args.scenarios:
                conv, api_eff = await scenarios.convergence(bench)
                records["convergence"] = conv
                if api_eff:
                    records["api_efficiency"] = api_eff
            if "memory" in args.scenarios:
                records["memory"] = await scenarios.memory(bench)
        context_extra["user_agents_seen"] = await asyncio.to_thread(
            scenarios.user_agents, bench.cluster.logs
        )
    finally:
        if args.keep_cluster:
            say(f"Cluster left running: export KUBECONFIG={bench.cluster.kubeconfig}")
        else:
            await asyncio.to_thread(bench.down)
    bench.notes.setdefault("api_efficiency", []).append(
        "User-Agents seen in the audit log: "
        + ", ".join(f"{k} ({v})" for k, v in context_extra["user_agents_seen"].items())
    )
    args.notes = bench.notes
    return records


def write_results(
    args: argparse.Namespace,
    size: scenarios.Size,
    records: dict[str, list[dict[str, Any]]],
    context: dict[str, Any],
) -> list[pathlib.Path]:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    notes: dict[str, list[str]] = getattr(args, "notes", {})
    for scenario, recs in records.items():
        figures, group_by = RATIO_FIGURES.get(scenario, ((), None))
        document = stats.scenario_file(
            scenario,
            recs,
            stats.ratios(recs, figures, group_by=group_by),
            context=context,
            notes=notes.get(scenario, []),
        )
        problems = stats.validate_scenario_file(document)
        if problems:
            raise AssertionError(f"{scenario}: {problems}")
        path = out / f"{scenario}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    summary = {**context, "goals": goals(records)}
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    written.append(path)
    written += plots.write_all(records, out)
    return written


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--size", choices=sorted(scenarios.SIZES), default=os.environ.get("BENCH_SIZE", "quick")
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--implementations", default="this,reference,floor")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--workdir", default=None, help="default: a new directory under /tmp")
    parser.add_argument(
        "--this-from",
        default="HEAD",
        metavar="COMMIT|worktree",
        help="run this operator from src/ of a commit (default HEAD) or of the working tree",
    )
    parser.add_argument("--keep-cluster", action="store_true")
    parser.add_argument(
        "--goals-only",
        action="store_true",
        help="run nothing: check the goals again against the result files in --out "
        "(rewrites the goals of its summary.json)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a size field, e.g. --set convergence_runs=1 --set steady_seconds=60",
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def recheck_goals(out: pathlib.Path) -> list[dict[str, Any]]:
    """The goals of the result files in ``out`` (e.g. after a scenario was rerun alone into
    the same directory), written into its summary.json."""
    records = {
        document["scenario"]: document["results"]
        for path in sorted(out.glob("*.json"))
        if path.name != "summary.json"
        and isinstance(document := json.loads(path.read_text()), dict)
        and "results" in document
    }
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary["goals"] = goals(records)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return list(summary["goals"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.goals_only:
        for goal in recheck_goals(pathlib.Path(args.out)):
            mark = {True: "met", False: "MISSED", None: "n/a"}[goal["met"]]
            say(f"goal {mark}: {goal['goal']} ({goal['detail']})")
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    size = scenarios.SIZES[args.size]
    for override in args.set:
        field, _, value = override.partition("=")
        current = getattr(size, field, None)
        if current is None or field == "name":
            print(f"--set: unknown size field {field!r}", file=sys.stderr)
            return 2
        try:
            parsed: Any = (
                scenarios.parse_grid(value)
                if field == "convergence_grid"
                else tuple(int(v) for v in value.split(",") if v)
                if isinstance(current, tuple)
                else type(current)(value)
            )
        except ValueError as error:
            print(f"--set {field}: {error}", file=sys.stderr)
            return 2
        size = dataclasses.replace(size, **{field: parsed})
    names = [n.strip() for n in args.implementations.split(",") if n.strip()]
    implementations = [impls.ALL[n] for n in names]
    reference_build: dict[str, Any] = {"version": reference.version()}
    if impls.REFERENCE in implementations:
        started = time.monotonic()
        try:
            path = reference.ensure_built()
            reference_build.update(reference.build_info(), path=str(path))
            reference_build["located_s"] = round(time.monotonic() - started, 1)
        except reference.BuildError as error:
            say(f"The reference operator could not be built; going on without it:\n{error}")
            reference_build["error"] = str(error)
            implementations.remove(impls.REFERENCE)
    context: dict[str, Any] = {
        "size": size.name,
        "size_parameters": {k: v for k, v in vars(size).items() if k != "name"},
        "overrides": list(args.set),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "implementations": [i.name for i in implementations],
        "this_commit": git_commit(args.this_from),
        "this_from": args.this_from,
        "reference": reference_build,
        "machine": machine(),
        "load_average_at_start": load(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="deviceplugin-bench-")
    pathlib.Path(args.workdir).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        records = asyncio.run(run_all(args, size, implementations))
    except KeyboardInterrupt:
        say("Interrupted; every process was stopped")
        return 130
    context["load_average_at_end"] = load()
    context["duration_s"] = round(time.monotonic() - started, 1)
    written = write_results(args, size, records, context)
    say(f"Done in {context['duration_s']:.0f}s; wrote " + ", ".join(str(p) for p in written))
    for goal in goals(records):
        mark = {True: "met", False: "MISSED", None: "n/a"}[goal["met"]]
        say(f"goal {mark}: {goal['goal']} ({goal['detail']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
