"""Live fan-out of vehicle updates to browsers.

Two audiences, each costing per update, not per browser per update:

* The whole fleet (ops browsers): ``FleetFeed``. Updates are collected for a tick
  (``OPS_TICK_S``); each tick's changed vehicles are encoded into one frame, once, and the
  same frame goes to every ops browser, with the tick's other messages (events, alerts),
  each also encoded once. A browser still sending an earlier frame when it asks again gets
  one frame merged from the ticks it missed (the newest state of each vehicle, built once
  per tick for all browsers behind by as much), never a queue of stale positions; one that
  fell behind the ticks kept (``KEPT_TICKS``) starts again from a snapshot (built once per
  tick, shared).
* Given vehicles (a customer's delivery): ``Subscriber``. Publishing stores the newest
  update per vehicle in every interested subscriber (a dict, so a slow browser holds at
  most one pending update per vehicle) and wakes its sender.

Publishing never waits for a browser.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

import trio

from gateway.core.metrics import Metrics
from gateway.fleet.state import VehicleState, live_json

OPS_TICK_S: Final = 0.2  # ops browsers get the fleet's changes this often (at most)
KEPT_TICKS: Final = 50  # a browser further behind than this starts from a snapshot
KEPT_MESSAGES: Final = 5000  # ... or than this many messages (events, alerts)


class Subscriber:
    """A browser watching given vehicles, and given deliveries (``changed`` is set when
    one of them changes)."""

    def __init__(self, hub: Hub, vehicles: frozenset[str], deliveries: frozenset[str]) -> None:
        self.hub = hub
        self.vehicles = vehicles
        self.deliveries = deliveries
        self.pending: dict[str, bytes] = {}
        self.changed = False
        self._wake = trio.Event()

    def delivery_changed(self) -> None:
        self.changed = True
        self._wake.set()

    def offer(self, vehicle: str, fragment: bytes) -> None:
        if vehicle in self.pending:
            self.hub.metrics.inc("gateway_browser_coalesced_total")
        self.pending[vehicle] = fragment
        self._wake.set()

    async def next_batch(self) -> tuple[dict[str, bytes], bool]:
        """Wait for updates; return and clear them: the newest per vehicle, and whether a
        delivery changed."""
        await self._wake.wait()
        self._wake = trio.Event()
        pending, self.pending = self.pending, {}
        changed, self.changed = self.changed, False
        return pending, changed

    def close(self) -> None:
        self.hub.unsubscribe(self)


class FleetFeed:
    """The whole fleet's updates and messages, one shared frame per tick."""

    def __init__(self, metrics: Metrics, tick_s: float = OPS_TICK_S) -> None:
        self.metrics = metrics
        self.tick_s = tick_s
        self.tick = 0
        self.watchers = 0
        self._changed: dict[str, bytes] = {}  # since the last tick
        self._first_offer: float | None = None  # wall time of its first update
        self._messages: list[str] = []  # since the last tick
        # (tick, that tick's changes) and (tick, message) of the ticks kept
        self._ticks: deque[tuple[int, dict[str, bytes], float]] = deque(maxlen=KEPT_TICKS)
        self._kept: deque[tuple[int, str]] = deque(maxlen=KEPT_MESSAGES)
        self._frames: dict[int, list[str]] = {}  # what is sent since tick t, built this tick
        self._oldest: dict[int, float] = {}  # ... and when its oldest update came
        self._snapshot: tuple[int, str] | None = None
        self._new = trio.Event()
        self._dirty = trio.Event()

    def offer(self, vehicle: str, fragment: bytes) -> None:
        if self._first_offer is None:
            self._first_offer = time.time()
        self._changed[vehicle] = fragment
        self._dirty.set()

    def broadcast(self, message: bytes) -> None:
        if self.watchers:
            self._messages.append(message.decode())
            self._dirty.set()

    async def run(self) -> None:
        """Close a tick every ``tick_s`` in which something changed."""
        while True:
            await self._dirty.wait()
            await trio.sleep(self.tick_s)
            self._dirty = trio.Event()
            self.tick += 1
            tick = self.tick
            changed, self._changed = self._changed, {}
            first, self._first_offer = self._first_offer, None
            if not self.watchers:
                self._ticks.clear()
                self._kept.clear()
                self._messages.clear()
                continue
            self._ticks.append((tick, changed, first if first is not None else time.time()))
            self._kept.extend((tick, m) for m in self._messages)
            self._messages = []
            self._frames = {}
            self._oldest = {}
            new, self._new = self._new, trio.Event()
            new.set()

    def snapshot(self, build: Callable[[], str]) -> tuple[int, str]:
        """The whole picture (``build`` makes it) and the tick it stands at, built once per
        tick however many browsers ask."""
        if self._snapshot is None or self._snapshot[0] != self.tick:
            self._snapshot = (self.tick, build())
        return self._snapshot

    async def next(self, after: int) -> tuple[int, list[str] | None]:
        """Wait for a tick after ``after``; return the newest tick and what a browser that
        has seen up to ``after`` is sent: the positions frame, then the messages. None: it is
        too far behind; send it a snapshot."""
        if self.tick <= after:
            await self._new.wait()
        tick = self.tick
        ticks = self._ticks
        if not ticks or ticks[0][0] > after + 1:
            return tick, None
        if self._kept and self._kept[0][0] > after + 1 and len(self._kept) == KEPT_MESSAGES:
            return tick, None
        out = self._frames.get(after)
        if out is None:
            # Built once a tick for every browser that has seen up to ``after``.
            merged: dict[str, bytes] = {}
            for t, changed, first in ticks:
                if t > after:
                    merged.update(changed)
                    if changed and after not in self._oldest:
                        self._oldest[after] = first
            out = []
            if merged:
                joined = b",".join(merged.values())
                out.append((b'{"type":"positions","vehicles":[%s]}' % joined).decode())
            messages = []
            for t, m in reversed(self._kept):
                if t <= after:
                    break
                messages.append(m)
            out.extend(reversed(messages))
            self._frames[after] = out
            if after < tick - 1:
                self.metrics.inc("gateway_browser_coalesced_total")
        return tick, out

    def oldest_update(self, after: int) -> float | None:
        """When the oldest update ``next(after)`` sent reached the feed (wall time)."""
        return self._oldest.get(after)


