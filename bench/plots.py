"""PNG plots of the results, written only when matplotlib is importable (it is optional)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

IMPL_ORDER = ("this", "reference", "floor")


def available() -> bool:
    try:
        import matplotlib  # type: ignore[import-not-found]  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _bars(
    path: pathlib.Path,
    title: str,
    unit: str,
    groups: Sequence[str],
    values: Mapping[str, Sequence[float | None]],
) -> pathlib.Path:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found]  # noqa: PLC0415

    impls = [i for i in IMPL_ORDER if i in values]
    width = 0.8 / max(len(impls), 1)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    for n, impl in enumerate(impls):
        xs = [g + n * width for g in range(len(groups))]
        ys = [v if v is not None else 0 for v in values[impl]]
        bars = axes.bar(xs, ys, width, label=impl)
        axes.bar_label(bars, fmt="%.0f", fontsize=7)
    axes.set_xticks([g + width * (len(impls) - 1) / 2 for g in range(len(groups))], groups)
    axes.set_ylabel(unit)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _table(
    records: Sequence[Mapping[str, Any]], group: str, figure: str
) -> tuple[list[str], dict[str, list[float | None]]]:
    groups: list[str] = []
    for rec in records:
        key = str(rec["parameters"].get(group, ""))
        if key not in groups:
            groups.append(key)
    values: dict[str, list[float | None]] = {}
    for rec in records:
        row = values.setdefault(rec["implementation"], [None] * len(groups))
        row[groups.index(str(rec["parameters"].get(group, "")))] = rec["figures"].get(figure)
    return groups, values


def write_all(
    records: Mapping[str, Sequence[Mapping[str, Any]]], out: pathlib.Path
) -> list[pathlib.Path]:
    """One PNG per scenario that has records; nothing when matplotlib is missing."""
    if not available():
        return []
    written = []
    if records.get("reconcile_latency"):
        for figure in ("p50_ms", "p99_ms"):
            groups, values = _table(records["reconcile_latency"], "operation", figure)
            written.append(
                _bars(
                    out / f"reconcile_latency_{figure}.png",
                    f"Reconcile latency {figure}",
                    "ms",
                    groups,
                    values,
                )
            )
    if any(r.get("samples_ms") for r in records.get("reconcile_latency", [])):
        written.append(_cdf(out / "reconcile_latency_cdf.png", records["reconcile_latency"]))
    if records.get("memory"):
        groups, values = _table(records["memory"], "level", "rss_mib")
        written.append(_bars(out / "memory.png", "Operator RSS", "MiB", groups, values))
    if records.get("startup"):
        for figure in ("first_daemonset_ms", "readyz_ms"):
            groups, values = _table(records["startup"], "existing_resources", figure)
            written.append(
                _bars(out / f"startup_{figure}.png", f"Start-up {figure}", "ms", groups, values)
            )
    if records.get("admission_latency"):
        for figure in ("p50_ms", "p99_ms"):
            groups, values = _table(records["admission_latency"], "case", figure)
            written.append(
                _bars(
                    out / f"admission_latency_{figure}.png",
                    f"Admission latency {figure} (operation@requests/s)",
                    "ms",
                    groups,
                    values,
                )
            )
    if records.get("convergence"):
        for figure in ("converge_s", "cpu_s"):
            groups, values = _table(records["convergence"], "point", figure)
            written.append(
                _bars(
                    out / f"convergence_{figure}.png", f"Convergence {figure}", "s", groups, values
                )
            )
    return written


def _cdf(path: pathlib.Path, records: Sequence[Mapping[str, Any]]) -> pathlib.Path:
    """The distribution of every latency sample: one panel per operation, one line per peer."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    operations = sorted({str(r["parameters"]["operation"]) for r in records})
    figure, panels = plt.subplots(1, len(operations), figsize=(5 * len(operations), 4))
    for axes, operation in zip(
        panels if len(operations) > 1 else [panels], operations, strict=True
    ):
        for impl in IMPL_ORDER:
            for rec in records:
                if rec["implementation"] != impl or rec["parameters"]["operation"] != operation:
                    continue
                samples = sorted(rec.get("samples_ms") or [])
                if samples:
                    fractions = [(n + 1) / len(samples) for n in range(len(samples))]
                    axes.step(samples, fractions, where="post", label=f"{impl} (n={len(samples)})")
        axes.set_title(f"{operation}: CR change → DaemonSet seen")
        axes.set_xlabel("ms")
        axes.set_ylabel("fraction of operations")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
