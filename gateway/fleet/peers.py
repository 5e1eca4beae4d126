"""Vehicle states shared between gateway processes on one Redis.

After each write batch a process publishes the new states of the batch's vehicles on the
channel ``live:states`` (one message per batch). Every other process takes them into its
in-memory fleet and its browsers' streams, so a browser connected to any process sees every
vehicle, and the REST API of any process answers with the latest state. A vehicle whose
newest state came from another process is that process's to mark offline.

What is published while a process is not subscribed (Redis restarting, a failover, a
network blip, the process starting) is lost to it: once subscribed, it reads every stored
state and takes those newer than its own.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import trio

from gateway.core.keys import LIVE_STATES as CHANNEL
from gateway.core.metrics import Metrics
from gateway.core.pubsub import follow_channel
from gateway.fleet.hub import Hub
from gateway.fleet.state import Fleet, VehicleState, decode_state, later
from gateway.fleet.store import Store
from notify.redis_client import RedisClient, publish

log = logging.getLogger(__name__)

# A publish that reached no other process: nobody else listens, so the next ones are skipped
# for this long. A process that starts meanwhile loaded every state from Redis when it
# started; it hears this one's updates at most this much later.
ALONE_RECHECK_S: Final = 1.0

_enc: Final = msgspec.msgpack.Encoder()
# The origin first, the states left unread: a process skips its own messages cheaply.
_head: Final = msgspec.msgpack.Decoder(tuple[str, msgspec.Raw])
_states: Final = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


class Peers:
    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        hub: Hub,
        metrics: Metrics,
        on_remote: Callable[[str, float], None] = lambda vehicle, ts: None,
    ) -> None:
        self.store = store
        self.redis: RedisClient[bytes] = store.redis
        self.fleet = fleet
        self.hub = hub
        self.metrics = metrics
        self.origin = secrets.token_hex(8)
        # Told of each vehicle whose newer state came from another process (vehicle, fix time).
        self.on_remote = on_remote
        self._alone_until = -math.inf  # trio time until which publishing is skipped
        self._skipped = metrics.key("gateway_peer_publish_skipped_total")
        self._catch_up_due = trio.Event()

    async def announce(self, states: Sequence[tuple[str, bytes]]) -> None:
        """Tell the other processes these vehicles' new states (best effort)."""
        if not states:
            return
        now = trio.current_time()
        if now < self._alone_until:
            self.metrics.add(self._skipped)
            return
        try:
            receivers = await publish(self.redis, CHANNEL, _enc.encode((self.origin, list(states))))
        except Exception as exc:
            self.metrics.inc("gateway_peer_publish_errors_total")
            log.warning("could not share vehicle states: %s", exc)
            return
        if receivers <= 1:  # this process's own subscription at most
            self._alone_until = now + ALONE_RECHECK_S

    async def _received(self, data: bytes) -> None:
        try:
            origin, rest = _head.decode(data)
            if origin == self.origin:
                return
            states = _states.decode(rest)
        except msgspec.DecodeError:
            return
        for _, blob in states:
            self._take(decode_state(blob))
        self.metrics.inc("gateway_peer_states_total", len(states))

    def _take(self, state: VehicleState) -> None:
        if not self.fleet.take_remote(state):
            return
        self.on_remote(state.vehicle, state.ts)
        self.hub.publish_state(state)

    async def catch_up(self) -> int:
        """Take every stored state newer than the one held here; returns how many."""
        taken = 0
        for blob in (await self.store.load_states()).values():
            state = decode_state(blob)
            if later(state, self.fleet.vehicles.get(state.vehicle)):
                self._take(state)
                taken += 1
        self.metrics.inc("gateway_peer_states_caught_up_total", taken)
        return taken

    async def _catch_up_when_due(self) -> None:
        while True:
            await self._catch_up_due.wait()
            self._catch_up_due = trio.Event()
            # A process that published to no one while this one was not subscribed skips
            # publishing for up to this long after: wait for what it writes meanwhile too.
            await trio.sleep(ALONE_RECHECK_S)
            try:
                await self.catch_up()
            except Exception as exc:
                log.warning("vehicle states not caught up, trying again: %s", exc)
                self._catch_up_due.set()

    async def _subscribed(self) -> None:
        self._catch_up_due.set()

    async def follow(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._catch_up_when_due)
            await follow_channel(
                self.redis,
                CHANNEL,
                self._received,
                on_subscribed=self._subscribed,
                on_outage=self._outage,
                task_status=task_status,
            )

    def _outage(self, service: str) -> None:
        self.metrics.inc("gateway_redis_outages_total", service=service)
