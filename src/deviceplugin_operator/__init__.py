"""Kubernetes operator that manages the Intel device plugins as DaemonSets."""
