"""Alert changes made by any process, to this process's ops browsers, each version once.

Every change of an alert is published on ``notify:alerts``. Pub/sub keeps nothing for a
process that is not listening (Redis restarting, a failover, a network blip), so after every
subscription the feed reads back the alerts changed since it last heard from the channel
(``AlertStore.changed_since``) and pushes those its browsers do not have yet. An alert only
moves forward (open, acknowledged, resolved; its ``count`` only grows while it is
unresolved), so the feed pushes a version only if it is newer than the one it last pushed:
what the catch-up and the messages that follow it both bring goes out once.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Final

import msgspec
import trio

from gateway.core.metrics import Metrics
from gateway.core.pubsub import follow_channel
from gateway.fleet.hub import Hub
from notify.alerts import AlertStore
from notify.keys import ALERTS_CHANNEL

# Processes' clocks may differ by this much: a catch-up reads back from this long before it
# last heard from the channel (what it reads again is not pushed twice).
CATCH_UP_MARGIN_S: Final = 30.0
REMEMBERED: Final = 10_000  # alerts whose pushed version is remembered
METRIC: Final = "gateway_alerts_caught_up_total"

_RANK: Final = {"open": 0, "acknowledged": 1, "resolved": 2}


class _Version(msgspec.Struct):
    id: str
    status: str
    count: int = 1


_version: Final = msgspec.json.Decoder(_Version)


class AlertFeed:
    def __init__(
        self,
        alerts: AlertStore,
        hub: Hub,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alerts = alerts
        self.hub = hub
        self.metrics = metrics
        self.clock = clock
        # Changes from this time on (epoch s, this process's clock) may not have been heard.
        self._heard = clock()
        self._pushed: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await follow_channel(
            self.alerts.redis,
            ALERTS_CHANNEL,
            self._received,
            on_subscribed=self._catch_up,
            on_outage=self._outage,
            task_status=task_status,
        )

    async def _received(self, data: bytes) -> None:
        self._heard = self.clock()
        self._push(data)

    async def _catch_up(self) -> None:
        started = self.clock()
        pushed = sum(
            self._push(raw)
            for raw in await self.alerts.changed_since(self._heard - CATCH_UP_MARGIN_S)
        )
        self._heard = max(self._heard, started)
        if pushed:
            self.metrics.inc(METRIC, pushed)

    def _push(self, data: bytes) -> bool:
        """Send alert ``data`` (JSON) to the browsers unless they have it or a newer version."""
        try:
            v = _version.decode(data)
        except msgspec.DecodeError:
            return False
        version = (_RANK.get(v.status, 0), v.count)
        known = self._pushed.get(v.id)
        if known is not None and known >= version:
            return False
        self._pushed[v.id] = version
        self._pushed.move_to_end(v.id)
        if len(self._pushed) > REMEMBERED:
            self._pushed.popitem(last=False)
        self.hub.broadcast(b'{"type":"alert","alert":%s}' % data)
        return True

    def _outage(self, service: str) -> None:
        self.metrics.inc("gateway_redis_outages_total", service=service)
