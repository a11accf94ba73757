"""A real local Kubernetes control plane for tests, demo and benchmarks.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, built from their Go
modules (``binaries``), started as local processes on 127.0.0.1 (``cluster``), with fake
nodes labelled like Intel hardware (``nodes``). Used by ``make cluster``, the pytest session
fixture, ``make demo`` and the benchmarks.
"""
