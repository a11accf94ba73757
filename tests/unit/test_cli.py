"""Flags and environment of ``deviceplugin-operator run``."""

import argparse
import gc
import json
import logging
import pathlib
import socket

import pytest

from deviceplugin_operator import cli, devices


def test_no_devices_flag_enables_every_kind_in_registry_order() -> None:
    assert cli.parse_devices([]) == tuple(devices.KINDS)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["gpu"], ("gpu",)),
        (["gpu", "qat"], ("gpu", "qat")),
        (["gpu,qat"], ("gpu", "qat")),
        (["sgx, fpga", "npu"], ("sgx", "fpga", "npu")),
    ],
)
def test_devices_are_repeatable_or_comma_lists(
    values: list[str], expected: tuple[str, ...]
) -> None:
    assert cli.parse_devices(values) == expected


def test_unknown_device_is_one_line_error() -> None:
    with pytest.raises(cli.UsageError, match=r"^Unsupported device: tpu \(supported: dsa, dlb"):
        cli.parse_devices(["gpu,tpu"])


def test_duplicate_device_is_one_line_error() -> None:
    with pytest.raises(cli.UsageError, match=r"^Duplicate device: gpu$"):
        cli.parse_devices(["gpu", "qat,gpu"])


def test_main_exits_2_with_one_line_for_a_bad_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--devices", "gpu,gpu"]) == 2
    assert capsys.readouterr().err == "Duplicate device: gpu\n"


def test_environment_wins_over_flags_and_sha_overrides_are_collected() -> None:
    args = cli._parser().parse_args(["run", "--deviceplugin-namespace", "flagged"])
    environ = {
        "DEVICEPLUGIN_NAMESPACE": "from-env",
        "DEVICEPLUGIN_SECRET": "regcred",
        "INTEL_GPU_PLUGIN_SHA": "intel/intel-gpu-plugin@sha256:" + "a" * 64,
        "EMPTY_SHA": "",
    }
    config = cli.build_settings(args, environ)
    assert config.plugin_namespace == "from-env"
    assert config.image_pull_secret == "regcred"
    assert dict(config.image_overrides) == {"INTEL_GPU_PLUGIN_SHA": environ["INTEL_GPU_PLUGIN_SHA"]}
    assert cli.build_settings(args, {}).plugin_namespace == "flagged"


def test_every_option_is_built_from_the_flags() -> None:
    args = cli._parser().parse_args(
        [
            "run",
            "--webhook-port",
            "0",
            "--webhook-cert-hosts",
            "a.svc, 127.0.0.1",
            "--webhook-certs",
            "mounted",
        ]
    )
    options = cli.build_options(args, {"POD_NAMESPACE": "ops"})
    assert options.webhook_port == 0
    assert options.webhook_hosts == ("a.svc", "127.0.0.1")
    assert options.webhook_certs == "mounted"
    assert options.operator_namespace == "ops"
    assert cli.build_options(cli._parser().parse_args(["run"]), {}).webhook_port == 9443


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("1m30s", 90.0), ("500ms", 0.5), ("2", 2.0), ("1.5s", 1.5), ("1h", 3600.0)],
)
def test_durations_are_go_durations_or_seconds(text: str, seconds: float) -> None:
    assert cli.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "15x", "1m 30s", "-1s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_duration(text)


def test_leader_election_is_off_unless_asked() -> None:
    args = cli._parser().parse_args(["run"])
    assert cli.build_options(args, {}).leader_election is None


def test_leader_election_defaults_are_controller_runtimes(tmp_path: pathlib.Path) -> None:
    args = cli._parser().parse_args(["run", "--leader-elect"])
    config = cli.build_election(args, {"POD_NAMESPACE": "ops"}, tmp_path / "absent")
    assert config is not None
    assert config.name == "d1c7b6d5.intel.com"
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (15, 10, 2)
    assert config.namespace == "ops"
    assert config.identity.startswith(socket.gethostname() + "_")


def test_leader_election_timings_from_flags() -> None:
    args = cli._parser().parse_args(
        [
            "run",
            "--leader-elect",
            "--leader-elect-lease-duration=30s",
            "--leader-elect-renew-deadline=20s",
            "--leader-elect-retry-period=500ms",
            "--leader-elect-namespace=elsewhere",
        ]
    )
    config = cli.build_election(args, {"POD_NAMESPACE": "ops"})
    assert config is not None
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (30, 20, 0.5)
    assert config.namespace == "elsewhere"


