"""Live fan-out of vehicle updates to browsers.

Each browser is a ``Subscriber`` with its own sender task. Publishing never waits: it
stores the newest update per vehicle in every interested subscriber (a dict, so a slow
browser holds at most one pending update per vehicle, the newest) and wakes its sender.
A subscriber watches every vehicle (ops) or a given set (a customer's delivery).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import trio

from gateway.core.metrics import Metrics
from gateway.fleet.state import VehicleState, live_json

ALL: Final = None


class Subscriber:
    def __init__(self, hub: Hub, vehicles: frozenset[str] | None, max_pending: int) -> None:
        self.hub = hub
        self.vehicles = vehicles
        self.max_pending = max_pending
        self.pending: dict[str, bytes] = {}
        self.extra: list[bytes] = []  # non-position messages (alerts, events), in order
        self.overflowed = False
        self._wake = trio.Event()

    def offer(self, vehicle: str, fragment: bytes) -> None:
        pending = self.pending
        if vehicle in pending:
            self.hub.metrics.inc("gateway_browser_coalesced_total")
        elif len(pending) >= self.max_pending:
            # More distinct vehicles than slots: the browser gets a fresh snapshot instead.
            self.overflowed = True
            pending.clear()
        pending[vehicle] = fragment
        self._wake.set()

    def offer_message(self, message: bytes) -> None:
        if len(self.extra) >= 1000:
            del self.extra[:500]
        self.extra.append(message)
        self._wake.set()

    async def next_batch(self) -> tuple[dict[str, bytes], list[bytes], bool]:
        """Wait for updates; return and clear (positions by vehicle, other messages, overflow)."""
        await self._wake.wait()
        self._wake = trio.Event()
        pending, self.pending = self.pending, {}
        extra, self.extra = self.extra, []
        overflowed, self.overflowed = self.overflowed, False
        return pending, extra, overflowed

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    def __init__(self, metrics: Metrics, max_pending: int) -> None:
        self.metrics = metrics
        self.max_pending = max_pending
        self._all: set[Subscriber] = set()
        self._by_vehicle: dict[str, set[Subscriber]] = {}
        metrics.gauge_fn("gateway_browsers", lambda: float(self.count()))

    def count(self) -> int:
        return len(self._all) + sum(len(s) for s in self._by_vehicle.values())

    def subscribe(self, vehicles: Iterable[str] | None = ALL) -> Subscriber:
        if vehicles is None:
            sub = Subscriber(self, None, self.max_pending)
            self._all.add(sub)
            return sub
        vs = frozenset(vehicles)
        sub = Subscriber(self, vs, max(1, len(vs)))
        for v in vs:
            self._by_vehicle.setdefault(v, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub.vehicles is None:
            self._all.discard(sub)
            return
        for v in sub.vehicles:
            subs = self._by_vehicle.get(v)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_vehicle[v]

    def watched(self, vehicle: str) -> bool:
        """Whether any browser watches ``vehicle``."""
        return bool(self._all) or vehicle in self._by_vehicle

    def publish_state(self, state: VehicleState) -> None:
        """A vehicle's new state to the browsers watching it; encoded only if one does."""
        if self.watched(state.vehicle):
            self.publish(state.vehicle, live_json(state))

    def publish(self, vehicle: str, fragment: bytes) -> None:
        for sub in self._all:
            sub.offer(vehicle, fragment)
        subs = self._by_vehicle.get(vehicle)
        if subs:
            for sub in subs:
                sub.offer(vehicle, fragment)

    def broadcast(self, message: bytes) -> None:
        """A non-position message (event, alert) to the browsers that watch every vehicle."""
        for sub in self._all:
            sub.offer_message(message)
