"""The checked-in generated manifests are what the code generates (``make verify``)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from deviceplugin_operator.manifests import __main__ as cli
from deviceplugin_operator.manifests import generation


def test_checked_in_files_are_current(deployments: pathlib.Path, tmp_path: pathlib.Path) -> None:
    written = generation.write(tmp_path)
    assert sorted(written) == sorted(generation.generated())
    for relative in written:
        checked_in = deployments / relative
        assert checked_in.exists(), f"{relative} is missing: run make generate"
        assert checked_in.read_text() == (tmp_path / relative).read_text(), (
            f"{relative} is stale: run make generate"
        )
    assert generation.differences(deployments) == ""


def test_check_reports_stale_missing_and_leftover_files(
    deployments: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for top in sorted({relative.split("/")[0] for relative in generation.generated()}):
        shutil.copytree(deployments / top, tmp_path / top)
    assert cli.main(["check", str(tmp_path)]) == 0

    gpu = tmp_path / "crd/bases/deviceplugin.intel.com_gpudeviceplugins.yaml"
    gpu.write_text(gpu.read_text().replace("Node Selector", "Selector"))
    (tmp_path / "crd/bases/fpga.intel.com_fpgaregions.yaml").unlink()
    (tmp_path / "crd/bases/deviceplugin.intel.com_olddeviceplugins.yaml").write_text("old\n")
    capsys.readouterr()
    assert cli.main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "-      name: Selector" in out
    assert "+      name: Node Selector" in out
    assert "+++ b/crd/bases/fpga.intel.com_fpgaregions.yaml" in out
    assert "--- a/crd/bases/deviceplugin.intel.com_olddeviceplugins.yaml" in out

    assert cli.main(["write", str(tmp_path)]) == 0
    assert not (tmp_path / "crd/bases/deviceplugin.intel.com_olddeviceplugins.yaml").exists()
    assert cli.main(["check", str(tmp_path)]) == 0
    assert generation.write(tmp_path) == []
