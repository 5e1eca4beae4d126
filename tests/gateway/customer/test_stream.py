"""What a customer's live stream carries, read from the raw WebSocket frames: the van only on
its way to that customer's stop (stops served out of order, the van standing at another
stop or passing another customer's door), and the stream closing when its link stops working.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import wsproto
from trio_websocket import WebSocketConnection, open_websocket_url
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Request,
    TextMessage,
)

from gateway.http.customer import CLOSE_LINK_INVALID
from tests.gateway.conftest import (
    GatewayHandle,
    gateway_settings,
    handshake,
    start_gateway,
    wait_tracked,
)
from tests.gateway.customer.test_links import issue, two_stop_route
from tests.gateway.live.test_routes import M_PER_DEG_LAT, STOP

M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(STOP[0]))
VAN = "van-ooo"
ROUTE = "OOO-R"
# Planned order S1, S2, S3: S2 3 km north of S1, S3 3 km south of it. The van serves S1,
# then S3, then S2.
STOPS = {"S1": 0.0, "S2": 3000.0, "S3": -3000.0}  # metres north of STOP
CUSTOMERS = {"S1": "ada", "S2": "bob", "S3": "cyd"}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def at(east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m`` east and ``north_m`` north of S1. The van never stands exactly on
    a stop's latitude or longitude, so a frame that holds one of its coordinates holds the
    van's position, not the customer's own address."""
    return STOP[0] + north_m / M_PER_DEG_LAT, STOP[1] + east_m / M_PER_DEG_LON


def three_stop_route(now: float) -> dict[str, Any]:
    def stop(ext: str, north_m: float) -> dict[str, Any]:
        who = CUSTOMERS[ext]
        return {
            "external_id": ext,
            "location": {"lat": STOP[0] + north_m / M_PER_DEG_LAT, "lon": STOP[1]},
            "address": f"{ext} avenue",
            "window": {"start": now - 600, "end": now + 3600},
            "service_s": 60,
            "deliveries": [{"external_id": f"OOO-{ext}", "recipient": {
                "name": who, "phone": "+33612345678", "timezone": "Europe/Paris"}}],
        }  # fmt: skip

    return {
        "routes": [
            {
                "external_id": ROUTE,
                "vehicle": VAN,
                "driver": {"name": "Marie Curie"},
                "date": "2026-11-23",
                "stops": [stop(ext, north) for ext, north in STOPS.items()],
            }
        ]
    }


@dataclass
class Stream:
    """One customer's live stream: every raw frame, and where the last phase ended."""

    name: str
    frames: list[str] = field(default_factory=list)
    seen: int = 0  # frames before this one belong to earlier phases

    async def follow(self, url: str, *, task_status: trio.TaskStatus[None]) -> None:
        async with open_websocket_url(url) as ws:
            self.frames.append(str(await ws.get_message()))
            task_status.started()
            while True:
                self.frames.append(str(await ws.get_message()))


@dataclass
class Van:
    """The van's device: fixes 10 s apart (fix time), each one remembered."""

    ws: WebSocketConnection
    ts: float
    seq: int = 0
    coordinates: set[float] = field(default_factory=set)
    last: tuple[float, float] = (math.nan, math.nan)

    async def drive(self, points: list[tuple[float, float]], speed: float = 10.0) -> None:
        fixes = []
        for east, north in points:
            self.seq += 1
            self.ts += 10
            lat, lon = at(east, north)
            self.coordinates |= {lat, lon}
            self.last = (lat, lon)
            fixes.append({"seq": self.seq, "ts": self.ts, "lat": lat, "lon": lon, "speed": speed})
        await self.ws.send_message(json.dumps(fixes))
        with trio.fail_after(5):
            while json.loads(await self.ws.get_message())["seq"] < self.seq:
                pass


def north(x: float, from_m: float, to_m: float, step: float = 100.0) -> list[tuple[float, float]]:
    """Points ``x`` m east of S1 from ``from_m`` to ``to_m`` north of it, ``step`` apart."""
    n = round(abs(to_m - from_m) / step)
    return [(x, from_m + (to_m - from_m) * k / n) for k in range(n + 1)]


def vehicle(frame: str) -> Any:
    return json.loads(frame)["view"]["vehicle"]


def van_numbers(frame: str, van: Van) -> set[float]:
    """The van's coordinates among the numbers written in a raw frame."""
    return {float(t) for t in _NUMBER.findall(frame)} & van.coordinates


