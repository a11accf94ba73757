"""Code run in a new Python interpreter, for what the test process cannot show any more (it has
long imported everything): what an import loads, how a library is loaded the first time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def run_json(code: str) -> object:
    """What ``code`` (indented as in the test, dedented here) prints as JSON; it must exit 0."""
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)
