"""A real local Kubernetes control plane for tests, demo and benchmarks.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, built from their Go
modules (``binaries``), started as local processes on 127.0.0.1 (``cluster``), with fake
nodes labelled like Intel hardware (``nodes``). Used by ``make cluster``, the pytest session
fixture, ``make demo`` and the benchmarks.

Opt-in (``Cluster(real_node=True)``, ``localcluster up --real-node``): the same cluster inside
network and mount namespaces of its own (``owner``) next to one real kubelet node with
containerd, kube-proxy and a CNI bridge (``realnode``), fed with one-layer images of static
programs (``images``, ``programs/``) or any docker-archive (``Cluster.load_image``).
"""