def test_impossible_leader_election_timings_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["run", "--leader-elect", "--leader-elect-renew-deadline=20s"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Invalid leader election timing: the lease duration must be greater")
    assert err.count("\n") == 1


def test_lease_namespace_is_the_pods_then_the_service_accounts_then_the_plugins(
    tmp_path: pathlib.Path,
) -> None:
    args = cli._parser().parse_args(["run", "--deviceplugin-namespace", "plugins"])
    mounted = tmp_path / "namespace"
    mounted.write_text("from-sa\n")
    absent = tmp_path / "absent"
    env = {"POD_NAMESPACE": "from-pod", "DEVICEPLUGIN_NAMESPACE": "from-env"}
    assert cli.leader_election_namespace(args, env, mounted) == "from-pod"
    plugins_env = {"DEVICEPLUGIN_NAMESPACE": "x"}
    assert cli.leader_election_namespace(args, plugins_env, mounted) == "from-sa"
    assert cli.leader_election_namespace(args, plugins_env, absent) == "x"
    assert cli.leader_election_namespace(args, {}, absent) == "plugins"


def test_metrics_flags_reach_the_options() -> None:
    args = cli._parser().parse_args(
        ["run", "--metrics-secure", "--metrics-cert-path=/certs", "--metrics-bind-address=:8443"]
    )
    options = cli.build_options(args, {})
    assert options.metrics_secure
    assert options.metrics_cert_path == "/certs"
    assert (options.metrics_cert_name, options.metrics_cert_key) == ("tls.crt", "tls.key")
    assert options.metrics_bind_address == ":8443"
    assert cli.build_options(cli._parser().parse_args(["run"]), {}).metrics_bind_address == ":8080"


def test_plugin_service_account_flag_reaches_the_settings() -> None:
    args = cli._parser().parse_args(["run", "--plugin-service-account", "plugin"])
    assert cli.build_settings(args, {}).plugin_service_account == "plugin"
    assert cli.build_settings(cli._parser().parse_args(["run"]), {}).plugin_service_account is None


def test_certificate_check_period_is_short_by_default_and_a_flag() -> None:
    """A deleted certificate Secret or a wiped CA bundle is repaired within seconds, not the
    hour it once took (the webhooks fail closed meanwhile)."""
    default = cli.build_options(cli._parser().parse_args(["run"]), {})
    assert default.certificate_check_period == 10.0
    args = cli._parser().parse_args(["run", "--webhook-cert-check-period=1m"])
    assert cli.build_options(args, {}).certificate_check_period == 60.0


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--webhook-port=70000", "argument --webhook-port: invalid port '70000' (0 to 65535)"),
        ("--webhook-port=x", "argument --webhook-port: invalid port 'x'"),
        ("--leader-elect-lease-duration=5q", "invalid duration '5q' (e.g. 15s, 1m30s, 500ms)"),
        ("--leader-elect-retry-period=0", "invalid period '0': must be longer than 0s"),
        ("--webhook-cert-check-period=-1s", "invalid duration '-1s'"),
        ("--resync-period=-1", "invalid duration '-1': not a length of time"),
        ("--devices=tpu", "Unsupported device: tpu (supported: dsa, dlb"),
        ("--metrics-bind-address=:abc", "argument --metrics-bind-address: invalid address"),
        ("--health-probe-bind-address=:99999", "--health-probe-bind-address: invalid address"),
        ("--deviceplugin-namespace=Plugins", "--deviceplugin-namespace: invalid namespace"),
        ("--operator-namespace=-ops", "--operator-namespace: invalid namespace '-ops'"),
        ("--webhook-cert-hosts=a..svc", "'a..svc' cannot name a certificate: it has an empty"),
        ("--kubeconfig=/nonexistent/kubeconfig", "no such file '/nonexistent/kubeconfig'"),
        ("--log-format=xml", "argument --log-format: invalid choice: 'xml'"),
        ("--no-such-flag", "flag provided but not defined: -no-such-flag"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    assert cli.main(["run", flag]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


@pytest.mark.parametrize("variable", ["DEVICEPLUGIN_NAMESPACE", "POD_NAMESPACE"])
def test_a_bad_namespace_in_the_environment_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "Not_A_Name")
    assert cli.main(["run"]) == 2
    assert capsys.readouterr().err.startswith(f"{variable}: invalid namespace 'Not_A_Name'")


def test_a_refused_start_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    # Nothing listens on a port just released: the API server cannot be reached.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    argv = [
        "run",
        f"--kubeconfig={kubeconfig}",
        "--metrics-bind-address=0",
        "--health-probe-bind-address=0",
        "--webhook-port=0",
    ]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert cli.main(argv) == 1
    finally:
        # What cli.main set up for a whole process.
        root.handlers[:], root.level = handlers, level
        gc.unfreeze()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert "ERROR deviceplugin_operator.cli Cannot reach the Kubernetes API server " in last
    assert f"https://127.0.0.1:{port} (kubeconfig: {kubeconfig}): Cannot connect to host" in last


def test_allowed_image_registries_are_opt_in_and_reach_the_options() -> None:
    assert cli.build_options(cli._parser().parse_args(["run"]), {}).allowed_image_registries == ()
    args = cli._parser().parse_args(
        ["run", "--allowed-image-registries", "registry.example.com:5000, docker.io/intel/"]
    )
    options = cli.build_options(args, {})
    assert options.allowed_image_registries == ("registry.example.com:5000", "docker.io/intel")


@pytest.mark.parametrize("text", ["https://registry.example.com", "a b", "docker.io/x@sha256"])
def test_bad_registries_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_registries(text)


# Go's flag syntax (the reference's): every form it accepts, with the same meaning -----------


def run_args(*argv: str) -> argparse.Namespace:
    return cli._parser().parse_args(["run", *argv])


@pytest.mark.parametrize(
    ("argv", "attribute", "value"),
    [
        # Booleans: -flag and --flag, =<every spelling Go's strconv.ParseBool takes>.
        (["-leader-elect"], "leader_elect", True),
        (["--leader-elect"], "leader_elect", True),
        (["--leader-elect=true"], "leader_elect", True),
        (["-leader-elect=false"], "leader_elect", False),
        (["--leader-elect", "--leader-elect=0"], "leader_elect", False),
        *[
            (["--metrics-secure=" + word], "metrics_secure", True)
            for word in ["1", "t", "T", "TRUE", "true", "True"]
        ],
        *[
            (["--metrics-secure", "-metrics-secure=" + word], "metrics_secure", False)
            for word in ["0", "f", "F", "FALSE", "false", "False"]
        ],
        (["--enable-http2=true"], "enable_http2", True),
        (["-enable-http2"], "enable_http2", True),
        ([], "enable_http2", False),
        # Values: -flag=v, --flag=v, -flag v, --flag v.
        (["-devices=gpu"], "devices", ["gpu"]),
        (
            ["-devices", "gpu", "--devices=qat", "--devices", "sgx"],
            "devices",
            ["gpu", "qat", "sgx"],
        ),
        (["--devices=gpu,qat"], "devices", ["gpu,qat"]),
        (["-deviceplugin-namespace=plugins"], "deviceplugin_namespace", "plugins"),
        (["-deviceplugin-namespace", "plugins"], "deviceplugin_namespace", "plugins"),
        (["--metrics-bind-address", ":8443"], "metrics_bind_address", ":8443"),
        (["-health-probe-bind-address=:9000"], "health_probe_bind_address", ":9000"),
        # The last occurrence wins, as in Go.
        (["--metrics-bind-address=:1", "-metrics-bind-address=:2"], "metrics_bind_address", ":2"),
        # klog's -v in all its forms; -vmodule accepted (and ignored, with a warning).
        (["-v=3"], "verbosity", 3),
        (["-v", "3"], "verbosity", 3),
        (["--v=2"], "verbosity", 2),
        (["--verbosity", "4"], "verbosity", 4),
        (["-vmodule=foo=2,bar=1"], "vmodule", "foo=2,bar=1"),
        (["--vmodule", "foo=2"], "vmodule", "foo=2"),
        # This operator's own flags, in the same forms.
        (["-webhook-port=0"], "webhook_port", 0),
        (["-webhook-port", "0"], "webhook_port", 0),
        (["--webhook-certs", "mounted"], "webhook_certs", "mounted"),
        (["-webhook-certs=self-managed"], "webhook_certs", "self-managed"),
        ([], "webhook_certs", "auto"),
        (["-log-format", "json"], "log_format", "json"),
        (["-leader-elect-lease-duration=30s"], "leader_elect_lease_duration", 30.0),
        # "--" ends the flags.
        (["--leader-elect", "--"], "leader_elect", True),
    ],
)
def test_every_form_of_gos_flag_syntax_is_accepted(
    argv: list[str], attribute: str, value: object
) -> None:
    assert getattr(run_args(*argv), attribute) == value


def test_a_non_boolean_flag_takes_the_next_argument_whatever_it_looks_like() -> None:
    """Go's rule: ``-flag value`` takes the next argument even when it starts with '-'."""
    assert run_args("--plugin-service-account", "-x").plugin_service_account == "-x"
    with pytest.raises(cli.UsageError, match=r"invalid duration '-1s'"):
        run_args("--resync-period", "-1s")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Go's words, measured on the reference v0.36.0 (each exits 2 there too).
        (["---leader-elect"], "bad flag syntax: ---leader-elect"),
        (["-=x"], "bad flag syntax: -=x"),
        (["--=x"], "bad flag syntax: --=x"),
        (["-bogus"], "flag provided but not defined: -bogus"),
        (["--bogus=1"], "flag provided but not defined: -bogus"),
        (["--leader"], "flag provided but not defined: -leader"),  # no GNU abbreviations
        (["--deviceplugin-namespace"], "flag needs an argument: -deviceplugin-namespace"),
        (["-kubeconfig"], "flag needs an argument: -kubeconfig"),
        (["--leader-elect=yes"], 'invalid boolean value "yes" for -leader-elect: parse error'),
        (["-metrics-secure="], 'invalid boolean value "" for -metrics-secure: parse error'),
        (["--v=x"], "argument -v/--verbosity: invalid verbosity 'x' (an integer)"),
        # Deliberately stricter than Go, which stops at the first non-flag and ignores the rest
        # (here: it would run every device, with leader election).
        (
            ["--leader-elect", "false", "--devices=gpu"],
            "unexpected argument 'false' after the boolean flag --leader-elect: write "
            "--leader-elect=false",
        ),
        (["--devices=gpu", "qat"], "unexpected argument 'qat': only flags are accepted"),
        (["--", "--devices=gpu"], "unexpected argument '--devices=gpu': only flags"),
        (["-"], "unexpected argument '-': only flags are accepted"),
    ],
)
def test_what_go_refuses_and_stray_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err