async def until(what: str, condition: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    with trio.move_on_after(timeout_s):
        while not await condition():  # noqa: ASYNC110 (a condition read over HTTP)
            await trio.sleep(0.05)
        return
    raise AssertionError(f"not within {timeout_s} s: {what}")


class Scenario:
    def __init__(self, gateway: GatewayHandle, van: Van, links: dict[str, str]) -> None:
        self.gw = gateway
        self.van = van
        self.links = links
        self.streams = {ext: Stream(CUSTOMERS[ext]) for ext in STOPS}
        self.phases = 0

    async def view(self, ext: str) -> dict[str, Any]:
        r = await self.gw.http.get(f"/v1/track/{self.links[ext]}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def stop_status(self, ext: str) -> str:
        routes = (await self.gw.http.get("/v1/live")).json()["routes"]
        stop_id = next(s["id"] for s in self.route["stops"] if s["external_id"] == ext)
        return str(routes[VAN]["stops"][stop_id])

    async def load(self) -> None:
        self.route = (await self.gw.http.get(f"/v1/routes/{ROUTE}")).json()

    async def phase(
        self,
        points: list[tuple[float, float]],
        settled: Callable[[], Awaitable[bool]],
        what: str,
        speed: float = 10.0,
    ) -> dict[str, list[str]]:
        """Drive ``points`` but the last; wait until ``settled``; then rename the driver (every
        customer's view shows the name: a marker) and drive the last point, which wakes every
        stream. Answers each customer's frames since the previous phase's marker, up to and
        including this phase's: each was sent after the previous phase had settled, the last
        one after this phase had."""
        await self.van.drive(points[:-1], speed)
        await until(what, settled)
        self.phases += 1
        name = f"Driver{self.phases}"
        r = await self.gw.http.post(f"/v1/routes/{ROUTE}/assign", json={"driver": {"name": name}})
        assert r.status_code == 200, r.text
        await self.van.drive(points[-1:], speed)
        out = {}
        for ext, s in self.streams.items():

            async def marked(s: Stream = s) -> bool:
                return any(json.loads(f)["view"]["driver"] == name for f in s.frames[s.seen :])

            await until(f"{s.name} sees the marker of: {what}", marked)
            end = next(
                i
                for i in range(s.seen, len(s.frames))
                if json.loads(s.frames[i])["view"]["driver"] == name
            )
            out[ext], s.seen = s.frames[s.seen : end + 1], end + 1
        return out

    def never(self, frames: dict[str, list[str]], ext: str, what: str) -> None:
        """The customer of ``ext`` got no position of the van in any of ``frames``."""
        for f in frames[ext]:
            assert vehicle(f) is None, f"{CUSTOMERS[ext]} was shown the van {what}: {f}"
            assert not van_numbers(f, self.van), f"{CUSTOMERS[ext]} got van coordinates {what}"

    def now_hidden(self, frames: dict[str, list[str]], ext: str, what: str) -> None:
        last = frames[ext][-1]
        assert vehicle(last) is None, f"{CUSTOMERS[ext]} was shown the van {what}: {last}"
        assert not van_numbers(last, self.van), f"{CUSTOMERS[ext]} got van coordinates {what}"

    def sees(self, frames: dict[str, list[str]], ext: str, what: str) -> None:
        v = vehicle(frames[ext][-1])
        assert v is not None, f"{CUSTOMERS[ext]} was not shown the van {what}"
        assert v["lat"] in self.van.coordinates and v["lon"] in self.van.coordinates


async def test_the_van_is_shown_only_on_its_way_to_each_customer(
    gateway: GatewayHandle, nursery: trio.Nursery
) -> None:
    token = await gateway.register(VAN)
    now = time.time()
    assert (await gateway.http.put("/v1/routes", json=three_stop_route(now))).is_success
    links = {ext: await issue(gateway, f"OOO-{ext}") for ext in STOPS}
    assert (await gateway.http.post(f"/v1/routes/{ROUTE}/start")).is_success
    await wait_tracked(gateway, VAN)
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={token}") as ws:
        sc = Scenario(gateway, Van(ws, ts=now - 1200), links)
        await sc.load()
        base = gateway.ep.http_url.replace("http://", "ws://")
        for ext, stream in sc.streams.items():
            await nursery.start(stream.follow, f"{base}/v1/track/{links[ext]}/live")

        async def shown(ext: str, lat_lon: tuple[float, float] | None = None) -> bool:
            v = (await sc.view(ext))["vehicle"]
            return v is not None and (lat_lon is None or (v["lat"], v["lon"]) == lat_lon)

        async def hidden(ext: str) -> bool:
            return (await sc.view(ext))["vehicle"] is None

        async def status(ext: str, want: str) -> bool:
            return await sc.stop_status(ext) == want

        # From 900 m east of S1 towards it: Ada's van.
        frames = await sc.phase(
            [(x, 10.0) for x in range(900, 99, -100)] + [(80.0, 10.0)],
            lambda: shown("S1", sc.van.last),
            "Ada sees the van coming",
        )
        sc.sees(frames, "S1", "on its way to her")
        sc.never(frames, "S2", "on its way to Ada")
        sc.never(frames, "S3", "on its way to Ada")

        # At Ada's door: nobody sees it, Bob (the next stop in the plan) least of all.
        frames = await sc.phase(
            [(15.0, 15.0)] * 4, lambda: status("S1", "arrived"), "S1 arrived", speed=0.0
        )
        sc.now_hidden(frames, "S1", "standing at her door")
        sc.never(frames, "S2", "standing at Ada's door")
        sc.never(frames, "S3", "standing at Ada's door")
        r = await gateway.http.post("/v1/deliveries/OOO-S1/status", json={"status": "delivered"})
        assert r.status_code == 200, r.text

        # Out of planned order: from S1 south to S3. Cyd sees it; Bob, still first in the
        # plan's order, does not; Ada, served, does not.
        frames = await sc.phase(
            [*north(30.0, -100.0, -2800.0), (30.0, -2850.0)],
            lambda: shown("S3", sc.van.last),
            "Cyd sees the van coming (S1 departed, S3 next out of order)",
        )
        sc.sees(frames, "S3", "on its way to her")
        sc.never(frames, "S2", "on its way to Cyd")
        sc.never(frames, "S1", "after her delivery")

        # At Cyd's door: nobody.
        frames = await sc.phase(
            [(15.0, -2985.0)] * 4, lambda: status("S3", "arrived"), "S3 arrived", speed=0.0
        )
        sc.now_hidden(frames, "S3", "standing at her door")
        sc.never(frames, "S2", "standing at Cyd's door")
        sc.never(frames, "S1", "after her delivery")

        # North to Bob's stop, the last one: Bob sees it; Cyd (her stop left, though her
        # delivery is not marked yet) and Ada do not.
        frames = await sc.phase(
            [*north(30.0, -2900.0, -200.0), (30.0, -150.0)],
            lambda: shown("S2", sc.van.last),
            "Bob sees the van coming",
        )
        sc.sees(frames, "S2", "on its way to him")
        sc.never(frames, "S3", "after her stop")
        sc.never(frames, "S1", "after her delivery")

        # On its way to Bob the van stops at Ada's door again: Bob does not see it there.
        frames = await sc.phase(
            [(20.0, 10.0)] * 3, lambda: hidden("S2"), "Bob's view hides the van", speed=0.0
        )
        sc.now_hidden(frames, "S2", "at Ada's door")
        sc.never(frames, "S1", "at her door after her delivery")
        sc.never(frames, "S3", "after her stop")

        # And drives on: Bob sees it again.
        frames = await sc.phase(
            [*north(30.0, 100.0, 1000.0), (30.0, 1050.0)],
            lambda: shown("S2", sc.van.last),
            "Bob sees the van again",
        )
        sc.sees(frames, "S2", "on its way to him")
        sc.never(frames, "S1", "after her delivery")
        sc.never(frames, "S3", "after her stop")


async def test_a_customer_on_another_process_sees_what_the_tracking_one_judges(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    # The device writes through A, whose live stage judges the van's next stop; the customers'
    # pages are served by B, which reads that judgement from Redis.
    a = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    b = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    try:
        token = await a.register(VAN)
        now = time.time()
        assert (await a.http.put("/v1/routes", json=three_stop_route(now))).is_success
        links = {ext: await issue(a, f"OOO-{ext}") for ext in STOPS}
        assert (await a.http.post(f"/v1/routes/{ROUTE}/start")).is_success
        await wait_tracked(a, VAN)
        await wait_tracked(b, VAN)

        async def views() -> dict[str, Any]:
            return {
                ext: (await b.http.get(f"/v1/track/{link}")).json()["vehicle"]
                for ext, link in links.items()
            }

        async with open_websocket_url(f"{a.ep.ingest_url}?token={token}") as ws:
            van = Van(ws, ts=now - 600)

            async def only(ext: str | None) -> bool:
                """Only the customer of ``ext`` (nobody: None) sees the van, at its last fix."""
                seen = await views()
                if {e for e, v in seen.items() if v is not None} != ({ext} if ext else set()):
                    return False
                return ext is None or (seen[ext]["lat"], seen[ext]["lon"]) == van.last

            await van.drive([(x, 10.0) for x in range(900, 99, -100)])
            await until("on B only Ada sees the van", lambda: only("S1"))
            await van.drive([(15.0, 15.0)] * 3, speed=0.0)
            await until("on B nobody sees the van at Ada's door", lambda: only(None))
            await van.drive(north(30.0, -100.0, -2000.0))
            await until("on B only Cyd sees the van (S3 out of order)", lambda: only("S3"))
    finally:
        for gw in (a, b):
            await gw.http.aclose()
            gw.scope.cancel()


class Closed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
        self.at = time.time()


class BareWebSocket:
    """A WebSocket client for streams the server closes. (trio-websocket's client leaves its
    socket open when the server closes first, which this suite's warnings-as-errors flag.)"""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.events: list[Event] = []
        self.text = ""

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[BareWebSocket]:
        u = urllib.parse.urlsplit(url)
        assert u.hostname is not None and u.port is not None
        async with await trio.open_tcp_stream(u.hostname, u.port) as stream:
            client = cls(stream)
            await client.send(Request(host=u.netloc, target=u.path))
            accepted = await client.next_event()
            assert isinstance(accepted, AcceptConnection), accepted
            yield client

    async def send(self, event: Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def next_event(self) -> Event:
        while not self.events:
            data = await self.stream.receive_some(65536)
            assert data, "the server dropped the connection without a close frame"
            self.ws.receive_data(data)
            self.events.extend(self.ws.events())
        return self.events.pop(0)

    async def get_message(self) -> str:
        """The next text message; :class:`Closed` once the server closes the WebSocket."""
        while True:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                closed = Closed(event.code)
                await self.send(event.response())
                raise closed
            if isinstance(event, TextMessage):
                self.text += event.data
                if event.message_finished:
                    text, self.text = self.text, ""
                    return text
            elif not isinstance(event, Message):
                raise AssertionError(f"unexpected {event}")


async def closed(ws: BareWebSocket) -> Closed:
    """Read until the server closes the WebSocket."""
    try:
        while True:
            await ws.get_message()
    except Closed as exc:
        return exc


async def test_an_open_stream_closes_when_its_link_expires(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, link_ttl_s=2.0))
    try:
        await gw.register("van-link")
        assert (await gw.http.put("/v1/routes", json=two_stop_route(time.time()))).is_success
        r = await gw.http.post("/v1/deliveries/D-S1/link")
        token, expires = r.json()["token"], r.json()["expires"]
        live_url = gw.ep.http_url.replace("http://", "ws://") + f"/v1/track/{token}/live"
        async with BareWebSocket.connect(live_url) as ws:
            assert json.loads(await ws.get_message())["type"] == "view"
            with trio.fail_after(expires - time.time() + 2.0):
                end = await closed(ws)
        assert end.code == CLOSE_LINK_INVALID
        assert expires - 0.05 <= end.at <= expires + 1.0, (end.at, expires)
        assert (await handshake(live_url, None)).status_code == 403
        assert (await gw.http.get(f"/v1/track/{token}")).status_code == 403
    finally:
        await gw.http.aclose()
        gw.scope.cancel()


async def test_an_open_stream_closes_when_its_link_is_revoked(gateway: GatewayHandle) -> None:
    await gateway.register("van-link")
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(time.time()))).is_success
    old = await issue(gateway, "D-S1")
    base = gateway.ep.http_url.replace("http://", "ws://")
    async with BareWebSocket.connect(f"{base}/v1/track/{old}/live") as ws:
        assert json.loads(await ws.get_message())["type"] == "view"
        await trio.sleep(0.3)  # open a while: not only the handshake checks the link
        r = await gateway.http.post("/v1/deliveries/D-S1/link/revoke")
        assert r.status_code == 200, r.text
        revoked = time.time()
        with trio.fail_after(3):
            end = await closed(ws)
    assert end.code == CLOSE_LINK_INVALID
    assert end.at - revoked <= 1.0, end.at - revoked
    # A link issued since streams on.
    fresh = await issue(gateway, "D-S1")
    async with BareWebSocket.connect(f"{base}/v1/track/{fresh}/live") as ws:
        assert json.loads(await ws.get_message())["view"]["reference"] == "D-S1"
        with trio.move_on_after(1.5) as waited:
            await closed(ws)
        assert waited.cancelled_caught


async def test_tracking_answers_are_not_cached(gateway: GatewayHandle) -> None:
    await gateway.register("van-link")
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(time.time()))).is_success
    token = await issue(gateway, "D-S1")
    answers = [
        await gateway.http.get(f"/v1/track/{token}"),
        await gateway.http.get(f"/t/{token}"),
        await gateway.http.get("/v1/track/not-a-token"),
        await gateway.http.get("/t/not-a-token"),
    ]
    assert [r.status_code for r in answers] == [200, 200, 403, 403]
    for r in answers:
        assert r.headers.get("cache-control") == "no-store", (r.url, r.headers)
