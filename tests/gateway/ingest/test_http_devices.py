"""HTTP ingest (OsmAnd, OwnTracks, batch POST) against a real gateway and Redis."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from gateway.ingest.device_formats import KNOT_MPS, osmand_position, owntracks_position
from tests.gateway.conftest import GatewayHandle


def test_osmand_query_form_units() -> None:
    p = osmand_position(
        {"id": "x", "timestamp": "1700000000", "lat": "52.1", "lon": "4.2", "speed": "10",
         "bearing": "90", "altitude": "3", "accuracy": "5", "batt": "77"}
    )  # fmt: skip
    assert (p.ts, p.lat, p.lon, p.heading, p.alt, p.accuracy, p.battery) == (
        1700000000.0, 52.1, 4.2, 90.0, 3.0, 5.0, 77.0,
    )  # fmt: skip
    assert p.speed == pytest.approx(10 * KNOT_MPS)
    assert p.seq == 1700000000000


def test_osmand_iso_time_and_json_body() -> None:
    p = osmand_position({"timestamp": "2024-03-01 12:00:00", "lat": "1", "lon": "2"})
    assert p.ts == datetime(2024, 3, 1, 12, tzinfo=UTC).timestamp()
    body = {
        "location": {
            "timestamp": "2024-03-01T12:00:05.000Z",
            "coords": {"latitude": 1.5, "longitude": 2.5, "speed": 3.0, "heading": 10},
            "battery": {"level": 0.42},
        },
        "device_id": "tok",
    }
    p = osmand_position(body)
    assert (p.lat, p.lon, p.speed, p.heading) == (1.5, 2.5, 3.0, 10.0)
    assert p.battery == pytest.approx(42.0)


def test_owntracks_location_and_other_types() -> None:
    p = owntracks_position({"_type": "location", "lat": 1.0, "lon": 2.0, "tst": 1700000000,
                            "vel": 36, "cog": 180, "acc": 12, "batt": 50, "tid": "ab"})  # fmt: skip
    assert p is not None and p.speed == pytest.approx(10.0) and p.heading == 180.0
    assert owntracks_position({"_type": "transition", "event": "enter"}) is None
    with pytest.raises(msgspec.ValidationError):
        owntracks_position({"_type": "location", "lat": 100.0, "lon": 2.0, "tst": 1})


async def test_osmand_device_is_identified_by_its_token(gateway: GatewayHandle) -> None:
    token = await gateway.register("phone-1")
    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as client:
        now = int(time.time())
        r = await client.get("/v1/osmand", params={"id": token, "timestamp": now, "lat": 52.0,
                                                   "lon": 4.0, "speed": 5})  # fmt: skip
        assert r.status_code == 200
        r = await client.post("/v1/osmand", data={"id": token, "timestamp": now + 5,
                                                  "lat": 52.0001, "lon": 4.0})  # fmt: skip
        assert r.status_code == 200
        # The same fix again is a duplicate, not a second position; still a success, or the
        # app would send it again for ever.
        r = await client.post("/v1/osmand", data={"id": token, "timestamp": now + 5,
                                                  "lat": 52.0001, "lon": 4.0})  # fmt: skip
        assert r.status_code == 200 and r.json()["rejected"][0]["reason"] == "duplicate"
        r = await client.get("/v1/osmand", params={"id": "wrong", "lat": 1, "lon": 2})
        assert r.status_code == 401
        r = await client.get("/v1/osmand", params={"id": token, "lat": "north", "lon": 2})
        assert r.status_code == 400
    track = (await gateway.http.get("/v1/vehicles/phone-1/track")).json()["positions"]
    assert [p["lat"] for p in track] == [52.0, 52.0001]
    assert track[0]["speed"] == pytest.approx(5 * KNOT_MPS)


async def test_owntracks_with_basic_auth(gateway: GatewayHandle) -> None:
    token = await gateway.register("phone-2")
    auth = "Basic " + base64.b64encode(f"user:{token}".encode()).decode()
    msg = {"_type": "location", "lat": 48.1, "lon": 11.5, "tst": int(time.time()), "vel": 18}
    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as client:
        hdrs = {"Authorization": auth, "X-Limit-U": "user", "X-Limit-D": "phone"}
        r = await client.post("/v1/owntracks", json=msg, headers=hdrs)
        assert r.status_code == 200 and r.json() == []
        r = await client.post("/v1/owntracks", json={"_type": "waypoint"},
                              headers={"Authorization": auth})  # fmt: skip
        assert r.status_code == 200
    v = (await gateway.http.get("/v1/vehicles/phone-2")).json()
    assert (v["lat"], v["speed"]) == (48.1, 5.0)


async def test_batch_post_json_and_msgpack(gateway: GatewayHandle) -> None:
    token = await gateway.register("van-http")
    now = time.time()
    fixes = [{"seq": i, "ts": now - 10 + i, "lat": 52.0 + i * 1e-5, "lon": 4.0} for i in (1, 2, 3)]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, headers=headers) as client:
        r = await client.post("/v1/positions", json=fixes[:2])
        assert r.json() == {"type": "ack", "seq": 2, "rejected": []}
        r = await client.post(
            "/v1/positions",
            content=msgspec.msgpack.encode(
                [fixes[1], fixes[2], {**fixes[2], "seq": 4, "lat": 91.0}]
            ),
            headers={"Content-Type": "application/msgpack"},
        )
        body = msgspec.msgpack.decode(r.content)
        assert body["seq"] == 3
        assert [(x["seq"], x["reason"]) for x in body["rejected"]] == [
            (4, "out_of_range"),
            (2, "duplicate"),
        ]
        r = await client.post(
            "/v1/positions", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400 and "malformed" in r.json()["error"]
