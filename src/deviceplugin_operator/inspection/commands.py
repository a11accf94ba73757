"""The ``render``, ``diagnose`` and ``support-bundle`` commands: their flags and what they run.

cli.py adds them next to ``run`` (``add_commands``) and hands their parsed arguments here
(``main``) with the environment and a builder of the operator's ``Settings``, so ``render``
reads ``--deviceplugin-namespace``, ``DEVICEPLUGIN_SECRET``, ``<IMAGE>_SHA`` ... exactly as
``run`` does. ``render`` takes the ``run`` flags that shape a DaemonSet (``RENDER_FLAGS``, the
same argparse actions) in Go's syntax; the other two take ordinary flags and positional
arguments, as kubectl plugins do.

Exit status: 0 nothing wrong, 1 a problem found (a refused resource, a node without its
plugin or devices), 2 bad arguments or a name that does not exist, 3 the cluster could not be
read (unreachable, credentials refused, RBAC).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from deviceplugin_operator import devices, settings
from deviceplugin_operator.inspection import (
    bundling,
    diagnosis,
    gathering,
    redaction,
    rendering,
    reporting,
)
from deviceplugin_operator.kube import client, errors

OK, PROBLEMS, USAGE, UNREADABLE = 0, 1, 2, 3

COMMANDS = ("render", "diagnose", "support-bundle")

RENDER_FLAGS = (
    "deviceplugin_namespace",
    "plugin_service_account",
    "devices",
    "allowed_image_registries",
)
"""The ``run`` flags (by dest) that shape a DaemonSet: ``render`` shares their definitions."""


def add_commands(commands: Any, run: argparse.ArgumentParser) -> None:
    """Add the three commands to cli.py's subcommands; ``run`` is the operator's parser."""
    render = commands.add_parser(
        "render",
        help="print the DaemonSets the operator would create for the resources in a file",
        description="Print the DaemonSets the operator would create for the "
        "deviceplugin.intel.com resources in FILE (offline; several documents, Lists, - for "
        "stdin). The flags of run that shape a DaemonSet are taken with the same meaning, as "
        "is the environment (DEVICEPLUGIN_NAMESPACE, DEVICEPLUGIN_SECRET, <IMAGE>_SHA). A "
        "resource the webhook would refuse is reported with its message; the exit status is "
        "then 1.",
        allow_abbrev=False,
    )
    for action in run._actions:
        if action.dest in RENDER_FLAGS:
            render._add_action(action)
    render.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="file with the resources (YAML or JSON; - for stdin); repeatable",
    )
    render.add_argument(
        "-o", "--output", choices=("yaml", "json"), default="yaml", help="output format"
    )

    diagnose = commands.add_parser(
        "diagnose",
        go_syntax=False,
        help="why a node has or has not a plugin and devices",
        description="For each device plugin resource and node: why there is (no) plugin and "
        "(no) device there. NODE and KIND/NAME (e.g. gpu/my-gpus or "
        "GpuDevicePlugin/my-gpus) narrow it down, in either order. Exit status 1 when a "
        "problem is found. Reads only.",
    )
    diagnose.add_argument("targets", nargs="*", metavar="NODE | KIND/NAME")
    diagnose.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )
    _connection_flags(diagnose)

    bundle = commands.add_parser(
        "support-bundle",
        go_syntax=False,
        help="write an issue report's data (no secrets) to a .tar.gz",
        description="Collect the resources, plugin DaemonSets and pods, Events, nodes' Intel "
        "labels and resources, a diagnosis, the operator's Deployments, flags and recent logs "
        "into a .tar.gz. Secrets are never read; tokens and environment values are redacted.",
    )
    bundle.add_argument(
        "-o", "--output", required=True, metavar="FILE.tar.gz", help="the archive to write"
    )
    bundle.add_argument(
        "--operator-selector",
        default=bundling.OPERATOR_SELECTOR,
        help="label selector of the operator's Deployments (kustomize and Helm installs)",
    )
    bundle.add_argument("--tail", type=int, default=2000, help="log lines per container")
    _connection_flags(bundle)


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None, help="default: KUBECONFIG, ~/.kube/config")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")


def main(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    operator_settings: Callable[[], settings.Settings],
) -> int:
    """Run the command ``args.command``; the exit status."""
    if args.command == "render":
        return _render(args, operator_settings())
    kubeconfig = args.kubeconfig or environ.get("KUBECONFIG") or None
    if args.command == "diagnose":
        return asyncio.run(_diagnose(args, kubeconfig))
    return asyncio.run(_support_bundle(args, kubeconfig, environ))


def _fail(message: str, status: int) -> int:
    print(message, file=sys.stderr)
    return status


def _render(args: argparse.Namespace, config: settings.Settings) -> int:
    found: list[rendering.Document] = []
    try:
        for name in args.filename:
            text = sys.stdin.read() if name == "-" else pathlib.Path(name).read_text()
            found += rendering.documents(text, "stdin" if name == "-" else name)
    except OSError as error:
        return _fail(f"render: cannot read {error.filename}: {error.strerror}", USAGE)
    except rendering.InputError as error:
        return _fail(f"render: {error}", USAGE)
    result = rendering.render(found, config, allowed_registries=args.allowed_image_registries)
    if args.output == "json":
        listed = {"apiVersion": "v1", "kind": "List", "items": result.daemonsets}
        print(json.dumps(listed, indent=2))
    elif result.daemonsets:
        print(yaml.safe_dump_all(result.daemonsets, sort_keys=False), end="")
    for line in (*result.notes, *result.problems):
        print(line, file=sys.stderr)
    return PROBLEMS if result.problems else OK


def _targets(targets: list[str]) -> tuple[str | None, str | None, str | None]:
    """(node, kind name, resource name) from ``NODE`` and ``KIND/NAME`` in any order."""
    node = kind = name = None
    for target in targets:
        if "/" in target:
            if kind is not None:
                raise ValueError(f"{target!r}: one KIND/NAME at most")
            given, _, name = target.partition("/")
            kind = _kind(given)
            if not name:
                raise ValueError(f"{target!r}: name the resource after the slash")
        elif node is None:
            node = target
        else:
            raise ValueError(f"{target!r}: one NODE at most (and KIND/NAME with a slash)")
    return node, kind, name


def _kind(given: str) -> str:
    lowered = given.lower()
    for kind in devices.KINDS.values():
        if lowered in (kind.name, kind.kind.lower(), kind.plural, kind.singular):
            return kind.name
    known = ", ".join(devices.KINDS)
    raise ValueError(f"unknown kind {given!r} (one of {known}, or their kind names)")


async def _connect(kubeconfig: str | None, context: str | None) -> client.HttpKubeClient:
    return await client.connect(kubeconfig, context=context, timeout=30.0)


async def _diagnose(args: argparse.Namespace, kubeconfig: str | None) -> int:
    try:
        node, kind, name = _targets(args.targets)
    except ValueError as error:
        return _fail(f"diagnose: {error}", USAGE)
    try:
        async with await _connect(kubeconfig, args.context) as kube:
            snapshot = await gathering.snapshot(kube, node=node, kind=kind, name=name)
    except gathering.NotFoundError as missing:
        return _fail(f"diagnose: {missing}", USAGE)
    except errors.KubeError as error:
        return _fail(f"diagnose: cannot read the cluster: {error}", UNREADABLE)
    found = diagnosis.diagnose(snapshot, node=node, kind=kind, name=name)
    if args.output == "json":
        print(reporting.as_json(found))
    else:
        print(reporting.as_text(found, node=node), end="")
    return PROBLEMS if any(resource.problems for resource in found) else OK


def _kubeconfig_secrets(kubeconfig: str | None, environ: Mapping[str, str]) -> list[str]:
    paths = (kubeconfig or str(pathlib.Path(environ.get("HOME", "~")) / ".kube/config")).split(":")
    found: list[str] = []
    for path in paths:
        try:
            found += redaction.kubeconfig_secrets(yaml.safe_load(pathlib.Path(path).read_text()))
        except (OSError, yaml.YAMLError):
            continue
    return found


async def _support_bundle(
    args: argparse.Namespace, kubeconfig: str | None, environ: Mapping[str, str]
) -> int:
    output = pathlib.Path(args.output)
    if not output.parent.is_dir():
        return _fail(f"support-bundle: no directory {output.parent} for {output}", USAGE)
    redactor = redaction.Redactor(_kubeconfig_secrets(kubeconfig, environ))
    try:
        async with await _connect(kubeconfig, args.context) as kube:
            bundle = await bundling.collect(
                kube, kube, redactor, operator_selector=args.operator_selector, tail_lines=args.tail
            )
    except errors.KubeError as error:
        return _fail(f"support-bundle: cannot read the cluster: {error}", UNREADABLE)
    root = output.name.removesuffix(".tar.gz").removesuffix(".tgz") or "support-bundle"
    bundle.write(output, root=root)
    print(f"Wrote {output} ({len(bundle.files)} files)")
    for problem in bundle.errors:
        print(f"not collected: {problem}", file=sys.stderr)
    return OK
