"""The documentation's generated blocks, rendered from where the truth lives in code and data.

    python tools/docs.py write    # rewrite every generated block (make generate)
    python tools/docs.py check    # exit 1 naming each stale block (make verify)

A generated block in a Markdown file is everything between ``<!-- generated:NAME -->`` and the
next ``<!-- end -->``; ``NAME`` picks its renderer in ``BLOCKS``:

* ``flags``: every subcommand of ``deviceplugin-operator`` and its flags (``cli._parser()``);
* ``chart-values``: the Helm chart's values, defaults and their ``# --`` comments (helm-docs
  style) from ``charts/intel-deviceplugin-operator/values.yaml``;
* ``metrics``: the metric families of the registry (``controller.metrics.recording``);
* ``webhooks``: names, paths and failure policies (``admission.endpoints``);
* ``devices``: the device registry (``devices.KINDS``) and the image floor;
* ``versions``: the versions the build code pins (``tools/localcluster`` binaries, helm, the
  reference operator of the benchmarks and compat tests, cert-manager of the e2e tests);
* ``memory``, ``bench-*``, ``readme-ratios``: figures from the committed ``bench/results/``.

``check`` also holds ``docs/architecture.md``'s tree (the code block after
``<!-- checked:tree -->``) against the files: every path it names exists and every module
under ``src/`` is named in it.
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import yaml

from deviceplugin_operator import cli, devices
from deviceplugin_operator.admission import endpoints
from deviceplugin_operator.controller import queue
from deviceplugin_operator.controller.metrics import recording
from deviceplugin_operator.devices import kind as device_kind

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
VALUES = ROOT / "charts" / "intel-deviceplugin-operator" / "values.yaml"
SRC = ROOT / "src" / "deviceplugin_operator"

BLOCK = re.compile(
    r"(?P<open><!-- generated:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(?P<close><!-- end -->)",
    re.DOTALL,
)
TREE_MARK = "<!-- checked:tree -->"


def documents(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """The Markdown files that may hold generated blocks."""
    return sorted([*root.glob("*.md"), *(root / "docs").glob("*.md")])


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# Flags ------------------------------------------------------------------------------------


def _default(action: argparse.Action) -> str:
    value = action.default
    if value is None or value in ("", (), []) or value is argparse.SUPPRESS:
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if action.type in (cli.parse_duration, cli.parse_period) and isinstance(value, int | float):
        return f"`{value:g}s`"
    return f"`{value}`"


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def render_flags() -> str:
    parts = []
    for name, summary, sub in _subcommands(cli._parser()):
        rows = []
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            flags = ", ".join(f"`{option}`" for option in action.option_strings)
            meaning = action.help or ""
            if action.choices:
                meaning = f"{meaning} (one of {', '.join(map(str, action.choices))})".strip()
            rows.append((flags, _default(action), meaning))
        positionals = [a.dest for a in sub._actions if not a.option_strings and a.dest != "help"]
        usage = f"`deviceplugin-operator {name}`" + "".join(f" `{p}`" for p in positionals)
        part = f"{usage}: {summary}"
        if rows:
            part += "\n\n" + _table(("flag", "default", "meaning"), rows)
        parts.append(part)
    return "\n\n".join(parts)


# Chart values -----------------------------------------------------------------------------

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?: |$)")


def value_descriptions(text: str) -> dict[str, str]:
    """Dotted key → its ``# --`` comment (helm-docs style: the comment lines right above)."""
    descriptions: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match or stripped.startswith("-"):
            pending = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            descriptions[".".join(key for _, key in stack)] = " ".join(pending)
        pending = None
    return descriptions


def _value_rows(
    values: Mapping[str, Any], descriptions: Mapping[str, str], prefix: str = ""
) -> Iterator[tuple[str, str, str]]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in descriptions:
            yield from _value_rows(value, descriptions, f"{path}.")
            continue
        shown = json.dumps(value, separators=(", ", ": "))
        yield f"`{path}`", f"`{shown}`", descriptions.get(path, "")


