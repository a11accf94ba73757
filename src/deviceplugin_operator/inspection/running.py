"""What ``render``, ``diagnose`` and ``support-bundle`` do once their arguments are parsed.

``commands`` defines their flags and calls ``main`` here; the exit statuses are its ``OK``,
``PROBLEMS``, ``USAGE`` and ``UNREADABLE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
from collections.abc import Callable, Mapping

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
from deviceplugin_operator.inspection.commands import OK, PROBLEMS, UNREADABLE, USAGE
from deviceplugin_operator.kube import client, errors


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
