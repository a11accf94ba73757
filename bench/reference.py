"""The reference operator (Intel's Go ``cmd/operator``), built from its public Go module.

Nothing of its source enters this repository: the ``go`` command downloads the module from
the ordinary module proxy into the Go module cache and builds it inside a small wrapper module
under ``${XDG_CACHE_HOME:-~/.cache}/deviceplugin-operator/build/reference-<ver>/``. The wrapper
repeats the module's own ``replace`` lines, which Go ignores when the module is a dependency.
The binary is cached in ``.../bin/reference-operator-<ver>/intel_deviceplugin_operator`` (the
name it has in Intel's image, which also makes its User-Agent ``intel_deviceplugin_operator/…``)
with ``build.json`` (seconds, bytes, Go version) beside it.

Run out-of-cluster it needs a webhook serving certificate (its webhook server always starts and
``/readyz`` waits for it): ``serving_cert_env`` writes a self-signed one into a private
``$TMPDIR`` (controller-runtime's default cert dir is ``$TMPDIR/k8s-webhook-server/serving-certs``).
The webhooks themselves are not registered with the apiserver.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from localcluster import binaries as lc_binaries

MODULE = "github.com/intel/intel-device-plugins-for-kubernetes"
COMMAND = f"{MODULE}/cmd/operator"
DEFAULT_VERSION = "v0.36.0"
BINARY_NAME = "intel_deviceplugin_operator"
USER_AGENT_PREFIX = f"{BINARY_NAME}/"
WEBHOOK_PORT = 9443  # controller-runtime's default; cmd/operator has no flag for it


class BuildError(RuntimeError):
    """The reference could not be built; the message names the command and its output."""


def version() -> str:
    return os.environ.get("BENCH_REFERENCE_VERSION") or DEFAULT_VERSION


def binary_dir(ver: str | None = None) -> pathlib.Path:
    return lc_binaries.cache_root() / "bin" / f"reference-operator-{ver or version()}"


def binary_path(ver: str | None = None) -> pathlib.Path:
    return binary_dir(ver) / BINARY_NAME


def build_info(ver: str | None = None) -> dict[str, Any]:
    """What ``build.json`` recorded when the binary was built (empty when unknown)."""
    try:
        info: dict[str, Any] = json.loads((binary_dir(ver) / "build.json").read_text())
    except (OSError, ValueError):
        info = {}
    path = binary_path(ver)
    if path.exists():
        info["binary_mib"] = round(path.stat().st_size / 2**20, 1)
    return info


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _run(go: str, args: list[str], *, cwd: pathlib.Path, log: pathlib.Path) -> str:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    with log.open("a") as sink:
        sink.write(f"\n$ (cd {cwd} && go {' '.join(args)})\n")
        sink.flush()
        done = subprocess.run(
            [go, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            check=False,
        )
        sink.write(done.stdout)
    if done.returncode != 0:
        tail = "\n  ".join(log.read_text(errors="replace").strip().splitlines()[-8:])
        raise BuildError(
            f"`go {' '.join(args)}` in {cwd} failed (exit {done.returncode}):\n  {tail}"
        )
    return done.stdout


def replace_args(gomod_json: dict[str, Any]) -> list[str]:
    """``go mod edit -replace`` arguments for the module's non-local replace directives."""
    result = []
    for entry in gomod_json.get("Replace") or []:
        old, new = entry["Old"], entry["New"]
        if not new.get("Version"):  # a local path: cannot be repeated outside the module
            continue
        left = old["Path"] + (f"@{old['Version']}" if old.get("Version") else "")
        result.append(f"-replace={left}={new['Path']}@{new['Version']}")
    return result


def ensure_built(ver: str | None = None) -> pathlib.Path:
    """The cached reference binary, built first when missing (about 3-6 minutes cold)."""
    ver = ver or version()
    target = binary_path(ver)
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise BuildError("The Go toolchain is not on PATH (the reference is built with `go`)")
    workdir = lc_binaries.cache_root() / "build" / f"reference-{ver}"
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "build.log"
    _say(f"Building the reference operator {MODULE} {ver} (first time only); log: {log}")
    started = time.monotonic()
    if not (workdir / "go.mod").exists():
        _run(go, ["mod", "init", "testbin.local/reference-operator"], cwd=workdir, log=log)
    info = json.loads(
        _run(go, ["mod", "download", "-json", f"{MODULE}@{ver}"], cwd=workdir, log=log)
    )
    gomod = json.loads(_run(go, ["mod", "edit", "-json", info["GoMod"]], cwd=workdir, log=log))
    edits = replace_args(gomod)
    if edits:
        _run(go, ["mod", "edit", *edits], cwd=workdir, log=log)
    _run(go, ["get", "-tool", f"{COMMAND}@{ver}"], cwd=workdir, log=log)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    _run(
        go,
        ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(temporary), COMMAND],
        cwd=workdir,
        log=log,
    )
    os.replace(temporary, target)
    seconds = time.monotonic() - started
    go_version = _run(go, ["version"], cwd=workdir, log=log).strip()
    (target.parent / "build.json").write_text(
        json.dumps(
            {
                "module": MODULE,
                "version": ver,
                "origin": info.get("Origin"),
                "build_seconds": round(seconds, 1),
                "binary_bytes": target.stat().st_size,
                "go": go_version,
                "flags": "CGO_ENABLED=0 go build -trimpath -ldflags '-s -w'",
            },
            indent=2,
        )
    )
    _say(f"Built the reference operator in {seconds:.0f}s: {target}")
    return target


def write_serving_cert(tmpdir: pathlib.Path) -> pathlib.Path:
    """A self-signed localhost cert in ``tmpdir/k8s-webhook-server/serving-certs``."""
    certs = tmpdir / "k8s-webhook-server" / "serving-certs"
    certs.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (certs / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (certs / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return certs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build (or locate) the reference operator.")
    parser.add_argument("--version", default=None)
    args = parser.parse_args(argv)
    try:
        path = ensure_built(args.version)
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    print(path)
    print(json.dumps(build_info(args.version), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
