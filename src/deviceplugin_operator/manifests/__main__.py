"""``python -m deviceplugin_operator.manifests write|check DIR`` (``make generate`` / ``verify``).

``write`` regenerates the files under DIR (normally deployments/operator); ``check`` prints a
diff and exits 1 when the checked-in files are not what the code generates.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from deviceplugin_operator.manifests import generation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deviceplugin_operator.manifests")
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument("directory", type=pathlib.Path, help="e.g. deployments/operator")
    args = parser.parse_args(argv)

    if args.action == "write":
        for path in generation.write(args.directory):
            print(f"wrote {args.directory / path}")
        return 0
    diff = generation.differences(args.directory)
    if diff:
        sys.stdout.write(diff)
        print(f"Generated manifests under {args.directory} are stale: run make generate")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
