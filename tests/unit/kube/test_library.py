"""kubernetes-asyncio as the client loads it: its kubeconfig loader reads with libyaml and
gives the same configuration as PyYAML's pure-Python reader."""

from __future__ import annotations

import base64
import datetime
import pathlib

import yaml

import fresh_interpreter
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.kube import library

BUNDLE = certificates.issue(["127.0.0.1"], datetime.datetime.now(datetime.UTC))
CA, CERT, KEY = (
    base64.b64encode(pem).decode() for pem in (BUNDLE.ca_cert, BUNDLE.cert, BUNDLE.key)
)

KUBECONFIG = f"""\
apiVersion: v1
kind: Config
current-context: "admin@local"
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: {CA}
    tls-server-name: kubernetes.default.svc
- name: 'other'
  cluster: {{server: "https://10.0.0.1:443", insecure-skip-tls-verify: true}}
contexts:
- name: admin@local
  context: {{cluster: local, user: admin, namespace: ops}}
users:
- name: admin
  user:
    client-certificate-data: {CERT}
    client-key-data: {KEY}
- name: exec
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: get-token
      args: ["--cluster", local, '--ttl=1h']
      env: null
      interactiveMode: Never
preferences: {{}}
"""


def test_the_fast_reader_reads_a_kubeconfig_as_pyyaml_does() -> None:
    assert library._LibyamlSafe.safe_load(KUBECONFIG) == yaml.safe_load(KUBECONFIG)


def test_the_client_loads_a_kubeconfig_through_the_fast_reader(tmp_path: pathlib.Path) -> None:
    """In a fresh interpreter (where the client loads the library its own way), the loader's
    ``yaml`` is the fast reader and a kubeconfig gives its server, TLS name and client
    certificate."""
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    code = f"""
        import asyncio, json
        from deviceplugin_operator.kube import client, library
        from kubernetes_asyncio.config import kube_config

        async def main():
            kube = await client.connect({str(path)!r})
            try:
                configuration = kube._configuration
                with open(configuration.cert_file, "rb") as cert:
                    return [
                        kube_config.yaml is library._LibyamlSafe,
                        configuration.host,
                        configuration.tls_server_name,
                        cert.read().decode(),
                    ]
            finally:
                await kube.close()

        print(json.dumps(asyncio.run(main())))
    """
    assert fresh_interpreter.run_json(code) == [
        True,
        "https://127.0.0.1:6443",
        "kubernetes.default.svc",
        BUNDLE.cert.decode(),
    ]
