"""The ``render``, ``diagnose`` and ``support-bundle`` commands: their flags and what they run.

cli.py adds them next to ``run`` (``add_commands``) and hands their parsed arguments here
(``main``, which runs them from ``running``) with the environment and a builder of the
operator's ``Settings``, so ``render``
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
from collections.abc import Callable, Mapping
from typing import Any

from deviceplugin_operator import settings

OK, PROBLEMS, USAGE, UNREADABLE = 0, 1, 2, 3

COMMANDS = ("render", "diagnose", "support-bundle")

RENDER_FLAGS = (
    "deviceplugin_namespace",
    "plugin_service_account",
    "devices",
    "allowed_image_registries",
)
"""The ``run`` flags (by dest) that shape a DaemonSet: ``render`` shares their definitions."""

OPERATOR_SELECTOR = "control-plane=controller-manager,manager=intel-deviceplugin-operator"
"""The labels of the operator's Deployment in every install (kustomize, Helm, the reference's)."""


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
        default=OPERATOR_SELECTOR,
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
    # Imported only when a command runs: ``run`` builds this parser too, and what the commands
    # use (the diagnosis, tarfile, the API client) would add to every operator start-up.
    from deviceplugin_operator.inspection import running  # noqa: PLC0415

    return running.main(args, environ, operator_settings)
