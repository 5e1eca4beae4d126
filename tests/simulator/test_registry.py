"""Device registration against a real HTTP server (quart-trio on hypercorn)."""

import pytest
import trio

from simulator.registry import RegistrationError, Registry

from .servers import API_KEY, IngestServer, make_api, start_api


async def test_register_then_rotate_on_conflict(nursery: trio.Nursery) -> None:
    ingest = IngestServer()
    app = make_api(ingest)
    url = await start_api(nursery, app)
    async with Registry(url, API_KEY) as reg:
        tokens = await reg.register_all([("van-001", "Van 1"), ("van-002", "Van 2")])
        assert tokens == {d: ingest.devices[d].token for d in ("van-001", "van-002")}
        again = await reg.register("van-001")
    assert again != tokens["van-001"]
    assert ingest.devices["van-001"].token == again
    assert sorted(app.config["calls"]) == ["create", "create", "create", "rotate"]


async def test_wrong_api_key_is_a_registration_error(nursery: trio.Nursery) -> None:
    url = await start_api(nursery, make_api(IngestServer()))
    async with Registry(url, "wrong") as reg:
        with pytest.raises(RegistrationError) as info:
            await reg.register_all([("van-001", "Van 1"), ("van-002", "Van 2")])
    assert "HTTP 401" in info.value.reason


async def test_unreachable_gateway_gives_up_after_the_retry_window() -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with Registry(f"http://127.0.0.1:{port}", API_KEY, retry_for_s=0.3) as reg:
        with trio.fail_after(5), pytest.raises(RegistrationError) as info:
            await reg.register("van-001")
    assert "unreachable" in info.value.reason
