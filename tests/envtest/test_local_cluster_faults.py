"""Faults of the local control plane: a component that cannot start, an interrupted start,
no Go toolchain, an unreachable module proxy. Each gives one clear error and leaves no
process behind."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import signal
import subprocess
import sys

import pytest

from localcluster import binaries, cluster, errors, nodes, processes
from polling import eventually

pytestmark = pytest.mark.cluster

CTRL_C_ABLE = (
    "import runpy, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'localcluster'; "
    "runpy.run_module('localcluster.cli', run_name='__main__')"
)
"""``python -m localcluster.cli`` as a terminal starts it: a test run in the background of a
shell without job control inherits SIGINT ignored, and Python then never raises
KeyboardInterrupt (the interrupted ``up`` ran to the end and exited 0)."""


def test_a_component_that_fails_names_itself_and_its_log_and_leaves_nothing_running(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = binaries.ensure_binaries()
    broken = dataclasses.replace(real, kube_apiserver=pathlib.Path("/bin/false"))
    monkeypatch.setattr(binaries, "ensure_binaries", lambda **_: broken)
    started: dict[str, int] = {}
    original_launch = cluster.Cluster._launch

    def recording_launch(
        self: cluster.Cluster, state: cluster.State, name: str, argv: list[str]
    ) -> None:
        original_launch(self, state, name, argv)
        started[name] = state.pids[name]

    monkeypatch.setattr(cluster.Cluster, "_launch", recording_launch)
    local = cluster.Cluster(tmp_path / "broken")

    with pytest.raises(errors.StartError) as raised:
        local.up(nodes.intel_nodes(1), timeout=20)

    message = str(raised.value)
    assert message.startswith("kube-apiserver exited; see ")
    assert str(tmp_path / "broken" / "logs" / "kube-apiserver.log") in message
    assert set(started) == {"etcd", "kube-apiserver"}
    assert not any(processes.alive(pid) for pid in started.values())
    assert not (tmp_path / "broken").exists()


def test_interrupting_up_stops_everything_it_started(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "interrupted"
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_ABLE, "--dir", str(directory), "up", "--nodes", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def pids_once_two_components_run() -> dict[str, int] | None:
            try:
                pids: dict[str, int] = json.loads((directory / "state.json").read_text())["pids"]
            except (OSError, ValueError, KeyError):
                return None
            return pids if len(pids) >= 2 else None

        pids = eventually(
            pids_once_two_components_run,
            timeout=30,
            interval=0.02,
            what="two components to be started",
        )
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 130
    finally:
        if child.poll() is None:
            child.kill()
    assert not any(processes.alive(pid) for pid in pids.values()), pids
    assert not directory.exists()


def test_missing_go_toolchain_is_a_clear_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(errors.BuildError, match="Go toolchain was not found on PATH"):
        binaries.ensure_binaries(echo=False)


def test_unreachable_module_is_a_clear_error_naming_the_log(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "empty-modcache"))
    monkeypatch.setenv("GOPROXY", "off")
    monkeypatch.setenv("GOFLAGS", "-modcacherw")
    with pytest.raises(errors.BuildError) as raised:
        binaries.ensure_binaries(echo=False)
    message = str(raised.value)
    assert message.startswith("Downloading etcd failed")
    assert "build.log" in message
    assert "GOPROXY=off" in message
