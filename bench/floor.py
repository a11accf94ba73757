"""The floor: the least a client must do to turn GpuDevicePlugins into DaemonSets.

Raw aiohttp, no framework, no cache beyond two dicts: one watch on GpuDevicePlugins (create
or patch the DaemonSet when a spec generation is new) and one on the plugin DaemonSets
(recreate one that was deleted while its resource exists). No status, no drift checks, no
retries beyond re-watching. Run: python bench/floor.py --kubeconfig K --namespace NS
"""

import argparse
import asyncio
import base64
import json
import os
import ssl
import sys
import tempfile

import aiohttp
import yaml

API = "/apis/deviceplugin.intel.com/v1/gpudeviceplugins"


def ssl_context(config):
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    with tempfile.NamedTemporaryFile("wb", delete=False) as pem:
        pem.write(
            base64.b64decode(user["client-certificate-data"])
            + b"\n"
            + base64.b64decode(user["client-key-data"])
        )
    context.load_cert_chain(pem.name)
    os.unlink(pem.name)
    return cluster["server"], context


def daemonset(cr, namespace):
    spec, name = cr.get("spec") or {}, f"intel-gpu-plugin-{cr['metadata']['name']}"
    args = ["-v", str(spec.get("logLevel", 0)), "-shared-dev-num", str(spec.get("sharedDevNum", 1))]
    labels = {"app": "intel-gpu-plugin"}
    owner = {
        "apiVersion": cr["apiVersion"],
        "kind": cr["kind"],
        "name": cr["metadata"]["name"],
        "uid": cr["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    container = {
        "name": "intel-gpu-plugin",
        "image": spec.get("image", "intel/intel-gpu-plugin:0.36.0"),
        "args": args,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": spec.get("nodeSelector") or {"kubernetes.io/arch": "amd64"},
                    "containers": [container],
                },
            },
        },
    }


async def main(args, config):
    server, context = ssl_context(config)
    ds_api = f"/apis/apps/v1/namespaces/{args.namespace}/daemonsets"
    crs, applied = {}, {}  # CR name → object; DaemonSet name → generation it was written for
    async with aiohttp.ClientSession(
        server,
        connector=aiohttp.TCPConnector(ssl=context),
        headers={"User-Agent": "deviceplugin-floor"},
    ) as http:

        async def apply(cr):
            body = daemonset(cr, args.namespace)
            name, generation = body["metadata"]["name"], cr["metadata"].get("generation")
            if name in applied:
                patch = {"spec": {"template": body["spec"]["template"]}}
                async with http.patch(
                    f"{ds_api}/{name}",
                    json=patch,
                    headers={"Content-Type": "application/strategic-merge-patch+json"},
                ) as r:
                    if r.status != 404:
                        applied[name] = generation
                        return
            async with http.post(ds_api, json=body) as r:
                applied[name] = generation if r.status in (201, 409) else None

        async def watch(path, handle, started):
            while True:
                async with http.get(
                    path,
                    params={"watch": "1", "timeoutSeconds": "3600"},
                    timeout=aiohttp.ClientTimeout(total=None),
                ) as stream:
                    started.set()
                    async for line in stream.content:
                        event = json.loads(line)
                        await handle(event["type"], event["object"])

        async def on_cr(kind, cr):
            name = f"intel-gpu-plugin-{cr['metadata']['name']}"
            if kind == "DELETED":
                crs.pop(cr["metadata"]["name"], None)
                applied.pop(name, None)
            elif applied.get(name, -1) != cr["metadata"].get("generation"):
                crs[cr["metadata"]["name"]] = cr
                await apply(cr)

        async def on_ds(kind, ds):
            cr = crs.get(ds["metadata"]["name"].removeprefix("intel-gpu-plugin-"))
            if kind == "ADDED":
                applied.setdefault(ds["metadata"]["name"], None)
            elif kind == "DELETED" and cr is not None:
                applied.pop(ds["metadata"]["name"], None)
                await apply(cr)

        ready = [asyncio.Event(), asyncio.Event()]
        tasks = [
            asyncio.create_task(
                watch(f"{ds_api}?labelSelector=app%3Dintel-gpu-plugin", on_ds, ready[0])
            ),
            asyncio.create_task(watch(API, on_cr, ready[1])),
        ]
        await asyncio.gather(*(event.wait() for event in ready))
        print("floor: watching", flush=True)
        await asyncio.gather(*tasks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument(
        "--namespace", default=os.environ.get("DEVICEPLUGIN_NAMESPACE", "kube-system")
    )
    try:
        args = parser.parse_args()
        with open(args.kubeconfig) as kubeconfig:
            config = yaml.safe_load(kubeconfig)
        asyncio.run(main(args, config))
    except KeyboardInterrupt:
        sys.exit(0)
