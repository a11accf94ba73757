"""``localcluster build|up|down|status|load-image``: the command behind ``make cluster`` /
``cluster-down``."""

from __future__ import annotations

import argparse
import pathlib
import sys

from localcluster import binaries, cluster, errors, nodes, processes, realnode


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
    up.add_argument(
        "--real-node",
        action="store_true",
        help="also run a real kubelet node (containerd, kube-proxy, CNI bridge) in network "
        "and mount namespaces of the cluster's own; needs root, containerd, runc, CNI plugins",
    )
    up.add_argument(
        "--real-node-name",
        default=realnode.DEFAULT_NODE_NAME,
        help=f"name of the real node (default {realnode.DEFAULT_NODE_NAME})",
    )
    up.add_argument(
        "--real-node-labels",
        default="",
        metavar="KEY=VALUE,...",
        help="extra labels of the real node, e.g. intel.feature.node.kubernetes.io/gpu=true "
        "(none of the Intel feature labels by default)",
    )
    commands.add_parser("down", help="stop every process started and remove the state")
    commands.add_parser("status", help="exit 0 when the cluster is healthy")
    load = commands.add_parser(
        "load-image", help="import a docker-archive into the real node's containerd"
    )
    load.add_argument("archive", type=pathlib.Path, help="e.g. the output of podman save")
    args = parser.parse_args(argv)

    if args.command == "up" and args.real_node:
        local = cluster.Cluster(
            args.dir,
            echo=_say,
            real_node=True,
            real_node_name=args.real_node_name,
            real_node_labels=nodes.parse_labels(args.real_node_labels),
        )
    else:
        local = cluster.Cluster(args.dir, echo=_say)
    try:
        if args.command == "build":
            found = binaries.ensure_binaries()
            _say(f"Binaries in {found.kube_apiserver.parent.parent}")
        elif args.command == "up":
            specs = nodes.intel_nodes(args.nodes) + [nodes.parse_spec(s) for s in args.node]
            local.up(specs)
            _say(f"{len(specs)} fake node(s) Ready; logs in {local.logs}")
            if local.node_name is not None:
                _say(f"Real node {local.node_name} ({local.node_ip}) Ready")
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
            if state is not None and state.node is not None:
                print(f"real node {state.node.name} {state.node.ip} owner pid {local.owner_pid}")
            return 0 if healthy else 1
        elif args.command == "load-image":
            for reference in local.load_image(args.archive):
                _say(f"Loaded {reference}")
    except errors.ClusterError as error:
        _say(f"Error: {error}")
        return 1
    except KeyboardInterrupt:
        _say("Interrupted; stopped what was started")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
