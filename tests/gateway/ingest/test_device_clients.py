"""Device apps as they really talk, written from their own sources:

- the Traccar Client app (traccar/traccar-client, ``lib/preferences.dart``): it hands
  flutter_background_geolocation a JSON ``locationTemplate`` (``timestamp`` as ISO 8601,
  ``coords`` with ``speed``, ``heading``, ``accuracy`` and ``altitude`` that are -1 when
  unknown, ``is_moving``, ``odometer``, ``event``, ``battery`` with ``level`` -1 when unknown,
  ``activity``, ``extras``, and a ``_`` field repeating the fix as query text) and the
  ``device_id`` param; it keeps its fixes (``maxRecordsToPersist: -1``) and syncs the oldest
  until the server answers with a success, so one refused fix blocks all behind it;
- the OsmAnd protocol as Traccar decodes it (``OsmAndProtocolDecoder``): query fields,
  ``timestamp`` as unix seconds, milliseconds, ``yyyy-MM-dd HH:mm:ss`` or ISO 8601, cell or
  Wi-Fi only requests with no coordinates answered 200;
- OwnTracks in HTTP mode (its booklet): a JSON message per POST answered with a JSON array,
  ``_type`` location and a dozen others, numbers that may arrive as strings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.fleet.position import MAX_ATTRIBUTES
from gateway.ingest.device_formats import osmand_position, owntracks_position
from tests.gateway.conftest import GatewayHandle, metric

M_PER_DEG: float = 111_195.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def traccar_body(token: str, ts: float, lat: float, lon: float, **coords: float) -> dict[str, Any]:
    """The Traccar Client's sync body for one fix: its template, filled as the plugin does."""
    c = {"latitude": lat, "longitude": lon, "accuracy": 12.0, "speed": 8.0, "heading": 90.0,
         "altitude": 30.0} | coords  # fmt: skip
    return {
        "location": {
            "timestamp": iso(ts),
            "coords": c,
            "is_moving": True,
            "odometer": 1234.5,
            "event": "",
            "battery": {"level": 0.8, "is_charging": False},
            "activity": {"type": "in_vehicle"},
            "extras": {},
            "_": f"&id={token}&lat={lat}&lon={lon}&timestamp={iso(ts)}&",
        },
        "device_id": token,
    }


@dataclass
class TraccarClient:
    """Keeps every fix and sends the oldest until the server answers 200, as the app does."""

    http: httpx.AsyncClient
    path: str
    queue: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    async def sync(self, max_tries: int) -> None:
        tries = 0
        while self.queue and tries < max_tries:
            tries += 1
            r = await self.http.post(self.path, json=self.queue[0])
            self.answers.append(r.status_code)
            if r.status_code == 200:
                self.queue.pop(0)


@pytest.mark.parametrize("server", ["device_http", "api"])
async def test_the_traccar_client_drains_its_queue_through_every_kind_of_bad_fix(
    gateway: GatewayHandle, server: str
) -> None:
    """On the lean device server at its root (the app's server URL is the server itself)
    and on the API's port, the same answers."""
    device = f"traccar-{server.replace('_', '-')}"
    token = await gateway.register(device)
    now = time.time() - 300
    lat0, lon0 = 48.85, 2.35
    good = [traccar_body(token, now + 10 * i, lat0 + i * 50 / M_PER_DEG, lon0) for i in range(6)]
    queue = [
        good[0],
        # the stationary template: speed, heading, accuracy, altitude and battery unknown
        traccar_body(token, now + 5, lat0, lon0, speed=-1, heading=-1, accuracy=-1, altitude=-1),
        good[1],
        good[1],  # a resend after a lost reply: a duplicate
        traccar_body(token, now + 15, lat0, lon0, accuracy=5000),  # too coarse
        good[2],
        traccar_body(token, now + 25, lat0 + 0.1, lon0),  # an 11 km glitch ...
        traccar_body(token, now + 25, lat0 + 0.1, lon0),  # ... resent ...
        traccar_body(token, now + 25, lat0 + 0.1, lon0),  # ... and resent
        good[3],
        traccar_body(token, now - 30 * 86_400, lat0, lon0),  # a month old
        traccar_body(token, now + 3600, lat0, lon0),  # an hour in the future
        # older than the last stored (its seq, the fix time, is too: counted as a duplicate)
        traccar_body(token, now + 12, lat0, lon0),
        good[4],
        traccar_body(token, now + 45, 95.0, lon0),  # latitude out of range
        good[5],
    ]
    queue[1]["location"]["battery"]["level"] = -1
    base, path = (
        (gateway.ep.device_http_url, "/") if server == "device_http"
        else (gateway.ep.http_url, "/v1/osmand")
    )  # fmt: skip
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        app = TraccarClient(http, path, list(queue))
        await app.sync(max_tries=len(queue))
    assert app.queue == [] and app.answers == [200] * len(queue)

    track = (await gateway.http.get(f"/v1/vehicles/{device}/track",
                                    params={"since": now - 60})).json()["positions"]  # fmt: skip
    stored = [round(p["ts"] - now) for p in track]
    assert stored == [0, 5, 10, 20, 30, 40, 50]
    unknown = track[1]
    for name in ("speed", "heading", "accuracy", "alt", "battery"):
        assert unknown.get(name) is None, name
    assert track[0]["battery"] == pytest.approx(80.0) and track[0]["alt"] == 30.0
    assert track[0]["speed"] == 8.0 and track[0]["heading"] == 90.0
    assert all(abs(p["lat"] - lat0) < 0.01 for p in track)  # the glitch was never stored
    # The latest fix not stored, and why, is on the device's record for an agent to see.
    filtered = (await gateway.http.get(f"/v1/devices/{device}")).json()["filtered"]
    assert filtered["reason"] == "out_of_range" and "lat" in filtered["detail"]
    metrics = await gateway.metrics()
    for reason, n in [("duplicate", 2), ("poor_accuracy", 1), ("implausible_jump", 3),
                      ("too_old", 1), ("future", 1), ("out_of_range", 1)]:  # fmt: skip
        assert metric(metrics, f'gateway_positions_rejected_total{{reason="{reason}"}}') == n


