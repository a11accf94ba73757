"""The Helm chart installed, upgraded, tested and uninstalled on the real node, hooks included.

helm 4 is built from its Go module by tools/helm.py (cached); the chart runs the image built from
this tree (``--set image...``, ``pullPolicy: Never``), and so do its hooks: the pre-upgrade Job
that applies the operator's CRDs, the post-install Job that waits for the admission webhooks,
the ``helm test`` Pod (a server-side dry-run create through them) and the post-delete Job that
removes the operator's run-time Secret and Lease.
"""

from __future__ import annotations

import copy
import pathlib
import subprocess

import pytest
import yaml

from e2e import support
from e2e.support import E2eCluster

pytestmark = pytest.mark.timeout(600)

CHART = support.ROOT / "charts" / "intel-deviceplugin-operator"
RELEASE = "intel-deviceplugin-operator"
LONG_NAMESPACE = "e2e-release-namespace-of-the-longest-length-a-label-may-have-63"
assert len(LONG_NAMESPACE) == 63


def image_values() -> list[str]:
    name, tag = support.incluster.split_image(support.incluster.IMAGE)
    return [
        f"--set=image.repository={name}",
        f"--set=image.tag={tag}",
        "--set=image.pullPolicy=Never",
    ]


def run_helm(
    e2e: E2eCluster, helm: pathlib.Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(helm), f"--kubeconfig={e2e.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if check:
        assert completed.returncode == 0, f"helm {' '.join(args)}: {completed.stderr}"
    return completed


def crds() -> set[support.Key]:
    """The chart's CRDs: ``crds/<group>_<plural>.yaml`` is ``<plural>.<group>``."""
    keys = set()
    for path in (CHART / "crds").glob("*.yaml"):
        group, _, plural = path.stem.partition("_")
        keys.add(("CustomResourceDefinition", "", f"{plural}.{group}"))
    return keys


def created_namespace(namespace: str) -> set[support.Key]:
    """What Helm documents it keeps besides crds/: a namespace made by --create-namespace is no
    part of the release, so it stays, with what Kubernetes puts in every namespace. What the
    operator made in it at run time (its webhook Secret, the Lease) the post-delete hook
    removed."""
    return {
        ("Namespace", "", namespace),
        ("ConfigMap", namespace, "kube-root-ca.crt"),
        ("ServiceAccount", namespace, "default"),
    }


GPU_CRD = "gpudeviceplugins.deviceplugin.intel.com"


def install_older_gpu_crd(e2e: E2eCluster) -> str:
    """The GPU CRD as an older chart's crds/ left it, applied by Helm (field manager "helm"):
    one spec field fewer. Returns the field."""
    crd = yaml.safe_load(
        (CHART / "crds" / "deviceplugin.intel.com_gpudeviceplugins.yaml").read_text()
    )
    old = copy.deepcopy(crd)
    spec = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    field = sorted(spec["properties"])[-1]
    del spec["properties"][field]
    e2e.out(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=helm",
        "-f",
        "-",
        input=yaml.safe_dump(old),
    )
    return field


def stored_gpu_fields(e2e: E2eCluster) -> set[str]:
    crd = e2e.get("crd", GPU_CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return set(spec["properties"])


def admitted_at_once(e2e: E2eCluster) -> None:
    """Right after ``helm install`` returned, a resource is admitted at the first attempt (the
    post-install hook waited for the webhooks; reference #1550, #1658)."""
    completed = e2e.run(
        "create", "--dry-run=server", "-o", "json", "-f", str(support.sample_file("gpu"))
    )
    assert completed.returncode == 0, completed.stderr


def webhook_kinds(e2e: E2eCluster, namespace: str) -> set[str]:
    found = e2e.get(
        "validatingwebhookconfiguration", support.CONFIGURATIONS["validatingwebhookconfiguration"]
    )
    assert found["webhooks"][0]["clientConfig"]["service"]["namespace"] == namespace
    return {hook["name"][1:4] for hook in found["webhooks"]}


def check_runs(e2e: E2eCluster, namespace: str, replicas: int = 2) -> None:
    e2e.wait_operator(namespace=namespace, replicas=replicas)
    e2e.assert_built_image(namespace)


def converge_gpu_sample(e2e: E2eCluster) -> None:
    e2e.apply_until_admitted("-f", str(support.sample_file("gpu")))
    support.assert_bad_image_denied(e2e, "gpu")
    e2e.wait_samples([support.sample("gpu")])


def left_after_uninstall(e2e: E2eCluster) -> set[support.Key]:
    return set(e2e.leftovers())


def test_install_upgrade_test_uninstall_with_default_values(
    empty: E2eCluster, helm: pathlib.Path
) -> None:
    e2e = empty
    namespace = support.NAMESPACE
    run_helm(
        e2e,
        helm,
        "install",
        RELEASE,
        str(CHART),
        f"--namespace={namespace}",
        "--create-namespace",
        "--set=upgradeCRDs=false",
        *image_values(),
    )
    admitted_at_once(e2e)
    check_runs(e2e, namespace)
    assert webhook_kinds(e2e, namespace) == {"dlb", "dsa", "fpg", "gpu", "iaa", "npu", "qat", "sgx"}
    converge_gpu_sample(e2e)

    # The release's GPU CRD is an older chart's (one field fewer). An upgrade to other values
    # takes effect (one replica, no disruption budget then, two kinds only), but without the
    # CRD hook the field stays missing: Helm never upgrades crds/.
    field = install_older_gpu_crd(e2e)
    upgrade = ["upgrade", RELEASE, str(CHART), f"--namespace={namespace}", *image_values()]
    run_helm(
        e2e,
        helm,
        *upgrade,
        "--set=replicas=1",
        "--set=devices={gpu,qat}",
        "--set=upgradeCRDs=false",
    )
    check_runs(e2e, namespace, replicas=1)
    assert field not in stored_gpu_fields(e2e)
    # With it (the default), the pre-upgrade hook applies the operator's CRDs: the field is back.
    run_helm(e2e, helm, *upgrade, "--set=replicas=1", "--set=devices={gpu,qat}")
    assert field in stored_gpu_fields(e2e)
    assert e2e.get("job", "intel-deviceplugins-crd-upgrade", "-n", namespace) is None, "deleted"
    deployment = e2e.get("deployment", support.incluster.DEPLOYMENT, "-n", namespace)
    assert "--devices=gpu,qat" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert e2e.get("pdb", support.incluster.DEPLOYMENT, "-n", namespace) is None
    assert webhook_kinds(e2e, namespace) == {"gpu", "qat"}
    e2e.wait_samples([support.sample("gpu")])

    completed = run_helm(e2e, helm, "test", RELEASE, f"--namespace={namespace}")
    assert "TEST SUITE" in completed.stdout, completed.stdout
    assert "intel-deviceplugins-test-admission" in completed.stdout, completed.stdout
    assert "Succeeded" in completed.stdout, completed.stdout

    # What Helm documents it keeps: the CRDs of crds/; and what the operator made at run time
    # in the namespace, which --create-namespace does not put in the release.
    e2e.out("delete", "-f", str(support.sample_file("gpu")))
    run_helm(e2e, helm, "uninstall", RELEASE, f"--namespace={namespace}", "--wait")
    expected = crds() | created_namespace(namespace)
    support.eventually(
        lambda: left_after_uninstall(e2e) <= expected,
        timeout=90,
        what="helm uninstall to remove the release",
    )
    assert left_after_uninstall(e2e) == expected


def test_long_release_namespace(empty: E2eCluster, helm: pathlib.Path) -> None:
    """A 63-character namespace: the webhook Service's DNS names are longer than a
    certificate's 64-character common name may be."""
    e2e = empty
    run_helm(
        e2e,
        helm,
        "install",
        RELEASE,
        str(CHART),
        f"--namespace={LONG_NAMESPACE}",
        "--create-namespace",
        *image_values(),
    )
    check_runs(e2e, LONG_NAMESPACE)
    assert webhook_kinds(e2e, LONG_NAMESPACE) >= {"gpu"}
    converge_gpu_sample_in(e2e, LONG_NAMESPACE)
    e2e.out("delete", "-f", str(support.sample_file("gpu")))
    run_helm(e2e, helm, "uninstall", RELEASE, f"--namespace={LONG_NAMESPACE}", "--wait")
    expected = crds() | created_namespace(LONG_NAMESPACE)
    support.eventually(
        lambda: left_after_uninstall(e2e) <= expected,
        timeout=90,
        what="helm uninstall to remove the release",
    )
    assert left_after_uninstall(e2e) == expected


def test_rendered_chart_with_its_namespace_applies_and_deletes_cleanly(
    empty: E2eCluster, helm: pathlib.Path
) -> None:
    """``namespace.create=true`` is for ``helm template | kubectl apply`` (GitOps): the
    Namespace comes first, with its Pod Security labels. (``helm install`` stores its release
    record in the namespace before any template, so there it must exist already.)"""
    e2e = empty
    namespace = "e2e-rendered"
    rendered = run_helm(
        e2e,
        helm,
        "template",
        RELEASE,
        str(CHART),
        f"--namespace={namespace}",
        "--include-crds",
        "--no-hooks",  # hooks are Helm's to run; kubectl would apply the Jobs as plain objects
        "--set=namespace.create=true",
        *image_values(),
    ).stdout
    e2e.out("apply", "--server-side", "-f", "-", input=rendered)
    created = e2e.get("namespace", namespace)
    assert created["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    check_runs(e2e, namespace)
    converge_gpu_sample_in(e2e, namespace)
    e2e.out("delete", "-f", str(support.sample_file("gpu")))
    e2e.out("delete", "--wait=false", "-f", "-", input=rendered)
    support.eventually(
        lambda: not left_after_uninstall(e2e),
        timeout=180,
        what="kubectl delete of the rendered chart to remove everything",
    )


def converge_gpu_sample_in(e2e: E2eCluster, namespace: str) -> None:
    converge_gpu_sample(e2e)
    daemonset = e2e.get(
        "daemonset", support.daemonset("gpu", support.sample("gpu")[1]), "-n", namespace
    )
    assert daemonset is not None, f"the plugin DaemonSet is not in {namespace}"
