"""Build the OLM bundle validator once, then reuse it; print the binary's path.

    python tools/bundle_validate.py   # ~/.cache/deviceplugin-operator/bin/bundle-validate-<hash>/…

The validator is our program in tools/programs/bundle-validate: the validators of
``operator-sdk bundle validate`` (github.com/operator-framework/api), which operator-sdk's own
module cannot provide here (the Go module proxy does not serve it). Built by tools/gotools.py,
keyed by its source hash; ``make test`` builds it before the tests (tests/bundle) so that the
first build, several minutes cold, is not counted in a test's timeout.
"""

from __future__ import annotations

import sys

import gotools

TOOL = gotools.Program("bundle-validate")

ensure = TOOL.ensure


if __name__ == "__main__":
    sys.exit(gotools.main(TOOL))
