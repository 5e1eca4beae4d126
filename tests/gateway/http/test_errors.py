"""Bad HTTP input gets a JSON 4xx naming what is wrong, a bug a JSON 500; the connection
stays usable, and no request can take the process down."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from gateway.core.metrics import Metrics
from gateway.http.errors import install_error_handlers
from tests.gateway.conftest import API_KEY, GatewayHandle, gateway_settings, metric, start_gateway

DEEP = "[" * 5000 + "]" * 5000
HUGE = "1" + "0" * 400


async def test_every_error_is_json_and_the_connection_stays_usable(
    gateway: GatewayHandle,
) -> None:
    token = await gateway.register("fuzzed")
    now = str(int(time.time()))
    limits = httpx.Limits(max_connections=1)  # one keep-alive connection for all
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, limits=limits, timeout=5) as client:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        dev = {"Authorization": f"Bearer {token}"}
        cases: list[tuple[str, str, dict[str, object], int]] = [
            ("GET", "/no/such/page", {}, 404),
            ("DELETE", "/healthz", {}, 405),
            ("GET", "/v1/osmand", {"params": {"id": token, "lat": "north", "lon": "4",
                                              "timestamp": now}}, 400),
            ("GET", "/v1/osmand", {"params": {"id": token, "lat": "52", "lon": "4",
                                              "timestamp": HUGE}}, 400),
            ("POST", "/v1/osmand", {"params": {"id": token}, "content": DEEP,
                                    "headers": {"Content-Type": "application/json"}}, 400),
            ("POST", "/v1/osmand", {"params": {"id": token}, "headers": {
                "Content-Type": "application/json"}, "content": json.dumps({"location": {
                    "timestamp": now, "coords": {"latitude": 1, "longitude": 2},
                    "battery": 7}})}, 400),
            ("POST", "/v1/osmand", {"params": {"id": token}, "content": b'{"a": "\xff"}',
                                    "headers": {"Content-Type": "application/json"}}, 400),
            ("POST", "/v1/owntracks", {"headers": dev, "content": DEEP}, 400),
            ("POST", "/v1/owntracks", {"headers": dev, "content": json.dumps(
                {"_type": "location", "lat": 1, "lon": 2, "tst": "a while ago"})}, 400),
            ("POST", "/v1/positions", {"headers": dev, "content": DEEP}, 400),
            ("POST", "/v1/positions", {"headers": dev, "content": b"\xff\xfe"}, 400),
            ("PUT", "/v1/routes", {"headers": auth, "content": DEEP}, 400),
            ("PUT", "/v1/routes", {"headers": auth, "content": '{"routes": [' + HUGE + "]}"},
             400),
            ("PUT", "/v1/zones/z1", {"headers": auth, "content": DEEP}, 400),
            ("POST", "/v1/devices", {"headers": auth, "content": b"\xff"}, 400),
            ("POST", "/v1/devices", {"headers": auth, "content": '{"id": ' + HUGE + "}"}, 400),
        ]  # fmt: skip
        for method, path, kw, status in cases:
            r = await client.request(method, path, **kw)  # type: ignore[arg-type]
            assert r.status_code == status, (method, path, r.status_code, r.text[:200])
            assert r.headers["content-type"] == "application/json", (method, path)
            assert isinstance(r.json()["error"], str), (method, path)
            # The same keep-alive connection answers the next request.
            assert (await client.get("/healthz")).status_code == 200
        allow = (await client.delete("/healthz")).headers["allow"]
        assert "GET" in allow
    assert metric(await gateway.metrics(), "gateway_http_errors_total") == 0


async def test_refusals_before_the_body_is_read_keep_the_connection(
    gateway: GatewayHandle,
) -> None:
    """A body quart refuses as too large (413), and bodies no handler reads (404, 401), are
    waited for before the answer, so the same keep-alive connection takes the next request."""
    token = await gateway.register("big-sender")
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=gateway.ep.http_url, limits=limits, timeout=10) as c:
        big = b"[" + b" " * (17 * 2**20) + b"]"
        for path, headers, status in (
            ("/v1/positions", {"Authorization": f"Bearer {token}"}, 413),
            ("/v1/no/such/thing", {}, 404),
            ("/v1/devices", {}, 401),
        ):
            r = await c.post(path, content=big, headers=headers)
            assert r.status_code == status, (path, r.text[:200])
            assert isinstance(r.json()["error"], str)
            assert (await c.get("/healthz")).status_code == 200, path


async def raw_request(gateway: GatewayHandle, request: bytes) -> bytes:
    """Send ``request`` as it is; return the response's head, lower-cased."""
    host, port = gateway.ep.http_url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(request)
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some()
            assert chunk, data
            data += chunk
    await stream.aclose()
    return data.split(b"\r\n\r\n")[0].lower()


async def test_a_path_that_is_not_utf8_is_refused(gateway: GatewayHandle) -> None:
    # Percent-encoded, it reaches the app: a JSON 404.
    head = await raw_request(gateway, b"GET /v1/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"http/1.1 404") and b"content-type: application/json" in head
    for path in (b"/v1/routes/%ff%fe", b"/track/%ff.%fe"):
        head = await raw_request(
            gateway, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nX-API-Key: " +
            API_KEY.encode() + b"\r\n\r\n"
        )  # fmt: skip
        assert head[:12] in (b"http/1.1 404", b"http/1.1 400"), head
        assert b"content-type: application/json" in head
    # As raw bytes, the HTTP parser refuses it before the app: a 400.
    head = await raw_request(gateway, b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"http/1.1 400")


async def test_a_bug_in_a_handler_is_a_counted_json_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = QuartTrio(__name__)
    metrics = Metrics()
    install_error_handlers(app, metrics)

    @app.get("/bug")
    async def bug() -> str:
        raise ZeroDivisionError("a bug")

    client = app.test_client()
    for _ in range(3):
        r = await client.get("/bug")
        assert r.status_code == 500
        assert await r.get_json() == {"error": "internal error"}
    assert metrics.get("gateway_http_errors_total", error="ZeroDivisionError") == 3
    assert len([r for r in caplog.records if r.exc_info]) == 1


async def test_device_budget_is_shared_by_http_requests_and_answers_429(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    gw = await start_gateway(
        nursery,
        gateway_settings(redis_url, data_dir, device_rate_per_s=0.5, device_burst=3),
    )
    token = await gw.register("chatty")
    t0 = int(time.time()) - 100
    statuses = []
    async with httpx.AsyncClient(base_url=gw.ep.http_url) as client:
        for i in range(6):
            r = await client.get(
                "/v1/osmand", params={"id": token, "lat": 52, "lon": 4, "timestamp": t0 + i}
            )
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert r.json()["error"] == "rate limit exceeded"
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]
    m = await gw.metrics()
    assert metric(m, "gateway_positions_accepted_total") == statuses.count(200)
    await gw.http.aclose()
    gw.scope.cancel()
