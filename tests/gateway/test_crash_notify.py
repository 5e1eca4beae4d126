"""Crash safety of notifications: a gateway killed with SIGKILL while it streams positions
in and texts a route's customers out loses no message and repeats none beyond the outbox's
documented in-flight window, and loses no acknowledged position.

Everything is real: the gateway is a ``python -m gateway serve`` process on the test's
Redis, sending through a Twilio-compatible capture server that this test runs (and that
holds every answer a moment, so sends are in flight when the process dies). The restarted
process claims the dead one's pending messages after ``NOTIFY_CLAIM_IDLE_S``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from notify.capture.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    TwilioCaptureServer,
)
from notify.outbox import FINAL_STATUSES, OutboxConfig
from tests.gateway.conftest import API_KEY
from tests.gateway.test_crash import check_recovered, fix, start_process, stop_process

DELIVERIES: Final = 40
CLAIM_IDLE_S: Final = 6.0  # the gateway's sends time out after half of it
RESPONSE_DELAY_S: Final = 0.4  # the provider holds each answer this long
KILL_AFTER_SMS: Final = 20  # past the first wave of sends (16 at a time)
FRAME: Final = 10  # positions per device frame
LAST_SEQ: Final = 8000  # the device stops there if the process is still alive
VEHICLE: Final = "van-n"
WINDOW: Final = OutboxConfig().concurrency  # messages in flight per worker


def phone(i: int) -> str:
    # One number per customer: the recipient rate limit (6 an hour) stays out of the way.
    return f"+3361234{i:04d}"


def route_of_many_deliveries(now: float) -> dict[str, Any]:
    """One route, ``DELIVERIES`` stops with one delivery each, every customer by SMS; the
    stops lie north of where the van's positions go."""
    stops = [
        {
            "external_id": f"S{i}",
            "location": {"lat": 52.2 + i * 0.002, "lon": 4.0},
            "address": f"{i} crash street",
            "window": {"start": now, "end": now + 4 * 3600},
            "service_s": 60,
            "deliveries": [
                {
                    "external_id": f"D-N{i}",
                    "recipient": {
                        "name": f"customer {i}",
                        "phone": phone(i),
                        "timezone": "Europe/Amsterdam",
                        "channels": ["sms"],
                    },
                }
            ],
        }
        for i in range(DELIVERIES)
    ]
    return {
        "routes": [
            {
                "external_id": "CRASH-R",
                "vehicle": VEHICLE,
                "driver": {"name": "Jan Smit"},
                "date": "2026-11-23",
                "stops": stops,
            }
        ]
    }


class Stream:
    """A device sending positions until its gateway dies under it."""

    def __init__(self, ingest: str, token: str, t0: float) -> None:
        self.url = f"{ingest}?token={token}"
        self.t0 = t0
        self.sent = 0
        self.acked = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        conn: Any = None
        try:
            async with open_websocket_url(self.url) as ws:
                conn = ws

                async def read_acks() -> None:
                    while True:
                        self.acked = max(self.acked, json.loads(await ws.get_message())["seq"])

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_acks)
                    task_status.started()
                    while self.sent < LAST_SEQ:
                        frame = [
                            fix(s, self.t0) for s in range(self.sent + 1, self.sent + FRAME + 1)
                        ]
                        await ws.send_message(json.dumps(frame))
                        self.sent += FRAME
                        await trio.sleep(0.01)
        except* (ConnectionClosed, OSError, trio.BrokenResourceError):
            pass  # the gateway died under us, as intended
        if conn is not None:
            await conn._stream.aclose()  # trio-websocket keeps its socket after an abnormal close


@contextlib.asynccontextmanager
async def killed_at_exit(proc: trio.Process) -> AsyncIterator[None]:
    """The process is gone after the block (killed now if still running)."""
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.fail_after(10):
            await proc.wait()


async def notifications(api: httpx.AsyncClient, delivery: str) -> list[dict[str, Any]]:
    r = await api.get("/v1/notifications", params={"delivery": delivery})
    assert r.status_code == 200, r.text
    return list(r.json()["notifications"])


