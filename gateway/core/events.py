"""The event log's one writer: every event the gateway records is a ``notify.events.Event``
(``type``, ``ts``, ``vehicle``, ``route``, ``stop``, ``delivery``, ``data``), the entry type the
notification side reads, appended here and nowhere else.

``append`` adds events in one round trip; ``queue`` adds them to a caller's MULTI/EXEC, so a
change and its events are stored together or not at all (the stream shares the ``{dispatch}``
slot of the route and delivery records). The stream is trimmed to about ``max_len`` entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import coredis
import msgspec
from coredis.patterns.pipeline import ClusterPipeline, Pipeline

from gateway.core.keys import EVENTS
from notify.events import EVENT_FIELD, Event, encode_event
from notify.redis_client import RedisClient


def event(
    etype: str,
    ts: float,
    *,
    vehicle: str | None = None,
    route: str | None = None,
    stop: str | None = None,
    delivery: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """An event of type ``etype`` at ``ts`` (epoch seconds; an int is stored as a float)."""
    return Event(
        type=etype,
        ts=float(ts),
        vehicle=vehicle,
        route=route,
        stop=stop,
        delivery=delivery,
        data={} if data is None else data,
    )


class EventLog:
    """The event log stream (``keys.EVENTS``): appends, and reads for the API and the ops page
    (each event a dict with its stream ``id``)."""

    def __init__(self, redis: RedisClient[bytes], max_len: int) -> None:
        self.redis = redis
        self.max_len = max_len

    def queue(
        self, pipe: Pipeline[bytes] | ClusterPipeline[bytes], events: Iterable[Event]
    ) -> None:
        """Add ``events`` to ``pipe`` (a transaction, or a plain pipeline)."""
        for ev in events:
            pipe.xadd(
                EVENTS,
                {EVENT_FIELD: encode_event(ev)},
                trim_strategy=coredis.PureToken.MAXLEN,
                threshold=self.max_len,
                trim_operator=coredis.PureToken.APPROXIMATELY,
            )

    async def append(self, events: Iterable[Event]) -> None:
        """Append ``events`` in one round trip."""
        pending = list(events)
        if not pending:
            return
        async with self.redis.pipeline(transaction=False) as p:
            self.queue(p, pending)

    # ----- reading

    async def read_reverse(self, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` events, newest first."""
        entries = await self.redis.xrevrange(EVENTS, "+", "-", count=count)
        return [self._event(e) for e in entries]

    async def read_after(self, last_id: str, count: int, block_ms: int) -> list[dict[str, Any]]:
        """Events after ``last_id``, waiting up to ``block_ms`` for the first one."""
        found = await self.redis.xread({EVENTS: last_id}, count=count, block=block_ms)
        if not found:
            return []
        return [self._event(e) for entries in found.values() for e in entries]

    @staticmethod
    def _event(e: Any) -> dict[str, Any]:
        ev: dict[str, Any] = msgspec.json.decode(e.field_values[EVENT_FIELD.encode()])
        ev["id"] = _text(e.identifier)
        return ev

    async def read(self, since_id: str = "-", count: int = 100) -> list[dict[str, Any]]:
        entries = await self.redis.xrange(EVENTS, since_id, "+", count=count)
        return [self._event(e) for e in entries]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
