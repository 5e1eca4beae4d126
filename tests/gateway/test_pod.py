"""Proof of delivery against a real gateway and Redis, files on disk."""

from __future__ import annotations

import hashlib
import struct
import time
import zlib

import httpx

from gateway.pod import MAX_FILE_BYTES, sniff_image

from .conftest import GatewayHandle
from .test_links import issue, two_stop_route
from .test_live_routes import M_PER_DEG_LAT, STOP


def png(width: int = 4, height: int = 3, seed: int = 0) -> bytes:
    """A real (tiny, grey) PNG image."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + bytes([(seed + x) % 256 for x in range(width)]) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))  # fmt: skip


def test_sniffing_ignores_names_and_claims() -> None:
    assert sniff_image(png()) == "png"
    assert sniff_image(b"\xff\xd8\xff\xe0" + b"\x00" * 10) == "jpeg"
    assert sniff_image(b"GIF89a...") is None
    assert sniff_image(b"<svg>") is None


async def setup_route(gateway: GatewayHandle) -> tuple[str, str]:
    driver = await gateway.register("van-link")
    other = await gateway.register("van-other")
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(time.time()))).is_success
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    return driver, other


async def test_driver_app_completes_a_delivery_with_photos_and_signature(
    gateway: GatewayHandle,
) -> None:
    driver, other = await setup_route(gateway)
    photo, signature = png(seed=1), png(seed=2)
    form = {"recipient_name": "Ada L.", "notes": "left with neighbour", "lat": str(STOP[0]),
            "lon": str(STOP[1])}  # fmt: skip
    files = [("photo", ("door.jpg", photo, "image/jpeg")),
             ("signature", ("sig.png", signature, "image/png"))]  # fmt: skip
    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as app:
        r = await app.post("/v1/deliveries/D-S1/pod", data=form, files=files,
                           headers={"Authorization": f"Bearer {other}"})  # fmt: skip
        assert r.status_code == 403  # another vehicle's device
        r = await app.post("/v1/deliveries/D-S1/pod", data=form, files=files)
        assert r.status_code == 401
        r = await app.post("/v1/deliveries/D-S1/pod", data=form, files=files,
                           headers={"Authorization": f"Bearer {driver}"})  # fmt: skip
    assert r.status_code == 201, r.text
    pod = r.json()
    assert pod["flagged"] is False and pod["distance_m"] < 1
    assert [(f["kind"], f["type"], f["sha256"]) for f in pod["files"]] == [
        ("photo", "png", hashlib.sha256(photo).hexdigest()),
        ("signature", "png", hashlib.sha256(signature).hexdigest()),
    ]
    assert (await gateway.http.get("/v1/deliveries/D-S1")).json()["status"] == "delivered"
    evs = (await gateway.http.get("/v1/events", params={"limit": 1000})).json()["events"]
    assert "delivery.pod" in {e["type"] for e in evs}
    assert "delivery.pod_flagged" not in {e["type"] for e in evs}

    # Agents see it with their key; the customer through the tracking link only.
    sha = pod["files"][0]["sha256"]
    r = await gateway.http.get(f"/v1/deliveries/D-S1/pod/{sha}")
    assert r.content == photo and r.headers["content-type"] == "image/png"
    link = await issue(gateway, "D-S1")
    view = (await gateway.http.get(f"/v1/track/{link}")).json()
    assert view["status"] == "delivered" and view["proof"]["recipient_name"] == "Ada L."
    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as anonymous:
        assert (await anonymous.get(f"/v1/track/{link}/pod/{sha}")).content == photo
        assert (await anonymous.get(f"/v1/deliveries/D-S1/pod/{sha}")).status_code == 401
        bob = await issue(gateway, "D-S2")
        assert (await anonymous.get(f"/v1/track/{bob}/pod/{sha}")).status_code == 404


async def test_bad_uploads_are_refused_and_far_proofs_flagged(gateway: GatewayHandle) -> None:
    driver, _ = await setup_route(gateway)
    auth = {"Authorization": f"Bearer {driver}"}
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, headers=auth) as app:
        fake = ("x.jpg", b"<html>not an image</html>", "image/jpeg")
        r = await app.post("/v1/deliveries/D-S1/pod", files=[("photo", fake)])
        assert r.status_code == 415 and r.json()["field"] == "photo"
        big = b"\xff\xd8\xff" + b"\x00" * MAX_FILE_BYTES
        r = await app.post(
            "/v1/deliveries/D-S1/pod", files=[("photo", ("big.jpg", big, "image/jpeg"))]
        )
        assert r.status_code == 413
        assert (await app.post("/v1/deliveries/D-S1/pod", data={})).status_code == 400
        assert (await gateway.http.get("/v1/deliveries/D-S1")).json()["status"] != "delivered"
        far = {"recipient_name": "Ada", "lat": str(STOP[0] + 1000 / M_PER_DEG_LAT),
               "lon": str(STOP[1])}  # fmt: skip
        r = await app.post(
            "/v1/deliveries/D-S1/pod", data=far, files=[("photo", ("p.png", png(), "image/png"))]
        )
        assert r.status_code == 201 and r.json()["flagged"] is True
        assert 990 < r.json()["distance_m"] < 1010
        # Completing twice is a conflict, not a second proof.
        r = await app.post(
            "/v1/deliveries/D-S1/pod", data=far, files=[("photo", ("p.png", png(), "image/png"))]
        )
        assert r.status_code == 409
    flagged = (await gateway.http.get("/v1/events", params={"type": "delivery.pod_flagged"})).json()
    assert len(flagged["events"]) == 1