@pytest.mark.parametrize("flag", ["-h", "-help", "--help", "--h", "-help=false"])
def test_help_in_every_go_form_prints_the_usage_and_exits_0(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--leader-elect", flag, "--bogus"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: deviceplugin-operator run")
    assert "--leader-elect [BOOL]" in out


def test_the_reference_command_name_is_run_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """``intel_deviceplugin_operator`` (the reference's binary, installed in the image at its
    path) takes the flags without the ``run`` subcommand."""
    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda argv: seen.append(list(argv)) or 0)
    assert cli.reference_main(["-leader-elect", "--devices=gpu"]) == 0
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/intel_deviceplugin_operator", "-h"])
    assert cli.reference_main() == 0
    assert seen == [["run", "-leader-elect", "--devices=gpu"], ["run", "-h"]]


def test_the_reference_command_is_an_installed_script() -> None:
    import tomllib

    project = tomllib.loads(
        (pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    )["project"]
    assert project["scripts"]["intel_deviceplugin_operator"] == (
        "deviceplugin_operator.cli:reference_main"
    )


def test_vmodule_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def stopped(*_: object) -> int:
        return 0

    monkeypatch.setattr(cli, "_run", stopped)
    monkeypatch.setattr(cli, "_configure_logging", lambda *_: None)
    monkeypatch.setattr(gc, "freeze", lambda: None)
    with caplog.at_level(logging.WARNING, logger="deviceplugin_operator.cli"):
        assert cli.main(["run", "-vmodule=reconciler=4", "--webhook-port=0"]) == 0
    (record,) = [r for r in caplog.records if "vmodule" in r.getMessage()]
    assert record.getMessage().startswith("Ignored -vmodule")
    assert record.__dict__["vmodule"] == "reconciler=4"


# The webhook certificate mode ------------------------------------------------------------


def test_certificates_are_mounted_by_default_when_both_files_are_there(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    options = cli.build_options(run_args(f"--webhook-cert-dir={tmp_path}"), {})
    assert options.webhook_certs == "mounted"
    assert options.webhook_certs_choice is not None
    assert options.webhook_certs_choice.automatic
    assert f"tls.crt and tls.key found in {tmp_path}" in options.webhook_certs_choice.reason
    explicit = run_args(f"--webhook-cert-dir={tmp_path}", "--webhook-certs=self-managed")
    assert cli.build_options(explicit, {}).webhook_certs == "self-managed"


def test_certificates_are_self_managed_by_default_without_them(tmp_path: pathlib.Path) -> None:
    options = cli.build_options(run_args(f"--webhook-cert-dir={tmp_path / 'absent'}"), {})
    assert options.webhook_certs == "self-managed"
    explicit = run_args(f"--webhook-cert-dir={tmp_path}", "--webhook-certs=mounted")
    assert cli.build_options(explicit, {}).webhook_certs == "mounted"
