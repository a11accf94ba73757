"""``localcluster build|up|down|status``: the command behind ``make cluster`` / ``cluster-down``."""

from __future__ import annotations

import argparse
import pathlib
import sys

from localcluster import binaries, cluster, errors, nodes, processes


def _say(message: str) -> None:
    print(f"[localcluster] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__)
    parser.add_argument(
        "--dir",
        type=pathlib.Path,
        default=pathlib.Path(".cluster"),
        help="state directory (default: .cluster)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build or reuse the cached control-plane binaries")
    up = commands.add_parser("up", help="start (or reuse) the control plane with fake nodes")
    up.add_argument(
        "--nodes", type=int, default=3, help="fake nodes with every Intel feature label (default 3)"
    )
    up.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="an extra node with its own labels; repeatable",
    )
    commands.add_parser("down", help="stop every process started and remove the state")
    commands.add_parser("status", help="exit 0 when the cluster is healthy")
    args = parser.parse_args(argv)

    local = cluster.Cluster(args.dir, echo=_say)
    try:
        if args.command == "build":
            found = binaries.ensure_binaries()
            _say(f"Binaries in {found.kube_apiserver.parent.parent}")
        elif args.command == "up":
            specs = nodes.intel_nodes(args.nodes) + [nodes.parse_spec(s) for s in args.node]
            local.up(specs)
            _say(f"{len(specs)} fake node(s) Ready; logs in {local.logs}")
            print(f"export KUBECONFIG={local.kubeconfig}")
        elif args.command == "down":
            local.down()
            _say("Stopped the local cluster")
        elif args.command == "status":
            healthy = local.healthy()
            _say("Healthy" if healthy else "Not running")
            state = local.state()
            for component, pid in (state.pids if state else {}).items():
                print(f"{component:<24} pid {pid:<8} rss {processes.rss_mib(pid):8.1f} MiB")
            return 0 if healthy else 1
    except errors.ClusterError as error:
        _say(f"Error: {error}")
        return 1
    except KeyboardInterrupt:
        _say("Interrupted; stopped what was started")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
