"""The reference's flags, read from its real binary (v0.36.0), are this operator's, in every
form Go's ``flag`` package accepts, with the same defaults and meaning.

No control plane: the reference is run with a kubeconfig path that does not exist, so it parses
its flags and stops right after (exit 1, "unable to get kubeconfig"); a flag syntax error exits
2 before that. This operator is asked the same through its parser.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from typing import Any

import pytest
import yaml

from compat.support import Reference, module_dir
from deviceplugin_operator import cli

FLAG = re.compile(r"^  -(?P<name>[\w-]+)(?: (?P<type>\w+))?\n(?P<help>(?:    \t.*\n?)*)", re.M)
DEFAULT = re.compile(r'\(default "?(?P<value>.*?)"?\)\s*$')


def reference_help(reference: Reference) -> dict[str, tuple[str, str]]:
    """Each flag of the reference's ``-help``: name → (type: bool|string|value, default)."""
    done = subprocess.run(
        [str(reference.binary), "-help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    flags = {}
    for found in FLAG.finditer(done.stderr):
        default = DEFAULT.search(found["help"])
        flags[found["name"]] = (found["type"] or "bool", default["value"] if default else "")
    return flags


def ours(name: str) -> argparse.Action:
    (run,) = [
        action.choices["run"]
        for action in cli._parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    (action,) = [a for a in run._actions if any(o.lstrip("-") == name for o in a.option_strings)]
    return action


def test_every_flag_of_the_reference_is_ours_with_its_default(reference: Reference) -> None:
    flags = reference_help(reference)
    # What the real binary says (a change here is a new reference version to look at).
    assert sorted(flags) == [
        "deviceplugin-namespace",
        "devices",
        "enable-http2",
        "health-probe-bind-address",
        "kubeconfig",
        "leader-elect",
        "metrics-bind-address",
        "metrics-secure",
        "v",
        "vmodule",
    ]
    defaults = cli._parser().parse_args(["run"])
    for name, (kind, default) in flags.items():
        action = ours(name)
        value = getattr(defaults, action.dest)
        if kind == "bool":
            assert isinstance(action, cli._Bool), name
            assert value is False, name
            # -name alone and -name=false, as Go's booleans.
            assert getattr(cli._parser().parse_args(["run", f"-{name}"]), action.dest) is True
            no = cli._parser().parse_args(["run", f"-{name}", f"--{name}=false"])
            assert getattr(no, action.dest) is False
        else:
            assert action.nargs is None, f"-{name} takes one value"
            assert str(value or "") == default or (name == "v" and value == 0), (name, value)


def run_reference(reference: Reference, argv: list[str]) -> int:
    done = subprocess.run(
        [str(reference.binary), "-kubeconfig=/nonexistent/kubeconfig", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode


def run_ours(argv: list[str]) -> int:
    """2 for a refused argument list, 0 when it parses and builds the settings."""
    try:
        args = cli._parser().parse_args(["run", *argv])
        cli.build_settings(args, {})
        cli.build_options(args, {})
    except cli.UsageError:
        return 2
    except SystemExit as exit_:  # help
        return int(exit_.code or 0)
    return 0


# Each form measured on the real binary: (arguments, what the reference does with them).
ACCEPTED = [
    ["-leader-elect"],
    ["--leader-elect"],
    ["--leader-elect=true"],
    ["-leader-elect=false"],
    *[
        ["--metrics-secure=" + word]
        for word in [
            "1",
            "0",
            "t",
            "f",
            "T",
            "F",
            "TRUE",
            "FALSE",
            "true",
            "false",
            "True",
            "False",
        ]
    ],
    ["--enable-http2=true"],
    ["-devices=gpu"],
    ["-devices", "gpu", "--devices=qat"],
    ["--deviceplugin-namespace", "plugins"],
    ["-deviceplugin-namespace=plugins"],
    ["-metrics-bind-address=:8443", "--health-probe-bind-address", ":8081"],
    ["-v=3"],
    ["-v", "3"],
    ["--v=2"],
    ["-vmodule=foo=2"],
    ["--"],
]
REFUSED = [
    ["---leader-elect"],
    ["-bogus"],
    ["--deviceplugin-namespace"],
    ["--leader-elect=yes"],
    ["--v=x"],
    ["-=x"],
]
STRAY = [["--leader-elect", "false"], ["--", "x"], ["-"]]
"""The reference stops reading flags at the first argument that is not one and ignores the
rest; this operator refuses it (exit 2, one line naming the argument): a documented change."""


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_what_the_reference_accepts_is_accepted(reference: Reference, argv: list[str]) -> None:
    assert run_reference(reference, argv) == 1, "parsed, then no kubeconfig"
    assert run_ours(argv) == 0


@pytest.mark.parametrize("argv", REFUSED, ids=" ".join)
def test_what_the_reference_refuses_is_refused(reference: Reference, argv: list[str]) -> None:
    assert run_reference(reference, argv) == 2
    assert run_ours(argv) == 2


@pytest.mark.parametrize("argv", [["-h"], ["-help"], ["--help"]], ids=" ".join)
def test_help_exits_0_in_both(reference: Reference, argv: list[str]) -> None:
    assert run_reference(reference, argv) == 0
    assert run_ours(argv) == 0


@pytest.mark.parametrize("argv", STRAY, ids=" ".join)
def test_a_stray_argument_is_refused_where_the_reference_ignores_the_rest(
    reference: Reference, argv: list[str]
) -> None:
    assert run_reference(reference, [*argv, "-bogus"]) == 1, "the rest was never read"
    assert run_ours(argv) == 2


def rendered_default(reference: Reference) -> dict[str, Any]:
    """The manager container of the reference's ``kubectl kustomize deployments/operator/default``
    (its kustomization's patches applied by hand: no kustomize needed)."""
    operator = module_dir(reference.version) / "deployments" / "operator"
    manager = yaml.safe_load_all((operator / "manager" / "manager.yaml").read_text())
    (deployment,) = [doc for doc in manager if doc["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    patch = yaml.safe_load((operator / "default" / "manager_metrics_patch.yaml").read_text())
    for operation in patch:
        assert operation["op"] == "add"
        assert operation["path"].startswith("/spec/template/spec/containers/0/args/")
        container["args"].insert(int(operation["path"].rsplit("/", 1)[1]), operation["value"])
    return dict(container)


def test_the_reference_deployment_runs_with_this_image(reference: Reference) -> None:
    """Its Deployment names no command (the image's ENTRYPOINT runs): this image's
    ``deviceplugin-operator run`` takes its arguments; a command naming the reference's binary
    runs ``intel_deviceplugin_operator``, installed at the same path (tests/unit/
    test_dockerfile.py)."""
    container = rendered_default(reference)
    assert "command" not in container
    assert container["args"] == [
        "--metrics-secure",
        "--metrics-bind-address=:8443",
        "--health-probe-bind-address=:8081",
        "--leader-elect",
    ]
    args = cli._parser().parse_args(["run", *container["args"]])
    assert (args.metrics_secure, args.leader_elect) == (True, True)
    assert (args.metrics_bind_address, args.health_probe_bind_address) == (":8443", ":8081")