class Hub:
    def __init__(self, metrics: Metrics, tick_s: float = OPS_TICK_S) -> None:
        self.metrics = metrics
        self.feed = FleetFeed(metrics, tick_s)
        self._by_vehicle: dict[str, set[Subscriber]] = {}
        self._by_delivery: dict[str, set[Subscriber]] = {}
        self._subs: set[Subscriber] = set()
        metrics.gauge_fn("gateway_browsers", lambda: float(self.count()))

    def count(self) -> int:
        return self.feed.watchers + len(self._subs)

    def subscribe(self, vehicles: Iterable[str], deliveries: Iterable[str] = ()) -> Subscriber:
        sub = Subscriber(self, frozenset(vehicles), frozenset(deliveries))
        self._subs.add(sub)
        for v in sub.vehicles:
            self._by_vehicle.setdefault(v, set()).add(sub)
        for d in sub.deliveries:
            self._by_delivery.setdefault(d, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        for index, keys in ((self._by_vehicle, sub.vehicles), (self._by_delivery, sub.deliveries)):
            for k in keys:
                subs = index.get(k)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del index[k]

    def delivery_changed(self, delivery: str) -> None:
        """An event of ``delivery`` was logged (by any process): its pages read it again."""
        for sub in self._by_delivery.get(delivery, ()):
            sub.delivery_changed()

    def watched(self, vehicle: str) -> bool:
        """Whether any browser watches ``vehicle``."""
        return self.feed.watchers > 0 or vehicle in self._by_vehicle

    def publish_state(self, state: VehicleState, *, customers: bool = True) -> None:
        """A vehicle's new state to the browsers watching it; encoded only if one does.
        ``customers=False``: not to the pages of given vehicles; the live stage tells them
        (``tracked``) once it has the position's ETAs."""
        if self.feed.watchers or (customers and state.vehicle in self._by_vehicle):
            self.publish(state.vehicle, live_json(state), customers=customers)

    def publish(self, vehicle: str, fragment: bytes, *, customers: bool = True) -> None:
        if self.feed.watchers:
            self.feed.offer(vehicle, fragment)
        subs = self._by_vehicle.get(vehicle) if customers else None
        if subs:
            for sub in subs:
                sub.offer(vehicle, fragment)

    def tracked(self, vehicles: list[str]) -> None:
        """The live stage took these vehicles' newest positions: their pages look again."""
        by_vehicle = self._by_vehicle
        for vehicle in vehicles:
            subs = by_vehicle.get(vehicle)
            if subs:
                for sub in subs:
                    sub.offer(vehicle, b"")

    def broadcast(self, message: bytes) -> None:
        """A non-position message (event, alert) to the browsers that watch every vehicle."""
        self.feed.broadcast(message)
