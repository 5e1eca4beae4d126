"""Redis restarts under a running gateway: no acks while it is down, nothing lost after, and
every notification sent once, whether it was triggered before, during or after the outage.

Everything is real: the gateway runs its notifier (the default) on a redis-server of the
test's own with the append-only file on, and sends through a Twilio-compatible capture
server (which holds each answer a moment, so texts are in flight when Redis stops) and an
SMTP capture server.
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import coredis
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from gateway.config import Settings
from gateway.core.redisproc import start_redis
from gateway.dispatch.records import delivery_id
from notify import keys as notify_keys
from notify.capture.smtp_server import SmtpCaptureServer
from notify.capture.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    TwilioCaptureServer,
)
from notify.events import EVENT_FIELD, EVENTS_STREAM, Event, encode_event
from notify.outbox import FINAL_STATUSES
from tests.gateway.conftest import GatewayHandle, gateway_settings, start_gateway, wait_tracked
from tests.gateway.live.test_routes import M_PER_DEG_LAT, STOP

RESPONSE_DELAY_S: Final = 0.5  # the SMS provider holds each answer this long
DOWN_S: Final = 4.0  # how long Redis stays down
SETTLE_S: Final = 120.0  # generous: the machine may be loaded


def drive(seq: int, t0: float) -> str:
    """The ``seq``-th fix of a van driving up to ``STOP`` from 2.1 km south at 10 m/s."""
    south_m = 2100 - 100 * (seq - 1)
    return json.dumps(
        {"seq": seq, "ts": t0 + 10 * seq, "lat": STOP[0] - south_m / M_PER_DEG_LAT,
         "lon": STOP[1], "speed": 10.0}
    )  # fmt: skip


def route(ext: str, vehicle: str, now: float, customers: int) -> dict[str, Any]:
    """A route whose first stop is at ``STOP`` and the others 3 km apart north of it; one
    delivery per stop, each customer with a phone and an email of their own (``ext`` is
    two capital letters)."""

    def stop(i: int) -> dict[str, Any]:
        who = f"{ext.lower()}-{i}"
        return {
            "external_id": f"{ext}-S{i}",
            "location": {"lat": STOP[0] + i * 3000 / M_PER_DEG_LAT, "lon": STOP[1]},
            "address": f"{i} restart street",
            "window": {"start": now - 600, "end": now + 4 * 3600},
            "service_s": 60,
            "deliveries": [
                {
                    "external_id": f"{ext}-D{i}",
                    "recipient": {
                        "name": who,
                        "phone": f"+336{ord(ext[1]):03d}{i:05d}",
                        "email": f"{who}@example.com",
                        "timezone": "Europe/Paris",
                        "channels": ["sms", "email"],
                    },
                }
            ],
        }

    return {
        "routes": [
            {
                "external_id": ext,
                "vehicle": vehicle,
                "driver": {"name": "Jan Smit"},
                "date": "2026-11-23",
                "stops": [stop(i) for i in range(customers)],
            }
        ]
    }


class OwnRedis:
    """A redis-server of the test's own, append-only file on, that can be restarted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process = start_redis(folder, appendonly=True)

    @property
    def url(self) -> str:
        return self.process.url

    def stop(self) -> None:
        """A clean shutdown: the append-only file holds everything written."""
        self.process.stop()

    def start_again(self) -> None:
        self.process = start_redis(self.folder, port=self.process.port, appendonly=True)