def render_chart_values() -> str:
    text = VALUES.read_text()
    rows = list(_value_rows(yaml.safe_load(text) or {}, value_descriptions(text)))
    return _table(("value", "default", "meaning"), rows)


# Metrics, webhooks, devices ---------------------------------------------------------------


def render_metrics() -> str:
    metrics = recording.Metrics()
    metrics.controller("gpudeviceplugin", 1)
    metrics.add_queue("gpudeviceplugin", queue.WorkQueue("gpudeviceplugin"))
    metrics.add_statuses("gpu", lambda: [{"metadata": {"name": "x"}, "status": {}}])
    declared = {
        name: tuple(collector._labelnames)
        for collector, names in metrics.registry._collector_to_names.items()
        for name in names
        if hasattr(collector, "_labelnames")
    }
    declared.update({name.removesuffix("_total"): labels for name, labels in declared.items()})
    rows, runtime = [], []
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        if family.name.startswith(("process_", "python_")):
            runtime.append(f"`{name}`")
            continue
        labels = dict.fromkeys(declared.get(family.name, getattr(family, "_labelnames", ())))
        for sample in family.samples:
            labels.update(dict.fromkeys(k for k in sample.labels if k != "le"))
        shown = ", ".join(labels)
        rows.append(
            (f"`{name}`" + (f"{{{shown}}}" if shown else ""), family.type, family.documentation)
        )
    table = _table(("metric", "type", "meaning"), rows)
    return f"{table}\n\nand the process and Python collectors: {', '.join(runtime)}."


def render_webhooks() -> str:
    rows = [
        (
            f"`{hook.name}`",
            f"`{hook.path}`",
            "mutating" if hook.mutating else "validating",
            hook.verb.value,
            hook.device,
            hook.failure_policy,
        )
        for hook in endpoints.webhooks(devices.KINDS)
    ]
    return _table(("webhook", "path", "configuration", "does", "device", "failurePolicy"), rows)


def render_devices() -> str:
    rows = []
    for name, kind in devices.KINDS.items():
        mutator = kind.pod_mutator
        rows.append(
            (
                f"`{name}`",
                f"`{kind.kind}`",
                kind.title,
                f"`{kind.default_image}`",
                f"`{kind.init_image}`" if kind.init_image else "",
                f"`{mutator.webhook}` for `{mutator.resource_domain}/*`" if mutator else "",
            )
        )
    table = _table(
        ("device", "kind", "hardware", "default image", "init image", "Pod webhook"), rows
    )
    return (
        f"{table}\n\nImage floor: plugin and init images older than "
        f"`{device_kind.IMAGE_MIN_VERSION}` are raised to it in the DaemonSet (the stored spec is "
        "never rewritten; each change is an Event)."
    )


# Versions -----------------------------------------------------------------------------------


