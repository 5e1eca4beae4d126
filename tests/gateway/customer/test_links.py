"""Customer tracking links: signing, and what a link shows, against a real gateway."""

from __future__ import annotations

import json
import time
from typing import Any

import trio
from trio_websocket import open_websocket_url

from gateway.customer.links import LinkSigner
from gateway.dispatch.records import delivery_id
from tests.gateway.conftest import GatewayHandle, wait_tracked
from tests.gateway.live.test_routes import M_PER_DEG_LAT, STOP

SIGNER = LinkSigner("0123456789abcdef-secret")


def test_a_token_opens_its_delivery_until_it_expires() -> None:
    tok = SIGNER.issue("d_1", 0, expires=2000.0)
    claims = SIGNER.verify(tok, now=1000.0)
    assert claims is not None and (claims.delivery, claims.issued_ms) == ("d_1", 0)
    assert SIGNER.verify(tok, now=2001.0) is None


def test_tampered_or_foreign_tokens_are_refused() -> None:
    tok = SIGNER.issue("d_1", 0, expires=2000.0)
    payload, sig = tok.split(".")
    other = SIGNER.issue("d_2", 0, expires=2000.0).split(".")[0]
    assert SIGNER.verify(f"{other}.{sig}", now=0) is None
    assert SIGNER.verify(f"{payload}.{sig[:-2]}xx", now=0) is None
    assert LinkSigner("another-secret-of-16+").verify(tok, now=0) is None
    for junk in ("", "a.b.c", "x" * 600, "....", "not-base64!.sig", f"{payload}.é{sig[1:]}",
                 f"{payload}\udc80.{sig}", "é.é"):  # fmt: skip
        assert SIGNER.verify(junk, now=0) is None


def two_stop_route(now: float) -> dict[str, Any]:
    def recipient(name: str) -> dict[str, Any]:
        return {"name": name, "phone": "+33612345678", "email": f"{name}@example.com",
                "timezone": "Europe/Paris", "channels": ["sms"]}  # fmt: skip

    def stop(ext: str, north_m: float, who: str) -> dict[str, Any]:
        return {
            "external_id": ext,
            "location": {"lat": STOP[0] + north_m / M_PER_DEG_LAT, "lon": STOP[1]},
            "address": f"{ext} avenue",
            "window": {"start": now, "end": now + 3600},
            "service_s": 60,
            "deliveries": [{"external_id": f"D-{ext}", "recipient": recipient(who)}],
        }

    return {
        "routes": [
            {
                "external_id": "LINK-R",
                "vehicle": "van-link",
                "driver": {"name": "Marie Curie"},
                "date": "2026-11-23",
                "stops": [stop("S1", 0, "ada"), stop("S2", 3000, "bob")],
            }
        ]
    }


async def issue(gateway: GatewayHandle, ext: str) -> str:
    r = await gateway.http.post(f"/v1/deliveries/{ext}/link")
    assert r.status_code == 200, r.text
    assert r.json()["url"].endswith("/t/" + r.json()["token"])
    return str(r.json()["token"])


async def test_the_vehicle_is_shown_only_on_its_way_to_this_stop(gateway: GatewayHandle) -> None:
    token = await gateway.register("van-link")
    now = time.time()
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(now - 600))).is_success
    ada, bob = await issue(gateway, "D-S1"), await issue(gateway, "D-S2")
    view = (await gateway.http.get(f"/v1/track/{ada}", headers={"Authorization": ""})).json()
    # (No agent key needed: the link is the credential.)
    assert (view["status"], view["vehicle"], view["driver"]) == ("scheduled", None, "Marie")
    assert "recipient" not in view and "phone" not in json.dumps(view)

    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    await wait_tracked(gateway, "van-link")
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={token}") as ws:
        south = [900 - 100 * i for i in range(5)]  # metres south of Ada's stop
        fixes = [
            {"seq": i + 1, "ts": now - (5 - i) * 10, "lat": STOP[0] - m / M_PER_DEG_LAT,
             "lon": STOP[1], "speed": 10.0}
            for i, m in enumerate(south)
        ]  # fmt: skip
        await ws.send_message(json.dumps(fixes))
        with trio.fail_after(5):
            while json.loads(await ws.get_message())["seq"] < 5:
                pass
    with trio.fail_after(5):
        while True:
            view = (await gateway.http.get(f"/v1/track/{ada}")).json()
            if view["vehicle"] is not None:
                break
            await trio.sleep(0.05)
    assert view["status"] in ("out_for_delivery", "arriving")
    assert abs(view["vehicle"]["lat"] - (STOP[0] - 500 / M_PER_DEG_LAT)) < 1e-9
    assert view["eta"] is not None and view["eta_window"]["start"] <= view["eta"]
    # Bob's stop comes second: he sees his ETA but not the van heading to Ada's door.
    bob_view = (await gateway.http.get(f"/v1/track/{bob}")).json()
    assert bob_view["vehicle"] is None and bob_view["address"] == "S2 avenue"

    live_url = gateway.ep.http_url.replace("http://", "ws://") + f"/v1/track/{ada}/live"
    async with open_websocket_url(live_url) as live:
        first = json.loads(await live.get_message())
        assert first["type"] == "view" and first["view"]["reference"] == "D-S1"


async def test_bad_expired_and_revoked_links_get_403(gateway: GatewayHandle) -> None:
    await gateway.register("van-link")
    await gateway.http.put("/v1/routes", json=two_stop_route(time.time()))
    good = await issue(gateway, "D-S1")
    assert (await gateway.http.get(f"/v1/track/{good}")).status_code == 200
    assert (await gateway.http.get(f"/t/{good}")).status_code == 200
    forged = LinkSigner("wrong-secret-123456").issue(delivery_id("D-S1"), 0, time.time() + 60)
    denied = [
        await gateway.http.get(f"/v1/track/{t}") for t in (good[:-3] + "abc", forged, "nonsense")
    ]
    assert {r.status_code for r in denied} == {403}
    assert len({r.text for r in denied}) == 1  # nothing tells which check failed
    r = await gateway.http.post("/v1/deliveries/D-S1/link/revoke")
    assert r.json()["revoked"] is True
    assert (await gateway.http.get(f"/v1/track/{good}")).status_code == 403
    assert (await gateway.http.get(f"/t/{good}")).status_code == 403
    fresh = await issue(gateway, "D-S1")
    assert (await gateway.http.get(f"/v1/track/{fresh}")).status_code == 200
