"""What the support bundle scrubs: env values, token-like annotations, tokens in text."""

from __future__ import annotations

from deviceplugin_operator.inspection import redaction

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXBhcnQ"


def test_env_values_are_redacted_except_the_operators_own() -> None:
    pod = {
        "env": [
            {"name": "API_PASSWORD", "value": "hunter2-abc"},
            {"name": "DEVICEPLUGIN_NAMESPACE", "value": "plugins"},
            {"name": "INTEL_GPU_PLUGIN_SHA", "value": "intel/intel-gpu-plugin@sha256:0"},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ]
    }
    env = redaction.Redactor().obj(pod)["env"]
    assert [v.get("value") for v in env] == [
        "<redacted>",
        "plugins",
        "intel/intel-gpu-plugin@sha256:0",
        None,
    ]
    assert env[3]["valueFrom"] == pod["env"][3]["valueFrom"]


def test_annotations_named_or_looking_like_tokens_and_last_applied() -> None:
    meta = {
        "annotations": {
            "example.com/api-token": "short",
            "example.com/session": "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg",
            "kubectl.kubernetes.io/last-applied-configuration": '{"env": "secret"}',
            "deprecated.daemonset.template.generation": "1",
            "note": "a plain sentence with words",
        },
        "managedFields": [{"manager": "kubectl"}],
    }
    cleaned = redaction.Redactor().obj({"metadata": meta})["metadata"]
    assert cleaned == {
        "annotations": {
            "example.com/api-token": "<redacted>",
            "example.com/session": "<redacted>",
            "deprecated.daemonset.template.generation": "1",
            "note": "a plain sentence with words",
        }
    }


def test_text_loses_tokens_and_known_secrets() -> None:
    redactor = redaction.Redactor(["literal-secret-value"])
    text = (
        f"token {JWT}; Authorization: Bearer abcdefgh12345678; password=topsecret1; "
        "found literal-secret-value; image intel/intel-gpu-plugin:0.36.0"
    )
    scrubbed = redactor.text(text)
    for secret in (JWT, "abcdefgh12345678", "topsecret1", "literal-secret-value"):
        assert secret not in scrubbed
    assert "intel/intel-gpu-plugin:0.36.0" in scrubbed


def test_kubeconfig_credentials() -> None:
    config = {
        "users": [
            {"name": "a", "user": {"token": "tok-1", "client-key-data": "a2V5"}},
            {"name": "b", "user": {"auth-provider": {"config": {"id-token": "tok-2"}}}},
        ]
    }
    assert redaction.kubeconfig_secrets(config) == ["tok-1", "a2V5", "tok-2"]