@pytest.mark.parametrize("timestamp", ["s", "ms", "text", "iso", "iso_offset"])
async def test_osmand_query_form_with_every_time_format(
    gateway: GatewayHandle, timestamp: str
) -> None:
    device = f"osmand-{timestamp.replace('_', '-')}"
    token = await gateway.register(device)
    ts = int(time.time()) - 120
    formats = {
        "s": str(ts),
        "ms": str(ts * 1000),
        "text": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "iso": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "iso_offset": datetime.fromtimestamp(ts, UTC).astimezone().isoformat(),
    }
    params = {"id": token, "lat": "52.5", "lon": "13.4", "speed": "-1", "bearing": "-1",
              "accuracy": "-1", "batt": "-1", "hdop": "0.9"}  # fmt: skip
    params["timestamp"] = formats[timestamp]
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, timeout=10) as http:
        r = await http.get("/v1/osmand", params=params)
        assert r.status_code == 200, r.text
        assert r.text == ""
    state = (await gateway.http.get(f"/v1/vehicles/{device}")).json()
    assert (state["ts"], state["lat"], state["lon"]) == (ts, 52.5, 13.4)
    assert state["speed"] is None and state["heading"] is None and state["battery"] is None


async def test_a_request_without_coordinates_keeps_the_device_online(
    gateway: GatewayHandle,
) -> None:
    token = await gateway.register("cell-only")
    ts = time.time() - 30
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, timeout=10) as http:
        r = await http.get("/v1/osmand", params={"id": token, "lat": 52.0, "lon": 4.0,
                                                  "timestamp": int(ts)})  # fmt: skip
        assert r.status_code == 200
        before = (await gateway.http.get("/v1/vehicles/cell-only")).json()
        r = await http.get("/v1/osmand", params={"id": token, "cell": "262,2,801,86355,-75",
                                                  "wifi": "00-14-22-01-23-45,-60"})  # fmt: skip
        assert r.status_code == 200 and r.text == ""
    after = (await gateway.http.get("/v1/vehicles/cell-only")).json()
    assert after["seen"] > before["seen"]
    assert (after["lat"], after["lon"], after["ts"]) == (52.0, 4.0, before["ts"])
    track = (await gateway.http.get("/v1/vehicles/cell-only/track",
                                    params={"since": ts - 60})).json()["positions"]  # fmt: skip
    assert len(track) == 1  # nothing invented
    assert metric(await gateway.metrics(),
                  'gateway_requests_without_fix_total{proto="osmand"}') == 1  # fmt: skip


async def test_owntracks_answers_every_message_it_can_read_with_an_array(
    gateway: GatewayHandle,
) -> None:
    token = await gateway.register("owntracks-app")
    hdrs = {"Authorization": f"Bearer {token}", "X-Limit-U": "ada", "X-Limit-D": "phone"}
    ts = int(time.time()) - 60
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, timeout=10, headers=hdrs) as http:
        # numbers as strings, as some clients and bridges send them; -1 for unknowns
        loc = {"_type": "location", "lat": "51.5", "lon": "-0.12", "tst": str(ts),
               "vel": "-1", "cog": -1, "acc": "15", "batt": -1, "tid": "ad", "t": "u",
               "conn": "w", "bs": 1}  # fmt: skip
        r = await http.post("/v1/owntracks", json=loc)
        assert (r.status_code, r.json()) == (200, [])
        r = await http.post("/v1/owntracks", json=loc)  # a resend: a duplicate, still []
        assert (r.status_code, r.json()) == (200, [])
        r = await http.post("/v1/owntracks", content=b"")  # a zero-length body
        assert (r.status_code, r.json()) == (200, [])
        for other in ("transition", "waypoint", "waypoints", "card", "lwt", "cmd", "steps",
                      "status", "configuration", "beacon", "encrypted", "request"):  # fmt: skip
            r = await http.post("/v1/owntracks", json={"_type": other})
            assert (r.status_code, r.json()) == (200, []), other
        far = loc | {"lat": 95.0, "tst": ts + 10}
        r = await http.post("/v1/owntracks", json=far)  # out of range: filtered
        assert (r.status_code, r.json()) == (200, [])
        r = await http.post("/v1/owntracks", content=b"not json")
        assert r.status_code == 400
    track = (await gateway.http.get("/v1/vehicles/owntracks-app/track",
                                    params={"since": ts - 60})).json()["positions"]  # fmt: skip
    assert [(p["lat"], p["lon"]) for p in track] == [(51.5, -0.12)]
    assert track[0].get("speed") is None and track[0].get("battery") is None
    assert track[0]["accuracy"] == 15.0


