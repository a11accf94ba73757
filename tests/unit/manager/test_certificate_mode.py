"""Where the webhook serving certificate comes from by default: mounted when a pair is in the
certificate directory (the reference's installs mount one there and grant no rights on Secrets
or webhook configurations), self-managed otherwise; an explicit ``--webhook-certs`` wins."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import pathlib
import socket
import ssl

import pytest

from deviceplugin_operator import manager, settings
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.kube import resources
from deviceplugin_operator.manager import webhook_certificates
from fakes import FakeKubeClient

NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)


def secret_volume(directory: pathlib.Path, cert: bytes, key: bytes) -> pathlib.Path:
    """Files laid out as the kubelet mounts a Secret: ``tls.crt -> ..data/tls.crt``,
    ``..data -> ..<timestamp>/``."""
    stamped = directory / "..2026_11_28_00_00_00.1"
    stamped.mkdir(parents=True)
    (stamped / "tls.crt").write_bytes(cert)
    (stamped / "tls.key").write_bytes(key)
    (directory / "..data").symlink_to(stamped.name)
    for name in ("tls.crt", "tls.key"):
        (directory / name).symlink_to(f"..data/{name}")
    return directory


def test_auto_mounts_a_secret_volume(tmp_path: pathlib.Path) -> None:
    directory = secret_volume(tmp_path / "certs", b"c", b"k")
    mode = webhook_certificates.choose_mode("auto", directory)
    assert (mode.name, mode.automatic, mode.doubtful) == ("mounted", True, False)
    assert mode.reason == (
        f"tls.crt and tls.key found in {directory} (--webhook-cert-dir); "
        "--webhook-certs=self-managed makes the operator manage its own"
    )


def test_auto_manages_its_own_without_a_pair(tmp_path: pathlib.Path) -> None:
    for directory in (tmp_path, tmp_path / "absent"):
        mode = webhook_certificates.choose_mode("auto", directory)
        assert (mode.name, mode.automatic, mode.doubtful) == ("self-managed", True, False)
        assert mode.reason.startswith(f"no tls.crt and tls.key in {directory}")


@pytest.mark.parametrize(("present", "missing"), [("tls.crt", "tls.key"), ("tls.key", "tls.crt")])
def test_half_a_pair_is_not_mounted_and_is_doubtful(
    tmp_path: pathlib.Path, present: str, missing: str
) -> None:
    (tmp_path / present).write_text("x")
    (tmp_path / missing).mkdir()  # not a file either
    mode = webhook_certificates.choose_mode("auto", tmp_path)
    assert (mode.name, mode.doubtful) == ("self-managed", True)
    assert mode.reason.startswith(f"{present} but no {missing} in {tmp_path}")


def test_a_directory_that_cannot_be_searched_holds_nothing(tmp_path: pathlib.Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root searches every directory")
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    tmp_path.chmod(0)
    try:
        assert webhook_certificates.choose_mode("auto", tmp_path).name == "self-managed"
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("requested", ["self-managed", "mounted"])
def test_an_explicit_mode_wins(tmp_path: pathlib.Path, requested: str) -> None:
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    for directory in (tmp_path, tmp_path / "absent"):
        mode = webhook_certificates.choose_mode(requested, directory)
        assert (mode.name, mode.automatic, mode.reason) == (
            requested,
            False,
            f"--webhook-certs={requested}",
        )


def test_an_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown webhook certificate mode 'vault'"):
        webhook_certificates.choose_mode("vault", "/")


# At start: the mode is logged with its reason; a pair found by auto that TLS refuses says so.


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def options_for(directory: pathlib.Path, port: int, requested: str = "auto") -> manager.Options:
    mode = webhook_certificates.choose_mode(requested, directory)
    return manager.Options(
        health_probe_bind_address="127.0.0.1:0",
        webhook_port=port,
        webhook_host="127.0.0.1",
        webhook_cert_dir=str(directory),
        webhook_certs=mode.name,
        webhook_certs_choice=mode,
        operator_namespace="ops",
    )


async def test_a_mounted_pair_found_by_auto_is_served_and_the_choice_logged(
    tmp_path: pathlib.Path, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = certificates.issue(["127.0.0.1"], NOW)
    directory = secret_volume(tmp_path / "certs", bundle.cert, bundle.key)
    kube = FakeKubeClient()
    mgr = manager.Manager(
        settings.Settings(plugin_namespace="ops", devices=("gpu",)),
        options_for(directory, free_port),
        kube,
    )
    with caplog.at_level(logging.INFO, logger=webhook_certificates.__name__):
        await mgr.serve()
    try:
        served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", free_port))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(bundle.cert.decode())
    finally:
        await mgr.stop()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Webhook certificate")]
    assert (record.levelno, record.getMessage()) == (logging.INFO, "Webhook certificate: mounted")
    assert record.__dict__["why"].startswith(f"tls.crt and tls.key found in {directory}")
    # Mounted: no Secret written, no webhook configuration touched (not even read).
    assert kube.writes == 0
    assert not [call for call in kube.calls if call.resource.endswith("configurations")]
    assert not kube.stored(resources.SECRETS)


async def test_half_a_pair_is_a_warning_and_the_certificate_self_managed(
    tmp_path: pathlib.Path, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "tls.crt").write_text("left over")
    kube = FakeKubeClient()
    mgr = manager.Manager(
        settings.Settings(plugin_namespace="ops", devices=("gpu",)),
        options_for(tmp_path, free_port),
        kube,
    )
    with caplog.at_level(logging.INFO, logger=webhook_certificates.__name__):
        await mgr.serve()
    await mgr.stop()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Webhook certificate")]
    assert (record.levelno, record.getMessage()) == (
        logging.WARNING,
        "Webhook certificate: self-managed",
    )
    assert kube.stored(resources.SECRETS), "the operator made its own"


async def test_a_pair_found_by_auto_that_tls_refuses_names_the_choice(
    tmp_path: pathlib.Path, free_port: int
) -> None:
    one, other = certificates.issue(["x"], NOW), certificates.issue(["x"], NOW)
    directory = secret_volume(tmp_path / "certs", one.cert, other.key)
    mgr = manager.Manager(
        settings.Settings(plugin_namespace="ops", devices=("gpu",)),
        options_for(directory, free_port),
        FakeKubeClient(),
    )
    try:
        with pytest.raises(manager.StartupError) as raised:
            await mgr.serve()
    finally:
        await mgr.stop()
    assert str(raised.value).startswith(
        "Unusable webhook certificate (mounted, as --webhook-certs=auto found both files) in "
        f"{directory}: tls.key is not the key of the certificate in tls.crt; "
    )


async def test_a_self_managed_certificate_never_lands_in_the_directory(
    tmp_path: pathlib.Path, free_port: int
) -> None:
    """The install's /tmp is an emptyDir that outlives a container restart: were the
    self-managed pair written into the certificate directory, the restarted container would
    take it for a mounted one (and stop renewing it)."""
    kube = FakeKubeClient()
    mgr = manager.Manager(
        settings.Settings(plugin_namespace="ops", devices=("gpu",)),
        options_for(tmp_path, free_port),
        kube,
    )
    await mgr.serve()
    try:
        served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", free_port))
    finally:
        await mgr.stop()
    assert served
    assert kube.stored(resources.SECRETS)
    assert webhook_certificates.choose_mode("auto", tmp_path).name == "self-managed"
    written = await asyncio.to_thread(lambda: list(tmp_path.rglob("tls.*")))
    assert not written