async def wait_all_sent(
    api: httpx.AsyncClient, deliveries: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every delivery's messages, once each delivery's out_for_delivery SMS is sent and
    no message of any delivery is still on its way (queued, sending, retrying)."""
    missing: list[str] = []
    unfinished: list[dict[str, Any]] = []
    with trio.move_on_after(60):
        while True:
            found = {d: await notifications(api, d) for d in deliveries}
            missing = [
                d
                for d, ns in found.items()
                if not any(n["trigger"] == "out_for_delivery" and n["status"] == "sent" for n in ns)
            ]
            unfinished = [
                n for ns in found.values() for n in ns if n["status"] not in FINAL_STATUSES
            ]
            if not missing and not unfinished:
                return found
            await trio.sleep(0.5)
    raise AssertionError(f"no out_for_delivery SMS sent for {missing}; unfinished: {unfinished}")


async def test_kill_9_loses_no_notification(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    twilio = TwilioCaptureServer(status_callbacks=False, response_delay_s=RESPONSE_DELAY_S)
    twilio_url = await nursery.start(twilio.run)
    settings = {
        "NOTIFY": "true",
        "NOTIFY_CAPTURE": "false",
        "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
        "TWILIO_API_URL": twilio_url,
        "QUIET_HOURS": "",
        "NOTIFY_CLAIM_IDLE_S": str(CLAIM_IDLE_S),
    }
    proc, http, ingest = await start_process(redis_url, data_dir, **settings)
    now = time.time()
    t0 = now - 1000
    async with (
        httpx.AsyncClient(base_url=http, headers={"X-API-Key": API_KEY}) as api,
        killed_at_exit(proc),
    ):
        r = await api.post("/v1/devices", json={"id": VEHICLE, "vehicle": VEHICLE})
        token = r.json()["token"]
        r = await api.put("/v1/routes", json=route_of_many_deliveries(now))
        assert r.is_success, r.text
        listed = (await api.get("/v1/deliveries", params={"route": "CRASH-R"})).json()
        ids = {d["external_id"]: d["id"] for d in listed["deliveries"]}
        deliveries = [ids[f"D-N{i}"] for i in range(DELIVERIES)]
        stream = Stream(ingest, token, t0)
        async with trio.open_nursery() as device:
            await device.start(stream.run)
            # Starting the route queues an out_for_delivery SMS for every delivery.
            assert (await api.post("/v1/routes/CRASH-R/start")).is_success
            with trio.fail_after(30):
                await twilio.wait_for_messages(KILL_AFTER_SMS)
                while not twilio.held:
                    await twilio.wait_for_requests(len(twilio.requests) + 1)
            # No checkpoint since the check: the provider has messages it has not answered.
            os.kill(proc.pid, signal.SIGKILL)
    assert 0 < stream.acked <= stream.sent < LAST_SEQ  # the kill interrupted the ingest

    restarted_at = time.time()
    proc2, http2, ingest2 = await start_process(redis_url, data_dir, **settings)
    try:
        async with httpx.AsyncClient(base_url=http2, headers={"X-API-Key": API_KEY}) as api:
            await check_recovered(api, ingest2, token, VEHICLE, t0, stream.acked, stream.sent)
            records = await wait_all_sent(api, deliveries)
    finally:
        await stop_process(proc2)

    # What the provider got, by recipient and text: a repeat has the same text.
    copies: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    by_sid = {}
    for sms in twilio.messages:
        copies[sms.to, sms.body].append(sms.received_at)
        by_sid[sms.sid] = (sms.to, sms.body)
    resumed = 0
    for i, delivery in enumerate(deliveries):
        sms_records = [n for n in records[delivery] if n["channel"] == "sms"]
        out = [n for n in sms_records if n["trigger"] == "out_for_delivery"]
        # Nothing lost: the customer has the message (each trigger queued once).
        assert len(out) == 1 and out[0]["status"] == "sent", out
        assert out[0]["to"] == by_sid[out[0]["provider_id"]][0] == phone(i)
        for n in sms_records:
            was_resumed = any(a["resumed"] for a in n["attempts"])
            resumed += was_resumed
            if n["status"] != "sent":
                continue
            sent = copies[by_sid[n["provider_id"]]]
            if was_resumed:
                # In flight at the crash: sent by the dead process, then once more by the
                # one that claimed it.
                assert len(sent) <= 2, n
                assert len(sent) == 1 or sent[0] < restarted_at < sent[1], n
            else:
                assert len(sent) == 1, n
    repeats = sum(len(times) - 1 for times in copies.values())
    assert all(len(times) <= 2 for times in copies.values())
    # The documented window: at most the messages in flight at the crash, once more each;
    # and the crash did catch some in flight (the provider was holding their answers).
    assert 1 <= repeats <= resumed <= WINDOW
