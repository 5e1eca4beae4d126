"""API requests while Redis is away: 503 with Retry-After (after a short retry for a GET),
served again as soon as Redis is back, with no restart of the gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest
import trio
from twilio.request_validator import RequestValidator

from gateway.http.guard import METRIC, RETRIES
from notify.capture.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.gateway.conftest import GatewayHandle, gateway_settings, metric
from tests.gateway.test_redis_restart import OwnRedis, serving

RECEIPT: Final = {"MessageSid": "SM0123", "MessageStatus": "delivered"}


@pytest.fixture
def redis(data_dir: Path) -> Iterator[OwnRedis]:
    own = OwnRedis(data_dir / "own-redis")
    yield own
    own.stop()


async def receipt(gw: GatewayHandle) -> httpx.Response:
    """A delivery receipt as Twilio posts it, signed."""
    url = gw.ep.http_url + "/twilio/status"
    signature = RequestValidator(DEFAULT_AUTH_TOKEN).compute_signature(url, RECEIPT)
    return await gw.http.post(url, data=RECEIPT, headers={"X-Twilio-Signature": signature})


def unavailable(r: httpx.Response) -> bool:
    return (
        r.status_code == 503
        and int(r.headers["Retry-After"]) > 0
        and r.json()["error"] == "storage_unavailable"
    )


async def test_requests_answer_503_while_redis_is_away_and_succeed_once_it_is_back(
    redis: OwnRedis, data_dir: Path, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    settings = gateway_settings(
        redis.url,
        data_dir,
        twilio_account_sid=DEFAULT_ACCOUNT_SID,
        twilio_auth_token=DEFAULT_AUTH_TOKEN,
        twilio_api_url="http://127.0.0.1:9",  # nothing is texted
    )
    async with serving(nursery, settings) as gw:
        await gw.register("van-1")
        assert (await gw.http.get("/v1/devices/van-1")).status_code == 200
        assert (await receipt(gw)).status_code == 204

        redis.stop()
        with caplog.at_level(logging.INFO, logger="gateway.http.guard"):
            got = await gw.http.get("/v1/devices/van-1")
            assert unavailable(got), got.text
            retries = metric(await gw.metrics(), RETRIES)
            assert retries > 0  # retried
            # A POST may have written before it failed: not retried, the provider retries.
            posted = await receipt(gw)
            assert unavailable(posted), posted.text
            assert metric(await gw.metrics(), RETRIES) == retries
            assert metric(await gw.metrics(), METRIC) == 2
            ours = [r for r in caplog.records if r.name == "gateway.http.guard"]
            assert len(ours) == 1  # once per outage, not per request

            await trio.to_thread.run_sync(redis.start_again)
            assert (await gw.http.get("/v1/devices/van-1")).status_code == 200
            assert (await receipt(gw)).status_code == 204
            with trio.fail_after(10):
                while len([r for r in caplog.records if r.name == "gateway.http.guard"]) < 2:  # noqa: ASYNC110
                    await trio.sleep(0.05)

        # Redis back within the retry window: the GET made while it was away succeeds.
        redis.stop()
        async with trio.open_nursery() as requests:
            answers: list[httpx.Response] = []

            async def get() -> None:
                answers.append(await gw.http.get("/v1/devices/van-1"))

            requests.start_soon(get)
            await trio.sleep(0.3)
            await trio.to_thread.run_sync(redis.start_again)
        [answer] = answers
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == "van-1"
        assert metric(await gw.metrics(), METRIC) == 2
