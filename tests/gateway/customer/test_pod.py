"""Proof of delivery against a real gateway and Redis, files on disk."""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import msgspec
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from gateway.customer.pod import MAX_IMAGE_PIXELS, BadImage, TooManyPixels, check_image
from gateway.http.pod import MAX_FILE_BYTES
from tests.gateway.conftest import GatewayHandle
from tests.gateway.customer.test_links import issue, two_stop_route
from tests.gateway.live.test_routes import M_PER_DEG_LAT, STOP


def png(width: int = 4, height: int = 3, seed: int = 0, pixels: bytes | None = None) -> bytes:
    """A real (grey) PNG image; with ``pixels``, those as its compressed rows."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    if pixels is None:
        row = b"\x00" + bytes([(seed + x) % 256 for x in range(width)])
        pixels = zlib.compress(row * height)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))  # fmt: skip


def jpeg(seed: int = 0) -> bytes:
    """A real (tiny) JPEG image."""
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (seed % 256, 80, 160)).save(out, "JPEG")
    return out.getvalue()


def pillow_image(fmt: str, image: Image.Image | None = None, **options: object) -> bytes:
    out = io.BytesIO()
    (image or Image.new("RGB", (8, 6), "red")).save(out, fmt, **options)
    return out.getvalue()


def html_behind_png_header() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"<html><script>alert(document.cookie)</script></html>"


def test_images_are_told_by_decoding_them() -> None:
    assert check_image(png()) == "png"
    assert check_image(jpeg()) == "jpeg"
    # A phone's JPEG with a second picture in it (MPO) is a JPEG.
    mpo = pillow_image("MPO", save_all=True, append_images=[Image.new("RGB", (8, 6))])
    assert check_image(mpo) == "jpeg"
    noisy_png = pillow_image("PNG", Image.effect_noise((64, 64), 64))
    refused = {
        "html behind a PNG signature": html_behind_png_header(),
        "JPEG markers and nothing": b"\xff\xd8\xff\xe0" + b"\x00" * 10,
        "truncated PNG": noisy_png[: len(noisy_png) // 2],
        "truncated JPEG": jpeg()[: len(jpeg()) // 2],
        "GIF": pillow_image("GIF"),
        "WebP": pillow_image("WEBP"),
        "SVG": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "nothing": b"",
    }
    for what, data in refused.items():
        with pytest.raises(BadImage):
            check_image(data)
            pytest.fail(f"{what} was taken for an image")


def test_images_with_too_many_pixels_are_refused() -> None:
    wide = png(width=5001, height=MAX_IMAGE_PIXELS // 5000)  # 1 row of 5000 pixels more
    with pytest.raises(TooManyPixels, match=f"5001 x 5000 pixels, more than {MAX_IMAGE_PIXELS}"):
        check_image(wide)
    assert check_image(wide, max_pixels=5001 * 5000) == "png"
    # Far over Pillow's own bound: refused from the header, the pixels are never decoded.
    bomb = png(width=40_000, height=40_000, pixels=zlib.compress(b"\x00" * 40_001))
    with pytest.raises(TooManyPixels, match=f"more than {MAX_IMAGE_PIXELS} pixels"):
        check_image(bomb)


@given(
    st.sampled_from([png(seed=3), jpeg(seed=3)]),
    st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=6),
    st.integers(0, 2**16),
)
def test_damaged_images_are_refused_or_kept_never_an_error(
    image: bytes, changes: list[tuple[int, int]], keep: int
) -> None:
    data = bytearray(image[: max(1, keep % (len(image) + 1))])
    for at, value in changes:
        data[at % len(data)] = value
    try:
        assert check_image(bytes(data)) in {"jpeg", "png"}
    except BadImage:
        pass


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


def as_multipart(instance: dict[str, Any]) -> dict[str, Any]:
    """httpx's ``data`` and ``files`` for a form given as the object its schema describes:
    bytes are file parts, a list one part per item, anything else a text field."""
    data: dict[str, str] = {}
    files: list[tuple[str, tuple[str, bytes, str]]] = []
    for name, value in instance.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bytes):
                files.append((name, (f"{name}.png", item, "image/png")))
            else:
                data[name] = item if isinstance(item, str) else repr(item)
    return {"data": data, "files": files or None}


def as_json(instance: dict[str, Any]) -> dict[str, Any]:
    """The same form as a JSON Schema validator sees it: a file part is a (binary) string."""

    def one(item: Any) -> Any:
        return "<binary>" if isinstance(item, bytes) else item

    return {k: [one(i) for i in v] if isinstance(v, list) else one(v) for k, v in instance.items()}


async def test_the_upload_is_refused_exactly_when_its_description_forbids_it(
    gateway: GatewayHandle,
) -> None:
    """Every form below goes to a delivery completed already: one its description allows
    gets as far as the 409, one it forbids is a 400 naming the field."""
    driver, _ = await setup_route(gateway)
    spec = (await gateway.http.get("/openapi.json")).json()
    post = spec["paths"]["/v1/deliveries/{id}/pod"]["post"]
    assert post["security"] == []
    assert {"201", "400", "401", "403", "404", "409", "413", "415", "422"} <= set(post["responses"])
    schema = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    validator = jsonschema_rs.Draft202012Validator(schema)
    photo = png(seed=20)
    lat, lon = STOP
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"recipient_name": "Ada"}, 409, None),
        ({"photo": [photo]}, 409, None),
        ({"signature": photo}, 409, None),
        ({"signature": photo, "photo": []}, 409, None),  # no photo parts at all
        ({"photo": [photo] * 5, "signature": photo, "notes": "porch"}, 409, None),
        ({"recipient_name": "Ada", "lat": lat, "lon": lon, "ts": time.time()}, 409, None),
        ({"recipient_name": "Ada", "lat": "", "lon": "", "ts": ""}, 409, None),  # empty: none
        ({"recipient_name": "Ada", "app_version": "3.2"}, 409, None),  # unknown: ignored
        ({"recipient_name": " Ada ", "notes": "n" * 500}, 409, None),
        ({}, 400, None),
        ({"photo": [], "recipient_name": ""}, 400, None),
        ({"recipient_name": " \t"}, 400, None),
        ({"notes": "left at the door"}, 400, None),
        ({"recipient_name": "A" * 501}, 400, "recipient_name"),
        ({"photo": [photo], "lat": lat}, 400, "lon"),
        ({"photo": [photo], "lon": lon}, 400, "lat"),
        ({"photo": [photo], "lat": lat, "lon": ""}, 400, "lon"),
        ({"photo": [photo], "lat": "north", "lon": lon}, 400, "lat"),
        ({"photo": [photo], "lat": 90.5, "lon": lon}, 400, "lat"),
        ({"photo": [photo], "lat": lat, "lon": -180.5}, 400, "lon"),
        ({"photo": [photo] * 6}, 400, "photo"),
        ({"signature": [photo, photo]}, 400, "signature"),
        ({"photo": "a text field, not a file", "recipient_name": "Ada"}, 400, "photo"),
    ]
    auth = {"Authorization": f"Bearer {driver}"}
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, headers=auth, timeout=10) as app:
        r = await app.post("/v1/deliveries/D-S1/pod", data={"recipient_name": "Ada"})
        assert r.status_code == 201, r.text
        for instance, status, field in cases:
            what = as_json(instance)
            assert validator.is_valid(what) == (status != 400), what
            r = await app.post("/v1/deliveries/D-S1/pod", **as_multipart(instance))
            assert r.status_code == status, (what, r.text)
            if field is not None:
                assert r.json()["field"] == field, (what, r.text)
    kept = (await gateway.http.get("/v1/deliveries/D-S1/pod")).json()
    assert kept["recipient_name"] == "Ada" and kept["files"] == [] and kept["lat"] is None


async def test_parts_of_other_names_or_none_are_ignored(gateway: GatewayHandle) -> None:
    driver, _ = await setup_route(gateway)
    parts = [
        ("form-data", "a part without a name"),
        ('form-data; name="broken\\"', "a name whose quoting is broken"),
        ('form-data; name="app_version"', "3.2"),
        ('form-data; name="recipient_name"', "Ada"),
    ]
    body = "".join(f"--b\r\nContent-Disposition: {cd}\r\n\r\n{v}\r\n" for cd, v in parts)
    r = await gateway.http.post(
        "/v1/deliveries/D-S1/pod",
        content=(body + "--b--\r\n").encode(),
        headers={
            "Content-Type": "multipart/form-data; boundary=b",
            "Authorization": f"Bearer {driver}",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["recipient_name"] == "Ada"


async def test_only_a_caller_with_a_key_learns_which_deliveries_exist(
    gateway: GatewayHandle,
) -> None:
    driver, _ = await setup_route(gateway)
    form = {"recipient_name": "Ada"}
    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as anonymous:
        for ident in ("D-S1", "no-such-delivery"):
            r = await anonymous.post(f"/v1/deliveries/{ident}/pod", data=form)
            assert r.status_code == 401, (ident, r.text)
            bad = {"Authorization": "Bearer not-a-token"}
            r = await anonymous.post(f"/v1/deliveries/{ident}/pod", headers=bad, data=form)
            assert r.status_code == 401, (ident, r.text)
        r = await anonymous.post(
            "/v1/deliveries/no-such-delivery/pod",
            headers={"Authorization": f"Bearer {driver}"},
            data=form,
        )
        assert r.status_code == 404, r.text


def files_on_disk(data_dir: Path) -> list[str]:
    """Every file under ``DATA_DIR/pod``, temporary ones included, by its name."""
    root = data_dir / "pod"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_refused_uploads_leave_nothing_on_disk(
    gateway: GatewayHandle, data_dir: Path
) -> None:
    driver, _ = await setup_route(gateway)
    auth = {"Authorization": f"Bearer {driver}"}
    kept = png(seed=10)
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, headers=auth, timeout=10) as app:

        async def post(ident: str, photos: list[bytes], **form: str) -> httpx.Response:
            files = [("photo", (f"p{i}.png", p, "image/png")) for i, p in enumerate(photos)]
            return await app.post(f"/v1/deliveries/{ident}/pod", data=form, files=files)

        r = await post("D-S1", [kept])
        assert r.status_code == 201, r.text
        assert files_on_disk(data_dir) == [f"{sha(kept)}.png"]
        # Each refusal below comes after at least one good image was read.
        r = await post("D-S1", [png(seed=11)])  # completed already
        assert r.status_code == 409, r.text
        assert files_on_disk(data_dir) == [f"{sha(kept)}.png"], "409"
        r = await post("D-S2", [png(seed=12), html_behind_png_header()])
        assert (r.status_code, r.json()["field"]) == (415, "photo"), r.text
        assert files_on_disk(data_dir) == [f"{sha(kept)}.png"], "415"
        r = await post("D-S2", [png(seed=13), b"\xff\xd8\xff" + b"\x00" * MAX_FILE_BYTES])
        assert (r.status_code, r.json()["field"]) == (413, "photo"), r.text
        assert files_on_disk(data_dir) == [f"{sha(kept)}.png"], "413"
        r = await post("D-S2", [png(seed=13), png(width=5001, height=5000)])
        assert (r.status_code, r.json()["field"]) == (413, "photo"), r.text
        assert "pixels" in r.json()["error"]
        assert files_on_disk(data_dir) == [f"{sha(kept)}.png"], "pixels"
        # Out of the described range: 400; ahead of the clock, which no schema states: 422.
        refused = {"-1e300": 400, "1e300": 400, "0": 400, "nan": 400, "soon": 400,
                   str(time.time() + 3600): 422}  # fmt: skip
        for ts, status in refused.items():
            r = await post("D-S2", [png(seed=14)], ts=ts)
            assert (r.status_code, r.json()["field"]) == (status, "ts"), (ts, r.text)
            assert files_on_disk(data_dir) == [f"{sha(kept)}.png"], ts
    assert (await gateway.http.get("/v1/deliveries/D-S2")).json()["status"] != "delivered"


async def test_images_are_decoded_and_served_inert(gateway: GatewayHandle) -> None:
    driver, _ = await setup_route(gateway)
    auth = {"Authorization": f"Bearer {driver}"}
    photo, signature = jpeg(seed=1), png(seed=2)
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, headers=auth, timeout=10) as app:
        fake = ("door.png", html_behind_png_header(), "image/png")
        r = await app.post("/v1/deliveries/D-S1/pod", files=[("photo", fake)])
        assert (r.status_code, r.json()["field"]) == (415, "photo"), r.text
        # The type is the decoded one, whatever the name and the claimed type say.
        files = [("photo", ("door.png", photo, "image/png")),
                 ("signature", ("sig.jpg", signature, "image/jpeg"))]  # fmt: skip
        r = await app.post("/v1/deliveries/D-S1/pod", files=files)
        assert r.status_code == 201, r.text
    assert [(f["kind"], f["type"]) for f in r.json()["files"]] == [
        ("photo", "jpeg"),
        ("signature", "png"),
    ]
    link = await issue(gateway, "D-S1")
    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as anonymous:
        for data, itype in ((photo, "jpeg"), (signature, "png")):
            for r in (
                await gateway.http.get(f"/v1/deliveries/D-S1/pod/{sha(data)}"),
                await anonymous.get(f"/v1/track/{link}/pod/{sha(data)}"),
            ):
                assert r.status_code == 200 and r.content == data
                assert r.headers["content-type"] == f"image/{itype}"
                assert r.headers["x-content-type-options"] == "nosniff"
                assert r.headers["content-disposition"] == (
                    f'inline; filename="{sha(data)}.{itype}"'
                )
                csp = [d.strip() for d in r.headers["content-security-policy"].split(";")]
                assert "default-src 'none'" in csp and "sandbox" in csp


def connection(r: httpx.Response) -> object:
    """The client's end of the connection ``r`` came on."""
    return r.extensions["network_stream"].get_extra_info("client_addr")