def constant(path: pathlib.Path, name: str) -> str:
    """A module-level string constant, read without importing the module."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(t, ast.Name) and t.id == name for t in targets)
            value = node.value
            if named and isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
    raise LookupError(f"{path.relative_to(ROOT)} has no string constant {name}")


VERSIONS: Sequence[tuple[str, str, str, str]] = (
    (
        "etcd",
        "tools/localcluster/src/localcluster/binaries.py",
        "ETCD_VERSION",
        "local control plane",
    ),
    (
        "kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy",
        "tools/localcluster/src/localcluster/binaries.py",
        "KUBERNETES_VERSION",
        "local control plane and the real node",
    ),
    ("kwok", "tools/localcluster/src/localcluster/binaries.py", "KWOK_VERSION", "fake nodes"),
    ("helm", "tools/helm.py", "HELM_VERSION", "chart tests"),
    ("helm 3", "tools/helm.py", "HELM3_VERSION", "chart tests (the chart works with helm 3 too)"),
    ("reference operator", "bench/reference.py", "DEFAULT_VERSION", "benchmarks and compat tests"),
    (
        "cert-manager CRDs",
        "tests/e2e/test_kustomize.py",
        "CERT_MANAGER_VERSION",
        "e2e `certmanager` install",
    ),
)


OPTIONAL_VERSIONS = frozenset({"HELM3_VERSION"})
"""Pins that may be absent: their row is left out then."""


def render_versions() -> str:
    rows = []
    for what, path, name, used in VERSIONS:
        try:
            version = constant(ROOT / path, name)
        except LookupError:
            if name in OPTIONAL_VERSIONS:
                continue
            raise
        rows.append((what, f"`{version}`", used, f"`{path}` `{name}`"))
    return _table(("component", "version", "for", "pinned in"), rows)


# Benchmark results ---------------------------------------------------------------------------


def _results(name: str, directory: pathlib.Path = RESULTS) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / f"{name}.json").read_text())
    return document


def _figure(document: Mapping[str, Any], impl: str, figure: str, **parameters: Any) -> Any:
    for record in document["results"]:
        if record["implementation"] != impl:
            continue
        if all(record["parameters"].get(k) == v for k, v in parameters.items()):
            return record["figures"].get(figure)
    return None


def _ratio(
    document: Mapping[str, Any], figure: str, peer: str = "reference", **parameters: Any
) -> Any:
    for entry in document.get("ratios") or ():
        if (
            entry["figure"] == figure
            and entry["peer"] == peer
            and all(entry.get(k) == v for k, v in parameters.items())
        ):
            return entry["this_over_peer"]
    return None


def _n(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return NONE
    return f"{value:.{digits}f}{unit}"


def _r(value: Any) -> str:
    return NONE if value is None else f"{value:.2f}"


def _run(document: Mapping[str, Any]) -> str:
    return (
        f"`{document['command']}`, this = {document['this_commit']}, reference "
        f"{document['reference']['version']}, started {document['started'][:16].replace('T', ' ')}"
    )


IMPLS = ("this", "reference", "floor")
X = "\u00d7"
DASH = "\u2013"
NONE = DASH
"""The multiplication sign of the docs' ratios and grid points."""


def render_bench_startup() -> str:
    doc = _results("startup")
    rows = [
        (
            impl,
            _n(_figure(doc, impl, "first_daemonset_ms"), " ms", 0),
            _n(_figure(doc, impl, "readyz_ms"), " ms", 0),
            _n(_figure(doc, impl, "rss_mib_at_first_daemonset"), " MiB"),
        )
        for impl in IMPLS
    ]
    rows.append(
        (
            "this / reference",
            _r(_ratio(doc, "first_daemonset_ms")),
            _r(_ratio(doc, "readyz_ms")),
            _r(_ratio(doc, "rss_mib_at_first_daemonset")),
        )
    )
    table = _table(("", "first DaemonSet", "/readyz 200", "RSS at first DaemonSet"), rows)
    return f"{table}\n\nFrom `bench/results/startup.json` ({_run(doc)})."


def _pair(doc: Mapping[str, Any], impl: str, **parameters: Any) -> str:
    p50 = _figure(doc, impl, "p50_ms", **parameters)
    p99 = _figure(doc, impl, "p99_ms", **parameters)
    return NONE if p50 is None else f"{p50:.1f} / {p99:.1f} ms"


def render_bench_latency() -> str:
    doc = _results("reconcile_latency")
    rows = []
    for operation in dict.fromkeys(r["parameters"]["operation"] for r in doc["results"]):
        rows.append(
            (
                operation,
                *(_pair(doc, impl, operation=operation) for impl in IMPLS),
                f"{_r(_ratio(doc, 'p50_ms', operation=operation))} "
                f"(pooled {_r(_ratio(doc, 'pooled_p50_ms', operation=operation))})",
                _r(_ratio(doc, "p50_ms", "floor", operation=operation)),
            )
        )
    head = (
        "operation",
        "this p50 / p99",
        "reference p50 / p99",
        "floor p50 / p99",
        "this / reference (p50)",
        "this / floor (p50)",
    )
    return f"{_table(head, rows)}\n\nFrom `bench/results/reconcile_latency.json` ({_run(doc)})."