@pytest.mark.parametrize("lat", ["95", "-90.5", "inf", "nan"])
async def test_an_osmand_fix_out_of_range_is_filtered_not_refused(
    gateway: GatewayHandle, lat: str
) -> None:
    token = await gateway.register(f"range-{len(lat)}-{lat[:3]}")
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, timeout=10) as http:
        r = await http.get("/v1/osmand", params={"id": token, "lat": lat, "lon": "4"})
    assert r.status_code == 200
    [rejected] = r.json()["rejected"]
    assert rejected["reason"] == "out_of_range" and "lat" in rejected["detail"]


def test_attributes_from_each_format_are_typed_and_bounded() -> None:
    fields = {"id": "t", "lat": "52", "lon": "4", "timestamp": "1700000000", "ignition": "true",
              "fuel": "45.5", "rpm": "800", "hdop": "0.9", "driverUniqueId": "D-17",
              "motion": "0", "bad key": "x", "k" * 40: "y", "cell": "262,2,801,86355"}  # fmt: skip
    p = osmand_position(fields)
    assert p.attributes == {"ignition": True, "fuel": 45.5, "rpm": 800.0, "hdop": 0.9,
                            "driverUniqueId": "D-17", "motion": False}  # fmt: skip
    many = {f"a{i}": str(i) for i in range(40)}
    p = osmand_position({"lat": "1", "lon": "2", **many})
    assert p.attributes is not None and len(p.attributes) == MAX_ATTRIBUTES
    body = traccar_body("t", 1_700_000_000, 1.0, 2.0)
    extras = {"heartbeat": True, "trip": "T-9", "nested": {"a": 1}}
    body["location"] |= {"event": "heartbeat", "mock": True, "extras": extras}
    p = osmand_position(body)
    assert p.attributes == {"motion": True, "charge": False, "event": "heartbeat",
                            "activity": "in_vehicle", "mock": True, "heartbeat": True,
                            "trip": "T-9"}  # fmt: skip
    msg = {"_type": "location", "lat": 1, "lon": 2, "tst": 1_700_000_000, "t": "u",
           "conn": "m", "bs": 2, "tid": "ad", "inregions": ["x"]}  # fmt: skip
    o = owntracks_position(msg)
    assert o is not None and o.attributes == {"t": "u", "conn": "m", "bs": 2.0, "tid": "ad",
                                              "charge": True}  # fmt: skip
    assert osmand_position({"lat": "1", "lon": "2"}).attributes is None


async def test_attributes_are_stored_shown_and_ignition_while_stopped_is_idling(
    gateway: GatewayHandle,
) -> None:
    token = await gateway.register("van-attrs")
    ts = int(time.time()) - 60
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, timeout=10) as http:
        r = await http.get("/v1/osmand", params={"id": token, "lat": 52.0, "lon": 4.0,
                                                  "timestamp": ts, "speed": 0,
                                                  "ignition": "true", "fuel": "61"})  # fmt: skip
        assert r.status_code == 200
    state = (await gateway.http.get("/v1/vehicles/van-attrs")).json()
    assert state["status"] == "idling"
    assert state["attributes"] == {"ignition": True, "fuel": 61.0}
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, timeout=10) as http:
        r = await http.get("/v1/osmand", params={"id": token, "lat": 52.0, "lon": 4.0,
                                                  "timestamp": ts + 10, "speed": 0,
                                                  "ignition": "false"})  # fmt: skip
    state = (await gateway.http.get("/v1/vehicles/van-attrs")).json()
    assert state["status"] == "stopped"
    assert state["attributes"] == {"ignition": False, "fuel": 61.0}  # the latest of each
    track = (await gateway.http.get("/v1/vehicles/van-attrs/track",
                                    params={"since": ts - 10})).json()["positions"]  # fmt: skip
    assert [p.get("attributes") for p in track] == [
        {"ignition": True, "fuel": 61.0},
        {"ignition": False},
    ]
