"""No log call passes an ``extra`` key that ``logging.LogRecord`` already has.

``logging`` raises KeyError for such a key (``name``, ``msg``, ``args``, ``module``, ...) when the
record is made, i.e. only when the level is enabled: the admission server's "Denied admission
request" with ``extra={"name": ...}`` raised on every denial in a running operator (INFO on),
so the API server got an HTTP 400 and showed "the server rejected our request for an unknown
reason" instead of the denial's message; tests with INFO off never saw it.
"""

from __future__ import annotations

import ast
import logging
import pathlib

SOURCE = pathlib.Path(__file__).resolve().parents[2] / "src" / "deviceplugin_operator"
RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def test_no_extra_key_overwrites_a_log_record_attribute() -> None:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg != "extra" or not isinstance(keyword.value, ast.Dict):
                    continue
                for key in keyword.value.keys:
                    if isinstance(key, ast.Constant) and key.value in RESERVED:
                        found.append(f"{path.relative_to(SOURCE)}:{node.lineno}: {key.value}")
    assert found == []


async def test_a_denial_is_answered_with_its_message_when_info_is_logged() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from deviceplugin_operator import devices
    from deviceplugin_operator.admission import server

    gpu = devices.KINDS["gpu"]
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": gpu.resource.group, "version": "v1", "kind": gpu.kind},
            "resource": {"group": gpu.resource.group, "version": "v1", "resource": gpu.plural},
            "operation": "CREATE",
            "name": "denied",
            "object": {"metadata": {"name": "denied"}, "spec": {"image": "x/y:1"}},
        },
    }
    logging.getLogger("deviceplugin_operator").setLevel(logging.INFO)
    try:
        async with TestClient(TestServer(server.AdmissionServer([gpu]).app())) as http:
            reply = await http.post(gpu.validate_path, json=review)
            assert reply.status == 200
            answer = (await reply.json())["response"]
    finally:
        logging.getLogger("deviceplugin_operator").setLevel(logging.NOTSET)
    assert answer["allowed"] is False
    assert answer["status"]["message"].startswith("invalid resource:")