@pytest.fixture
def own_redis(data_dir: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(data_dir / "own-redis")
    yield redis
    redis.stop()


@contextlib.asynccontextmanager
async def serving(nursery: trio.Nursery, settings: Settings) -> AsyncIterator[GatewayHandle]:
    gw = await start_gateway(nursery, settings)
    try:
        yield gw
    finally:
        await gw.http.aclose()
        gw.scope.cancel()


@contextlib.asynccontextmanager
async def notify_gateway(
    nursery: trio.Nursery, redis_url: str, data_dir: Path
) -> AsyncIterator[tuple[GatewayHandle, TwilioCaptureServer, SmtpCaptureServer]]:
    """A gateway with notifications on, texting and mailing through capture servers."""
    twilio = TwilioCaptureServer(status_callbacks=False, response_delay_s=RESPONSE_DELAY_S)
    twilio_url = await nursery.start(twilio.run)
    smtp = SmtpCaptureServer()
    smtp_port = await nursery.start(smtp.run)
    settings = gateway_settings(
        redis_url,
        data_dir,
        notify=True,
        twilio_account_sid=DEFAULT_ACCOUNT_SID,
        twilio_auth_token=DEFAULT_AUTH_TOKEN,
        twilio_api_url=twilio_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls=False,
    )
    async with serving(nursery, settings) as gw:
        yield gw, twilio, smtp


async def start_route(gw: GatewayHandle, body: dict[str, Any]) -> list[str]:
    """Put and start the route; returns its deliveries' ids, in stop order."""
    assert (await gw.http.put("/v1/routes", json=body)).is_success
    ext = body["routes"][0]["external_id"]
    assert (await gw.http.post(f"/v1/routes/{ext}/start")).is_success
    return [delivery_id(s["deliveries"][0]["external_id"]) for s in body["routes"][0]["stops"]]


async def wait_acked(ws: WebSocketConnection, seq: int) -> None:
    with trio.fail_after(SETTLE_S):
        while json.loads(await ws.get_message())["seq"] < seq:
            pass


async def assert_no_ack(ws: WebSocketConnection, above: int, for_s: float) -> None:
    with trio.move_on_after(for_s):
        while True:
            assert json.loads(await ws.get_message())["seq"] <= above, "acked while down"


async def wait_finished(
    gw: GatewayHandle, wanted: dict[str, set[str]]
) -> dict[str, list[dict[str, Any]]]:
    """Every delivery's notification records, once each delivery has a sent SMS and email
    for each of its ``wanted`` triggers and nothing is on its way any more."""
    found: dict[str, list[dict[str, Any]]] = {}
    with trio.move_on_after(SETTLE_S):
        while True:
            for d in wanted:
                r = await gw.http.get("/v1/notifications", params={"delivery": d})
                assert r.status_code == 200, r.text
                found[d] = r.json()["notifications"]
            done = all(
                {(t, c) for t in triggers for c in ("sms", "email")}
                <= {(n["trigger"], n["channel"]) for n in found[d] if n["status"] == "sent"}
                for d, triggers in wanted.items()
            )
            if done and all(n["status"] in FINAL_STATUSES for ns in found.values() for n in ns):
                return found
            await trio.sleep(0.2)
    raise AssertionError(f"notifications not all sent: {found}")


def assert_each_sent_once(
    records: dict[str, list[dict[str, Any]]],
    twilio: TwilioCaptureServer,
    smtp: SmtpCaptureServer,
) -> None:
    """Every message was sent, and the providers got it exactly once (a repeat has the same
    recipient and text, or the same Message-ID); they got nothing else."""
    texts = collections.Counter((m.to, m.body) for m in twilio.messages)
    by_sid = {m.sid: (m.to, m.body) for m in twilio.messages}
    mails = collections.Counter(str(m.message["Message-ID"]) for m in smtp.messages)
    sent = [n for ns in records.values() for n in ns]
    for n in sent:
        assert n["status"] == "sent", n
        if n["channel"] == "sms":
            assert texts[by_sid[n["provider_id"]]] == 1, n
        else:
            assert mails[n["provider_id"]] == 1, n
    assert sum(texts.values()) == len([n for n in sent if n["channel"] == "sms"])
    assert sum(mails.values()) == len([n for n in sent if n["channel"] == "email"])


async def test_gateway_rides_out_a_redis_restart(
    data_dir: Path, nursery: trio.Nursery, own_redis: OwnRedis
) -> None:
    t0 = time.time() - 60

    def fix(seq: int) -> str:
        return json.dumps({"seq": seq, "ts": t0 + seq, "lat": 52.0 + seq * 1e-5, "lon": 4.0})

    async with serving(nursery, gateway_settings(own_redis.url, data_dir)) as gw:
        token = await gw.register("van-r")
        async with open_websocket_url(f"{gw.ep.ingest_url}?token={token}") as ws:
            for seq in range(1, 6):
                await ws.send_message(fix(seq))
            await wait_acked(ws, 5)
            own_redis.stop()
            for seq in range(6, 11):
                await ws.send_message(fix(seq))
            await assert_no_ack(ws, 5, 1.5)
            own_redis.start_again()
            await wait_acked(ws, 10)
        track = (await gw.http.get("/v1/vehicles/van-r/track", params={"since": t0})).json()
        assert [p["seq"] for p in track["positions"]] == list(range(1, 11))
        assert "gateway_writer_errors_total" in await gw.metrics()


async def test_notifications_ride_out_a_redis_restart(
    data_dir: Path, nursery: trio.Nursery, own_redis: OwnRedis
) -> None:
    async with notify_gateway(nursery, own_redis.url, data_dir) as (gw, twilio, smtp):
        token = await gw.register("van-a")
        await gw.register("van-b")
        t0 = time.time() - 240
        # Before the outage: starting route A queues 16 messages; Redis stops while the
        # provider holds the first texts' answers and the rest wait in the outbox.
        before = await start_route(gw, route("RA", "van-a", time.time(), 8))
        await wait_tracked(gw, "van-a")
        async with open_websocket_url(f"{gw.ep.ingest_url}?token={token}") as ws:
            await ws.send_message(drive(1, t0))
            await wait_acked(ws, 1)
            with trio.fail_after(SETTLE_S):
                while not twilio.held:
                    await twilio.wait_for_requests(len(twilio.requests) + 1)
            own_redis.stop()
            # During the outage: the van drives up to route A's first stop, which makes
            # its customer's "arriving" messages once the positions are stored.
            for seq in range(2, 23):
                await ws.send_message(drive(seq, t0))
            await assert_no_ack(ws, 1, DOWN_S)
            own_redis.start_again()
            await wait_acked(ws, 22)
        # After the outage: starting route B.
        after = await start_route(gw, route("RB", "van-b", time.time(), 4))
        wanted = {d: {"out_for_delivery"} for d in before + after}
        wanted[before[0]].add("arriving")
        records = await wait_finished(gw, wanted)
        assert_each_sent_once(records, twilio, smtp)
        assert "notify_redis_outages_total" in await gw.metrics()


async def test_lost_consumer_groups_are_made_again_where_they_left_off(
    data_dir: Path, nursery: trio.Nursery, own_redis: OwnRedis
) -> None:
    async with notify_gateway(nursery, own_redis.url, data_dir) as (gw, twilio, smtp):
        await gw.register("van-c")
        await gw.register("van-d")
        first = await start_route(gw, route("RC", "van-c", time.time(), 2))
        await wait_finished(gw, {d: {"out_for_delivery"} for d in first})
        body = route("RD", "van-d", time.time(), 2)
        assert (await gw.http.put("/v1/routes", json=body)).is_success
        later = [delivery_id(f"RD-D{i}") for i in range(2)]
        # Redis forgets both groups (as a restart that lost them would), and an event
        # arrives before the notifier has noticed: it must not be skipped.
        async with (
            coredis.Redis.from_url(own_redis.url) as client,
            client.pipeline(transaction=True) as p,
        ):
            p.xgroup_destroy(EVENTS_STREAM, notify_keys.EVENTS_GROUP)
            p.xgroup_destroy(notify_keys.OUTBOX, notify_keys.OUTBOX_GROUP)
            for d in later:
                event = Event(type="delivery.out_for_delivery", ts=time.time(), delivery=d)
                p.xadd(EVENTS_STREAM, {EVENT_FIELD: encode_event(event)})
        records = await wait_finished(gw, {d: {"out_for_delivery"} for d in first + later})
        assert_each_sent_once(records, twilio, smtp)
