"""The load generator of scenario 4 (test_overload.py), run as its own process.

``python _flood_part2.py '<json>'`` with server, pki (admin client certificate), namespace,
seconds, configmaps, watchers, concurrency. For ``seconds`` it creates up to ``configmaps``
ConfigMaps of 1 KiB, then updates random ones, listing all of them every 20th request, while
``watchers`` watches of the namespace receive every event. Prints one JSON line of figures.
"""

from __future__ import annotations

import asyncio
import collections
import json
import pathlib
import random
import ssl
import sys
import time
from typing import Any

import aiohttp


async def flood(config: dict[str, Any]) -> dict[str, Any]:
    pki = pathlib.Path(config["pki"])
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    base = f"{config['server']}/api/v1/namespaces/{config['namespace']}/configmaps"
    deadline = time.monotonic() + config["seconds"]
    statuses: collections.Counter[int] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    events = [0]
    created: list[str] = []
    next_index = [0]
    payload = "x" * 1024
    connector = aiohttp.TCPConnector(ssl=context, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def watch() -> None:
            while time.monotonic() < deadline:
                try:
                    async with session.get(
                        base,
                        params={"watch": "1", "timeoutSeconds": str(int(config["seconds"]) + 5)},
                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                    ) as reply:
                        async for _line in reply.content:
                            events[0] += 1
                            if time.monotonic() >= deadline:
                                return
                except (aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.2)

        async def work() -> None:
            while time.monotonic() < deadline:
                roll = random.random()
                try:
                    if next_index[0] < config["configmaps"] and roll < 0.9:
                        name = f"flood-{next_index[0]}"
                        next_index[0] += 1
                        body = {"metadata": {"name": name}, "data": {"x": payload}}
                        async with session.post(base, json=body) as reply:
                            await reply.read()
                            statuses[reply.status] += 1
                            kinds["create"] += 1
                            if reply.status == 201:
                                created.append(name)
                    elif roll < 0.05 or not created:
                        async with session.get(base) as reply:
                            await reply.read()
                            statuses[reply.status] += 1
                            kinds["list"] += 1
                    else:
                        name = random.choice(created)
                        patch = {"data": {"x": payload, "n": str(random.random())}}
                        async with session.patch(
                            f"{base}/{name}",
                            data=json.dumps(patch),
                            headers={"Content-Type": "application/merge-patch+json"},
                        ) as reply:
                            await reply.read()
                            statuses[reply.status] += 1
                            kinds["update"] += 1
                except (aiohttp.ClientError, OSError):
                    statuses[0] += 1

        started = time.monotonic()
        watchers = [asyncio.create_task(watch()) for _ in range(config["watchers"])]
        await asyncio.gather(*(work() for _ in range(config["concurrency"])))
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        elapsed = time.monotonic() - started
    sent = sum(kinds.values())
    return {
        "requests": sent,
        "requests_per_s": round(sent / elapsed, 1),
        "by_verb": dict(kinds),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "configmaps": len(created),
        "watchers": config["watchers"],
        "watch_events_received": events[0],
        "seconds": round(elapsed, 1),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(flood(json.loads(sys.argv[1])))))
