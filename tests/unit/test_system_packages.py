"""tools/system-packages.sh with stand-ins for dpkg-query, apt-get and id: a no-op when every
package is installed, else one ``apt-get update`` and one install of the missing ones."""

from __future__ import annotations

import pathlib
import subprocess

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "tools" / "system-packages.sh"
PACKAGES = [
    "buildah",
    "podman",
    "mmdebstrap",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "skopeo",
    "umoci",
    "uidmap",
    "fuse-overlayfs",
    "iptables",
    "iproute2",
]


def _run(tmp_path: pathlib.Path, missing: set[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    stubs = {
        # dpkg-query -W -f=... PACKAGE
        "dpkg-query": 'case " $MISSING " in *" $3 "*) exit 1;; esac; printf installed',
        "apt-get": f'echo "apt-get $*" >> {log}',
        "id": "echo 0",
    }
    for name, body in stubs.items():
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MISSING": " ".join(sorted(missing))}
    completed = subprocess.run(
        ["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    return completed, log.read_text() if log.exists() else ""


def test_nothing_to_do_when_all_are_installed(tmp_path: pathlib.Path) -> None:
    completed, calls = _run(tmp_path, set())
    assert completed.returncode == 0, completed.stderr
    assert calls == ""
    assert "already installed" in completed.stdout


def test_installs_the_missing_ones_after_one_update(tmp_path: pathlib.Path) -> None:
    completed, calls = _run(tmp_path, {"podman", "iproute2"})
    assert completed.returncode == 0, completed.stderr
    assert calls.splitlines() == [
        "apt-get update",
        "apt-get install -y --no-install-recommends podman iproute2",
    ]
    assert "installing: podman iproute2" in completed.stdout


def test_lists_exactly_the_packages_of_the_image_build_and_the_real_node() -> None:
    text = SCRIPT.read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("PACKAGES=")]
    assert line.split("=", 1)[1].strip('"').split() == PACKAGES