def render_bench_admission() -> str:
    doc = _results("admission_latency")
    rows = []
    for case in dict.fromkeys(r["parameters"]["case"] for r in doc["results"]):
        rows.append(
            (case.replace("@", " @ ") + "/s", *(_pair(doc, impl, case=case) for impl in IMPLS))
        )
    failures = sum(r["figures"].get("failures") or 0 for r in doc["results"])
    head = (
        "operation @ rate",
        "this p50 / p99",
        "reference p50 / p99",
        "floor (no webhook) p50 / p99",
    )
    return (
        f"{_table(head, rows)}\n\n{failures} failed requests. From "
        f"`bench/results/admission_latency.json` ({_run(doc)})."
    )


def _convergence_rows(doc: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for point in dict.fromkeys(r["parameters"]["point"] for r in doc["results"]):
        for impl in IMPLS:
            resources = _figure(doc, impl, "converged_resources", point=point)
            if resources is None:
                continue
            total = next(
                r["parameters"]["resources"]
                for r in doc["results"]
                if r["parameters"]["point"] == point and r["implementation"] == impl
            )
            lag50 = _figure(doc, impl, "status_lag_p50_ms", point=point)
            lagmax = _figure(doc, impl, "status_lag_max_ms", point=point)
            rows.append(
                (
                    point.replace("x", X),
                    impl,
                    f"{resources:.0f} of {total}",
                    _n(_figure(doc, impl, "converge_s", point=point), " s"),
                    NONE if lag50 is None else f"{lag50:.0f} / {lagmax:.0f} ms",
                    _n(_figure(doc, impl, "cpu_s", point=point), " s"),
                    _n(_figure(doc, impl, "rss_mib_converged", point=point), " MiB"),
                )
            )
    return rows


CONVERGENCE_HEAD = (
    f"point (N{X}K)",
    "peer",
    "converged",
    "converge",
    "status lag p50 / max",
    "CPU",
    "RSS converged",
)


def render_bench_convergence() -> str:
    doc = _results("convergence")
    return (
        f"{_table(CONVERGENCE_HEAD, _convergence_rows(doc))}\n\n"
        f"From `bench/results/convergence.json` ({_run(doc)})."
    )


def _full_size_block(directory: str) -> str:
    doc = _results("convergence", RESULTS / directory)
    return (
        f"{_table(CONVERGENCE_HEAD, _convergence_rows(doc))}\n\n"
        f"From `bench/results/{directory}/convergence.json` ({_run(doc)})."
    )


def render_bench_grid() -> str:
    return _full_size_block("full-grid")


def render_bench_final() -> str:
    return _full_size_block("full-final")


def _memory_level(record: Mapping[str, Any]) -> str:
    p = record["parameters"]
    if p["unrelated_pods"]:
        return f"+ {p['unrelated_pods']} unrelated pods"
    label = "idle (" if p["level"] == "idle" else "("
    return f"{label}{p['nodes']} nodes, {p['plugin_pods']} plugin pods)"


def render_bench_memory() -> str:
    doc = _results("memory")
    rows = []
    for level in dict.fromkeys(r["parameters"]["level"] for r in doc["results"]):
        record = next(r for r in doc["results"] if r["parameters"]["level"] == level)
        rows.append(
            (
                _memory_level(record),
                *(_n(_figure(doc, impl, "rss_mib", level=level), " MiB") for impl in IMPLS),
                _r(_ratio(doc, "rss_mib", level=level)),
            )
        )
    table = _table(("level", "this", "reference", "floor", "this / reference"), rows)
    return f"{table}\n\nFrom `bench/results/memory.json` ({_run(doc)})."


def render_bench_goals() -> str:
    summary = _results("summary")
    mark = {True: "met", False: "**missed**", None: "n/a"}
    rows = [(goal["goal"], mark[goal["met"]], goal["detail"]) for goal in summary.get("goals", [])]
    return f"{_table(('goal', 'result', 'detail'), rows)}\n\nFrom `bench/results/summary.json`."


def memory_figures() -> dict[str, float]:
    """The operator's RSS (MiB) the committed results measured, by situation."""
    memory, convergence = _results("memory"), _results("convergence")
    figures = {
        "idle": _figure(memory, "this", "rss_mib", level="idle"),
        "converged": _figure(convergence, "this", "rss_mib_converged", point="100x1"),
        "steady": _figure(convergence, "this", "rss_mib_after_steady", point="100x1"),
    }
    ours = [r for r in memory["results"] if r["implementation"] == "this"]
    unrelated = [r for r in ours if r["parameters"]["unrelated_pods"]]
    figures["unrelated_max"] = max(r["figures"]["rss_mib"] for r in unrelated)
    figures["unrelated_pods"] = max(r["parameters"]["unrelated_pods"] for r in unrelated)
    most = max(ours, key=lambda r: r["parameters"]["plugin_pods"])
    figures["plugin_pods_max"] = most["parameters"]["plugin_pods"]
    figures["plugin_pods_rss"] = most["figures"]["rss_mib"]
    largest = max(ours, key=lambda r: r["parameters"]["nodes"])
    figures["nodes_max"] = largest["parameters"]["nodes"]
    figures["nodes_rss"] = largest["figures"]["rss_mib"]
    return {k: float(v) for k, v in figures.items() if v is not None}


def render_memory() -> str:
    f = memory_figures()
    doc = _results("memory")
    # A range from converged to after the steady window, whichever is lower first.
    low, high = sorted((f["converged"], f["steady"]))
    converged = f"{low:.0f}"
    if round(high) != round(low):
        converged += f"{DASH}{high:.0f}"
    return (
        f"Measured (`bench/results/`, commit {doc['this_commit']}, certificate mounted): "
        f"{f['idle']:.0f} MiB RSS idle with one resource ({f['plugin_pods_max']:.0f} plugin "
        f"pods), {converged} MiB with 8 resources and 800 plugin pods, at most "
        f"{f['unrelated_max']:.0f} MiB with up to {f['unrelated_pods']:.0f} unrelated pods, "
        f"{f['nodes_rss']:.0f} MiB with {f['nodes_max']:.0f} nodes in the cluster. "
        "A self-managed certificate adds the `cryptography` library (about 8 MiB)."
    )


def render_readme_ratios() -> str:
    grid = _results("convergence", RESULTS / "full-final")
    quick, memory = _results("convergence"), _results("memory")
    levels = {
        r["parameters"]["unrelated_pods"]: r
        for r in memory["results"]
        if r["implementation"] == "reference"
        and (r["parameters"]["unrelated_pods"] or r["parameters"]["level"] == "idle")
    }
    most = max(levels)
    return (
        f"Measured on the same local control plane ([docs/benchmarks.md](docs/benchmarks.md)): at "
        f"1000 nodes {X} 80 resources it converges with "
        f"{_r(_ratio(grid, 'cpu_s', point='1000x10'))}{X} "
        f"the reference's CPU and {_r(_ratio(grid, 'rss_mib_converged', point='1000x10'))}{X} its "
        f"memory; its status follows a ready DaemonSet in "
        f"{_r(_ratio(quick, 'status_lag_p50_ms', point='100x1'))}{X} the reference's time (p50, "
        f"100 nodes {X} 8 resources); with {most} unrelated pods its memory is "
        f"{_r(_ratio(memory, 'rss_mib', level=levels[most]['parameters']['level']))}{X} the "
        f"reference's (which grows from {levels[0]['figures']['rss_mib']:.0f} to "
        f"{levels[most]['figures']['rss_mib']:.0f} MiB). Reconcile latency p50 is "
        + ", ".join(
            f"{op} {_r(_ratio(_results('reconcile_latency'), 'p50_ms', operation=op))}{X}"
            for op in ("create", "update", "recreate")
        )
        + " the reference's, start-up to the first DaemonSet "
        + f"{_r(_ratio(_results('startup'), 'first_daemonset_ms'))}{X} (Python on 2 shared cores)."
    )


BLOCKS: Mapping[str, Callable[[], str]] = {
    "flags": render_flags,
    "chart-values": render_chart_values,
    "metrics": render_metrics,
    "webhooks": render_webhooks,
    "devices": render_devices,
    "versions": render_versions,
    "memory": render_memory,
    "readme-ratios": render_readme_ratios,
    "bench-startup": render_bench_startup,
    "bench-latency": render_bench_latency,
    "bench-admission": render_bench_admission,
    "bench-convergence": render_bench_convergence,
    "bench-grid": render_bench_grid,
    "bench-final": render_bench_final,
    "bench-memory": render_bench_memory,
    "bench-goals": render_bench_goals,
}


# Rewriting and checking -------------------------------------------------------------------


def framed(content: str) -> str:
    """A block's body: blank lines around the content, so that Markdown ends a table before
    the closing comment and starts one after the opening comment."""
    return f"\n{content}\n\n"


def rewrite(text: str, where: str, rendered: dict[str, str] | None = None) -> str:
    """``text`` with every generated block rendered anew (unknown names are errors)."""
    cache = {} if rendered is None else rendered

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise SystemExit(
                f"{where}: unknown generated block {name!r} (known: {', '.join(BLOCKS)})"
            )
        if name not in cache:
            cache[name] = BLOCKS[name]().rstrip("\n")
        return f"{match['open']}{framed(cache[name])}{match['close']}"

    if text.count("<!-- generated:") != len(BLOCK.findall(text)):
        raise SystemExit(f"{where}: a <!-- generated:NAME --> marker has no <!-- end -->")
    return BLOCK.sub(replace, text)


_TREE_ENTRY = re.compile(r"^(?P<lead>(?:[│ ] {3})*)[├└]── (?P<name>\S+)")


def tree_problems(markdown: str, root: pathlib.Path = ROOT) -> list[str]:
    """What is wrong with the tree after ``<!-- checked:tree -->``: paths that do not exist,
    modules under src/ that it never names."""
    start = markdown.find(TREE_MARK)
    if start < 0:
        return [f"no {TREE_MARK} marker"]
    fence = markdown.index("```", start)
    body = markdown[markdown.index("\n", fence) + 1 : markdown.index("```", fence + 3)]
    problems, named = [], set()
    parents: list[str] = []
    for line in body.splitlines():
        named.update(re.findall(r"[\w./-]+\.(?:py|yaml|sh)\b", line))
        if line and not line[0].isspace() and not line.startswith(("│", "├", "└")):
            top = line.split()[0]
            parents = [top.rstrip("/")] if top.endswith("/") else []
            path = top
        elif match := _TREE_ENTRY.match(line):
            depth = len(match["lead"]) // 4
            del parents[depth + 1 :]
            path = "/".join([*parents[: depth + 1], match["name"]])
            if match["name"].endswith("/"):
                parents[depth + 1 :] = [match["name"].rstrip("/")]
        else:
            continue
        if not (root / path.rstrip("/")).exists():
            problems.append(f"names {path}, which does not exist")
    for module in sorted((root / "src").rglob("*.py")):
        if module.name != "__init__.py" and module.name not in {
            n.rsplit("/", 1)[-1] for n in named
        }:
            problems.append(f"does not name {module.relative_to(root)}")
    return problems


def stale(root: pathlib.Path = ROOT) -> list[str]:
    """Every stale generated block and every problem of the architecture tree, as lines."""
    found, rendered = [], {}
    for path in documents(root):
        text = path.read_text()
        if rewrite(text, str(path), rendered) != text:
            names = [
                m["name"]
                for m in BLOCK.finditer(text)
                if framed(BLOCKS[m["name"]]().rstrip("\n")) != m["body"]
            ]
            found.append(f"{path.relative_to(root)}: stale generated block(s) {', '.join(names)}")
    architecture = root / "docs" / "architecture.md"
    found += [
        f"docs/architecture.md tree {p}" for p in tree_problems(architecture.read_text(), root)
    ]
    return found


def write(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    changed, rendered = [], {}
    for path in documents(root):
        text = path.read_text()
        new = rewrite(text, str(path), rendered)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("write", "check"))
    args = parser.parse_args(argv)
    if args.action == "write":
        for path in write():
            print(f"wrote {path.relative_to(ROOT)}")
        problems = [p for p in stale() if "stale generated" not in p]
    else:
        problems = stale()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems and args.action == "check":
        print(
            "run `make generate` (generated blocks) or fix docs/architecture.md's tree",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
