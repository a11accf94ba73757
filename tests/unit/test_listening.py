"""``listening.GuardedSite``: connections over a cap wait for a slot instead of being reset.

The API server opens one connection per webhook call in flight, so a pause of the operator's
process at a few hundred calls per second makes it open dozens at once; a reset there is a
failed admission. Each test runs a real TLS site (aiohttp behind ``GuardedSite``) with small
limits on this event loop, and real clients over TCP from 127.0.0.1 (and 127.0.0.2, a second
peer).
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

import polling
from deviceplugin_operator import listening
from deviceplugin_operator.admission import server
from deviceplugin_operator.controller import certificates


class Site:
    """A GuardedSite whose one route answers once ``release`` is set."""

    def __init__(self, site: listening.GuardedSite, release: asyncio.Event):
        self.site = site
        self.release = release
        self.url = f"https://127.0.0.1:{site.port}/"


@pytest.fixture
async def make_site() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def make(limits: listening.Limits) -> Site:
        release = asyncio.Event()

        async def answer(request: web.Request) -> web.Response:
            await release.wait()
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", answer)
        runner = web.AppRunner(app, **listening.runner_options(limits))
        await runner.setup()
        runners.append(runner)
        bundle = certificates.issue(
            ["127.0.0.1"], datetime.datetime.now(datetime.UTC), common_name="listening"
        )
        context = server.tls_context(server.StaticCertificate(bundle.cert, bundle.key))
        site = listening.GuardedSite(runner, "127.0.0.1", 0, ssl_context=context, limits=limits)
        await site.start()
        return Site(site, release)

    yield make
    for runner in runners:
        await runner.cleanup()


def insecure() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def session(source: str = "127.0.0.1") -> aiohttp.ClientSession:
    """A client that opens a new connection per request in flight, like the API server's."""
    connector = aiohttp.TCPConnector(
        ssl=insecure(), limit=0, force_close=True, local_addr=(source, 0)
    )
    return aiohttp.ClientSession(connector=connector)


async def get(client: aiohttp.ClientSession, url: str) -> str:
    try:
        async with client.get(url) as reply:
            return f"{reply.status} {await reply.text()}"
    except aiohttp.ClientError as error:
        return f"failed: {type(error).__name__}"


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async def probe() -> bool:
        return condition()

    await polling.eventually_async(probe, timeout=seconds, interval=0.01, what="the condition")


async def test_a_burst_over_the_caps_waits_and_is_served(make_site: object) -> None:
    limits = listening.Limits(max_connections=4, max_per_peer=2, max_waiting=16)
    site = await make_site(limits)  # type: ignore[operator]
    async with session() as client:
        calls = [asyncio.create_task(get(client, site.url)) for _ in range(7)]
        # Two in service (the peer's cap), five waiting unread.
        await until(lambda: site.site.slots.open == 2 and len(site.site.slots.waiting) == 5)
        site.release.set()
        answers = await asyncio.gather(*calls)
    assert answers == ["200 ok"] * 7
    counts = site.site.connections()
    assert (counts.reset, counts.waited) == (0, 5)
    assert site.site.slots.waiting == {}
    await until(lambda: site.site.connections().open == 0)


async def test_a_full_waiting_room_resets_at_once_and_says_so(
    make_site: object, caplog: pytest.LogCaptureFixture
) -> None:
    # One slot; one address may seat max_waiting // 2 = 1 connection.
    limits = listening.Limits(max_connections=1, max_per_peer=1, max_waiting=2)
    site = await make_site(limits)  # type: ignore[operator]
    async with session() as client:
        served = asyncio.create_task(get(client, site.url))
        await until(lambda: site.site.slots.open == 1)
        waiting = asyncio.create_task(get(client, site.url))
        await until(lambda: len(site.site.slots.waiting) == 1)
        for _ in range(2):
            refused = await asyncio.wait_for(get(client, site.url), 5)
            assert refused.startswith("failed"), refused
        assert site.site.connections() == listening.Connections(
            open=1, waiting=1, waited=1, reset=2
        )
        # One warning per interval, naming who was reset and who waits most.
        (warning,) = [r for r in caplog.records if "waiting room is full" in r.getMessage()]
        assert warning.levelname == "WARNING"
        assert (warning.peer, warning.most_waiting_from) == ("127.0.0.1", "127.0.0.1")
        assert warning.server == f"https://127.0.0.1:{site.site.port}"
        site.release.set()
        assert await served == "200 ok"
        assert await waiting == "200 ok"


async def test_a_peer_at_its_cap_waits_while_another_peer_is_served(make_site: object) -> None:
    limits = listening.Limits(max_connections=3, max_per_peer=2, max_waiting=16)
    site = await make_site(limits)  # type: ignore[operator]
    async with session("127.0.0.1") as busy, session("127.0.0.2") as other:
        first = [asyncio.create_task(get(busy, site.url)) for _ in range(3)]
        await until(lambda: site.site.slots.open == 2 and len(site.site.slots.waiting) == 1)
        second = asyncio.create_task(get(other, site.url))
        await until(lambda: site.site.slots.by_peer.get("127.0.0.2") == 1)
        assert len(site.site.slots.waiting) == 1, "the busy peer's third still waits"
        site.release.set()
        assert await asyncio.gather(*first, second) == ["200 ok"] * 4
    assert site.site.connections().reset == 0


async def test_a_waiting_connection_is_closed_at_its_head_deadline(make_site: object) -> None:
    limits = listening.Limits(max_connections=1, max_per_peer=1, max_waiting=4, head_timeout=0.5)
    site = await make_site(limits)  # type: ignore[operator]
    async with session() as client:
        served = asyncio.create_task(get(client, site.url))
        await until(lambda: site.site.slots.open == 1)
        # Connected, never admitted: the head deadline (from accepting it) closes it.
        reader, writer = await asyncio.open_connection("127.0.0.1", site.site.port)
        await until(lambda: len(site.site.slots.waiting) == 1)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert site.site.slots.waiting == {}
        writer.close()
        site.release.set()
        assert await served == "200 ok"
    await until(lambda: site.site.connections().open == 0)
