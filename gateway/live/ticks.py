"""The live stage's clock: the time-driven rules every second, without new fixes.

:class:`Ticker` runs :meth:`~gateway.live.stage.TrackingStage.tick` (zone dwell, ETAs slipping
while a vehicle is silent, stopped too long, ...) every ``TICK_S`` at ``clock()``. Its events
are written by a task of their own, so Redis round trips never delay or shift the ticks; that
task also saves the trackers that emitted them at once, and every ``SAVE_EVERY_S`` the state
of every vehicle that changed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from gateway.live.persistence import SavedState
from gateway.live.stage import TrackingStage
from notify.events import Event

log = logging.getLogger(__name__)

TICK_S: Final = 1.0
TICK_BACKLOG: Final = 60  # ticks' events waiting for Redis; when full, the ticker waits
SAVE_EVERY_S: Final = 5.0
TICK_SLICE: Final = 100  # routes ticked in one step


class Ticker:
    """Ticks ``stage`` at ``clock()`` (epoch seconds); hands the events to ``write``."""

    def __init__(
        self,
        stage: TrackingStage,
        saved: SavedState,
        clock: Callable[[], float],
        write: Callable[[list[Event]], Awaitable[None]],
    ) -> None:
        self.stage = stage
        self.saved = saved
        self.clock = clock
        self.write = write
        self._send, self._recv = trio.open_memory_channel[list[Event]](TICK_BACKLOG)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._after_ticks)
            async with self._send:
                while True:
                    await trio.sleep(TICK_S)
                    await self._send.send(await self._tick(self.clock()))

    async def _tick(self, now: float) -> list[Event]:
        """``stage.tick(now)`` a slice of routes at a time, letting the rest of the process
        run between slices: a fleet's routes ticked in one step stalled it for as long."""
        events = self.stage.tick_zones(now)
        vehicles = list(self.stage.routes)
        for first in range(0, len(vehicles), TICK_SLICE):
            if first:
                await trio.lowlevel.checkpoint()
            events += self.stage.tick_routes(now, vehicles[first : first + TICK_SLICE])
        return events

    async def _after_ticks(self) -> None:
        """Write what the ticks produced; save the live state every ``SAVE_EVERY_S``."""
        last_save = trio.current_time()
        async for events in self._recv:
            await self.write(events)
            await self.saved.save_emitted()
            if trio.current_time() - last_save >= SAVE_EVERY_S:
                last_save = trio.current_time()
                try:
                    await self.saved.save_changed()
                except Exception as exc:
                    log.warning("could not save live state: %s", exc)
