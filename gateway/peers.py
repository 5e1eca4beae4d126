"""Vehicle states shared between gateway processes on one Redis.

After each write batch a process publishes the new states of the batch's vehicles on the
channel ``live:states`` (one message per batch). Every other process takes them into its
in-memory fleet and its browsers' streams, so a browser connected to any process sees every
vehicle, and the REST API of any process answers with the latest state. A vehicle whose
newest state came from another process is that process's to mark offline.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import trio

from notify.redis_client import RedisClient, publish

from .hub import Hub
from .metrics import Metrics
from .pubsub import follow_channel
from .state import Fleet, decode_state, live_json

log = logging.getLogger(__name__)

CHANNEL: Final = "live:states"
# A publish that reached no other process: nobody else listens, so the next ones are skipped
# for this long. A process that starts meanwhile loaded every state from Redis when it
# started; it hears this one's updates at most this much later.
ALONE_RECHECK_S: Final = 1.0

_enc: Final = msgspec.msgpack.Encoder()
# The origin first, the states left unread: a process skips its own messages cheaply.
_head: Final = msgspec.msgpack.Decoder(tuple[str, msgspec.Raw])
_states: Final = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


class Peers:
    def __init__(self, redis: RedisClient[bytes], fleet: Fleet, hub: Hub, metrics: Metrics) -> None:
        self.redis = redis
        self.fleet = fleet
        self.hub = hub
        self.metrics = metrics
        self.origin = secrets.token_hex(8)
        # Told of each vehicle whose newer state came from another process (vehicle, fix time).
        self.on_remote: Callable[[str, float], None] = lambda vehicle, ts: None
        self._alone_until = -math.inf  # trio time until which publishing is skipped
        self._skipped = metrics.key("gateway_peer_publish_skipped_total")

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
        for vehicle, blob in states:
            state = decode_state(blob)
            if not self.fleet.take_remote(state):
                continue
            self.on_remote(vehicle, state.ts)
            if self.hub.watched(vehicle):
                self.hub.publish(vehicle, live_json(state))
        self.metrics.inc("gateway_peer_states_total", len(states))

    async def follow(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await follow_channel(self.redis, CHANNEL, self._received, task_status=task_status)
