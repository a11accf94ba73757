"""Semantic containment of a rendered DaemonSet in a live (defaulted) one."""

from typing import Any

from deviceplugin_operator.reconcile import drift


def _desired() -> dict[str, Any]:
    return drift.with_rendered_lists(
        {
            "metadata": {"name": "ds", "labels": {"app": "x"}},
            "spec": {
                "selector": {"matchLabels": {"app": "x"}},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/arch": "amd64"},
                        "containers": [{"name": "c", "image": "i:1", "args": ["-v", "0"]}],
                        "volumes": [{"name": "dev", "hostPath": {"path": "/dev"}}],
                    },
                },
            },
        }
    )


def _live() -> dict[str, Any]:
    """What the apiserver stores for ``_desired()``: defaults added, empty lists dropped."""
    return {
        "metadata": {
            "name": "ds",
            "labels": {"app": "x", "added-by-user": "1"},
            "resourceVersion": "7",
            "annotations": {"deprecated.daemonset.template.generation": "1"},
        },
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/arch": "amd64"},
                    "containers": [
                        {
                            "name": "c",
                            "image": "i:1",
                            "args": ["-v", "0"],
                            "terminationMessagePolicy": "File",
                            "imagePullPolicy": "IfNotPresent",
                        }
                    ],
                    "volumes": [{"name": "dev", "hostPath": {"path": "/dev", "type": ""}}],
                    "dnsPolicy": "ClusterFirst",
                    "priorityClassName": "set-by-hand",
                },
            },
        },
        "status": {"numberReady": 3},
    }


def test_defaulted_live_object_matches_its_rendering() -> None:
    assert drift.matches(_desired(), _live())


def test_changed_rendered_scalar_is_drift() -> None:
    live = _live()
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "other:2"
    assert not drift.matches(_desired(), live)


def test_extra_list_element_is_drift() -> None:
    live = _live()
    live["spec"]["template"]["spec"]["initContainers"] = [{"name": "by-hand", "image": "x"}]
    assert not drift.matches(_desired(), live)
    live["spec"]["template"]["spec"]["tolerations"] = []
    del live["spec"]["template"]["spec"]["initContainers"]
    assert drift.matches(_desired(), live)


def test_extra_key_in_exact_map_is_drift_but_not_elsewhere() -> None:
    live = _live()
    live["spec"]["template"]["spec"]["nodeSelector"]["extra"] = "1"
    assert not drift.matches(_desired(), live)
    assert drift.matches(_desired(), _live())  # extra metadata label is fine


def test_overlay_keeps_unrendered_fields_and_replaces_rendered_ones() -> None:
    live = _live()
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "other:2"
    live["spec"]["template"]["spec"]["nodeSelector"]["extra"] = "1"
    live["spec"]["template"]["spec"]["initContainers"] = [{"name": "by-hand", "image": "x"}]
    written = drift.overlay(live, _desired())
    spec = written["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == "i:1"
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert spec["initContainers"] == []
    assert spec["priorityClassName"] == "set-by-hand"
    assert written["metadata"]["resourceVersion"] == "7"
    assert written["metadata"]["labels"]["added-by-user"] == "1"
    assert drift.matches(_desired(), written)