def multipart_parts(field: str, size: int, filename: str | None = None) -> list[bytes]:
    """A multipart body (boundary ``b``) of one ``field`` of ``size`` bytes, in pieces."""
    name = f'name="{field}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--b\r\nContent-Disposition: form-data; {name}\r\n\r\n".encode()
    piece = b"x" * 2**16
    return [head, *[piece] * (size // len(piece)), b"\r\n--b--\r\n"]


async def post_on_own_connection(
    gateway: GatewayHandle, path: str, headers: dict[str, str], parts: list[bytes], chunked: bool
) -> tuple[int, dict[str, str], bytes]:
    """POST ``parts`` on a connection of its own, as they are or with chunked framing;
    the answer's status, headers (lower-cased names) and body, read while the body is still
    being sent (httpx would leave its request stream's generator unfinished)."""
    host, port = gateway.ep.http_url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
        parts = [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]
    else:
        head += f"Content-Length: {sum(map(len, parts))}\r\n"
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream, trio.open_nursery() as nursery:

        async def send() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(head.encode() + b"\r\n")
                for part in parts:
                    await stream.send_all(part)

        nursery.start_soon(send)
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some()
            top, _, body = data.partition(b"\r\n\r\n")
            status_line, *lines = top.decode("latin-1").split("\r\n")
            answer = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
            while len(body) < int(answer["content-length"]):
                body += await stream.receive_some()
        nursery.cancel_scope.cancel()
    return int(status_line.split()[1]), answer, body


async def test_a_refused_upload_leaves_the_connection_usable(gateway: GatewayHandle) -> None:
    """Every refusal is answered once the whole body has arrived, and the same keep-alive
    connection takes the next request."""
    driver, _ = await setup_route(gateway)
    auth = {"Authorization": f"Bearer {driver}"}
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    big = ("photo", ("b.jpg", b"\xff\xd8\xff" + b"\x00" * MAX_FILE_BYTES, "image/jpeg"))
    async with httpx.AsyncClient(
        base_url=gateway.ep.http_url, headers=auth, limits=one, timeout=5
    ) as app:

        async def same_connection(status: int, **kw: Any) -> httpx.Response:
            before = connection(await app.get("/healthz"))
            r = await app.post("/v1/deliveries/D-S1/pod", **kw)
            assert r.status_code == status, r.text
            assert isinstance(r.json()["error"], str)
            assert "close" not in r.headers.get("connection", "")
            assert connection(r) == before
            after = await app.get("/healthz")
            assert after.status_code == 200 and connection(after) == before
            return r

        # Over the 16 MiB of a body: refused from its declared length, before it is read.
        await same_connection(413, files=[big] * 4)
        r = await same_connection(413, files=[big])
        assert r.json()["field"] == "photo"
        # A text field over Quart's limit: the form is left part-read.
        await same_connection(413, data={"notes": "x" * 10 * 2**20}, files=[big])
        fake = ("photo", ("h.png", html_behind_png_header(), "image/png"))
        await same_connection(415, files=[fake])
        r = await same_connection(400, data={"recipient_name": "Ada", "ts": "-1e300"})
        assert r.json()["field"] == "ts"


async def test_a_refused_body_that_is_not_waited_for_closes_the_connection(
    gateway: GatewayHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused body whose end the gateway cannot know (no declared length, over the limit)
    or would wait too long for is answered at once with ``Connection: close``."""
    driver, _ = await setup_route(gateway)
    headers = {"Authorization": f"Bearer {driver}",
               "Content-Type": "multipart/form-data; boundary=b"}  # fmt: skip
    path = "/v1/deliveries/D-S1/pod"
    # No declared length, and over the limit after the form parser stopped reading it.
    notes = multipart_parts("notes", 40 * 2**20)
    status, answer, body = await post_on_own_connection(gateway, path, headers, notes, True)
    assert (status, answer["connection"]) == (413, "close")
    assert isinstance(msgspec.json.decode(body)["error"], str)
    # Declared longer than the gateway reads to the end.
    monkeypatch.setattr("gateway.http.body.DRAIN_MAX_BYTES", 2**20)
    photo = multipart_parts("photo", 20 * 2**20, "p.jpg")
    status, answer, body = await post_on_own_connection(gateway, path, headers, photo, False)
    assert (status, answer["connection"]) == (413, "close")
    assert isinstance(msgspec.json.decode(body)["error"], str)
    assert (await gateway.http.get("/healthz")).status_code == 200
    assert (await gateway.http.get("/v1/deliveries/D-S1")).json()["status"] != "delivered"
