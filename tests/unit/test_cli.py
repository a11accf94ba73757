"""Flags and environment of ``deviceplugin-operator run``."""

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


def test_main_exits_1_with_one_line_for_a_bad_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--devices", "gpu,gpu"]) == 1
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
