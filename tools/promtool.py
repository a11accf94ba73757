"""Build promtool from the Prometheus Go module once, then reuse it; print the binary's path.

    python tools/promtool.py   # ~/.cache/deviceplugin-operator/bin/promtool-v0.316.0/promtool

The monitoring tests run ``promtool check rules`` and ``promtool test rules`` on the shipped
PrometheusRule (deployments/operator/monitoring/). Prometheus tags its Go module v0.3XX.Y for
release 3.XX.Y; the version printed by ``promtool --version`` is set to that release.
"""

from __future__ import annotations

import sys

import gotools

PROMETHEUS_VERSION = "v0.316.0"
MODULE = "github.com/prometheus/prometheus"


def _release() -> str:
    """v0.316.0 → 3.16.0 (Prometheus's own numbering of the same tag)."""
    minor, patch = PROMETHEUS_VERSION.removeprefix("v0.").split(".")
    return f"{int(minor) // 100}.{int(minor) % 100}.{patch}"


def _ldflags() -> list[str]:
    return ["-w -s", f"-X github.com/prometheus/common/version.Version={_release()}"]


# remove_all_sd (Prometheus' own build tag) leaves out the cloud service discoveries (AWS, Azure,
# GCE …), most of the build; checking and testing rules never needs them.
TOOL = gotools.Released(
    "promtool", f"{MODULE}/cmd/promtool", PROMETHEUS_VERSION, _ldflags, tags=("remove_all_sd",)
)


ensure = TOOL.ensure


if __name__ == "__main__":
    sys.exit(gotools.main(TOOL))
