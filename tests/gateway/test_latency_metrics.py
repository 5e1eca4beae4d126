"""The latency histograms an operator alerts on, in ``/metrics``: ack latency, the writer's
round trip, page latency and event-loop lag, fed by real traffic."""

from __future__ import annotations

import json
import re
import time

import trio
from trio_websocket import open_websocket_url

from tests.gateway.conftest import API_KEY, GatewayHandle


def histogram(text: str, name: str, **labels: str) -> tuple[float, dict[str, float]]:
    """A histogram's count and cumulative buckets (by ``le``) from the exposition."""
    want = "".join(f',{k}="{v}"' for k, v in sorted(labels.items()))
    buckets: dict[str, float] = {}
    count = -1.0
    for line in text.splitlines():
        m = re.match(rf'{name}_bucket\{{(.*)le="([^"]+)"(.*)\}} (\S+)$', line)
        if m:
            rest = (m.group(1) + m.group(3)).strip(",")
            if ("," + rest if rest else "") == want:
                buckets[m.group(2)] = float(m.group(4))
        elif line.startswith(f"{name}_count") and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            count = float(line.rsplit(" ", 1)[1])
    return count, buckets


async def test_latency_histograms_follow_the_traffic(gateway: GatewayHandle) -> None:
    token = await gateway.register("lat-van")
    live = gateway.ep.http_url.replace("http://", "ws://") + f"/v1/ops/live?key={API_KEY}"
    async with open_websocket_url(live) as ops:
        assert json.loads(await ops.get_message())["type"] == "snapshot"
        async with open_websocket_url(f"{gateway.ep.ingest_url}?token={token}") as ws:
            now = time.time()
            for seq in range(1, 6):
                fix = {"seq": seq, "ts": now - 5 + seq, "lat": 52.0 + seq * 1e-4, "lon": 4.0}
                await ws.send_message(json.dumps(fix))
                with trio.fail_after(5):
                    while json.loads(await ws.get_message())["seq"] < seq:
                        pass
        with trio.fail_after(5):
            while json.loads(await ops.get_message())["type"] != "positions":
                pass
        await trio.sleep(0.3)  # a few samples of the loop's lag
        text = await gateway.metrics()
    count, buckets = histogram(text, "gateway_ack_latency_seconds", proto="ws")
    assert count >= 5  # one observation a session per write batch: every fix waited alone
    assert buckets["+Inf"] == count and buckets["5.0"] == count  # none took seconds here
    count, _ = histogram(text, "gateway_writer_round_trip_seconds")
    assert count >= 5
    count, buckets = histogram(text, "gateway_page_latency_seconds", page="ops")
    assert count >= 1 and buckets["5.0"] == count
    count, _ = histogram(text, "gateway_event_loop_lag_seconds")
    assert count >= 2
