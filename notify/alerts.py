"""Agent alerts: raised from events, acknowledged and resolved by agents, kept in Redis.

An alert is ``open`` until acknowledged (``acknowledged``) and then ``resolved``; who did
each and when are stored, with the time to acknowledge and to resolve. While an alert is
unresolved, raising another with the same key (the same vehicle offline again) bumps its
``count`` and ``last_seen`` instead of opening a second one.

Every change is passed to the ``listener`` given to ``AlertStore`` (an async callable, e.g.
the ``send`` of a trio memory channel the gateway reads to push to the ops WebSocket) and
published as JSON on the Redis pub/sub channel ``notify:alerts``, so gateway processes other
than the one that made the change can push it too. A change stored while Redis then fails
to publish it is kept (and logged), not undone: the event that made it is not handled again.
Each change also records its time in ``notify:{alerts}:changed`` (kept ``CHANGES_KEPT_S``):
a process whose subscription had a gap reads back what changed meanwhile
(``changed_since``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import msgspec
from coredis import PureToken

from . import keys
from .errors import NotifyError
from .redis_client import REDIS_DOWN, RedisClient, publish
from .redis_client import text as _s
from .rules import AlertSpec

log = logging.getLogger(__name__)

AlertStatus = Literal["open", "acknowledged", "resolved"]
ALERT_TTL_S: Final = 90 * 86_400  # resolved alerts are kept this long for reporting
CHANGES_KEPT_S: Final = 86_400  # how long the time of an alert's latest change is kept

_RAISE_LUA: Final = """
-- KEYS: dedupe key, alert key of the new alert, all zset, open zset, changed zset
-- ARGV: new alert JSON, new id, created, ttl, changes older than this are forgotten
local existing = redis.call('GET', KEYS[1])
if existing then return {'existing', existing} end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[5])
return {'created', ARGV[2]}
"""


class UnknownAlert(NotifyError, KeyError):
    """No alert has this id."""


class AlertStateError(NotifyError, ValueError):
    """The alert can not make this transition (e.g. acknowledging a resolved alert)."""


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key: str
    kind: str
    severity: str
    title: str
    detail: str
    status: AlertStatus = "open"
    created: float
    last_seen: float
    count: int = 1
    vehicle: str | None = None
    route: str | None = None
    stop: str | None = None
    delivery: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    time_to_ack_s: float | None = None
    time_to_resolve_s: float | None = None


AlertListener = Callable[[Alert], Awaitable[None]]

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Alert)


class AlertStore:
    """Alerts in Redis; ``listener`` is awaited with every new or changed alert."""

    def __init__(
        self,
        redis: RedisClient[Any],
        listener: AlertListener | None = None,
        *,
        clock: Callable[[], float] = time.time,
        publish: bool = True,
    ) -> None:
        self.redis = redis
        self.listener = listener
        self.clock = clock
        self.publish = publish
        self._raise_script = redis.register_script(_RAISE_LUA)

    async def raise_alert(self, spec: AlertSpec) -> tuple[Alert, bool]:
        """Open an alert, or bump the unresolved one with the same key.

        Returns the alert and whether it is new.
        """
        now = self.clock()
        alert = Alert(
            id="al_" + secrets.token_hex(8),
            key=spec.key,
            kind=spec.kind,
            severity=spec.severity,
            title=spec.title,
            detail=spec.detail,
            created=now,
            last_seen=now,
            vehicle=spec.vehicle,
            route=spec.route,
            stop=spec.stop,
            delivery=spec.delivery,
            data=dict(spec.data),
        )
        result: Any = await self._raise_script(
            keys=[
                keys.alert_dedupe(spec.key),
                keys.alert(alert.id),
                keys.ALERTS_BY_TIME,
                keys.ALERTS_OPEN,
                keys.ALERTS_CHANGED,
            ],
            args=[
                _encoder.encode(alert),
                alert.id,
                repr(now),
                ALERT_TTL_S,
                repr(now - CHANGES_KEPT_S),
            ],
        )
        outcome, alert_id = _s(result[0]), _s(result[1])
        if outcome == "created":
            await self._changed(alert)
            return alert, True
        current = await self.get(alert_id)
        if current is None:
            # The dedupe key outlived its alert; drop it and open a fresh one.
            await self.redis.delete([keys.alert_dedupe(spec.key)])
            return await self.raise_alert(spec)
        bumped = msgspec.structs.replace(
            current, count=current.count + 1, last_seen=now, detail=spec.detail
        )
        await self._store(bumped, now)
        await self._changed(bumped)
        return bumped, False

    async def get(self, alert_id: str) -> Alert | None:
        raw = await self.redis.get(keys.alert(alert_id))
        return None if raw is None else _decoder.decode(raw)

    async def list_alerts(
        self, status: AlertStatus | Literal["unresolved"] | None = "unresolved", limit: int = 200
    ) -> list[Alert]:
        """Alerts newest first; ``"unresolved"`` = open or acknowledged, ``None`` = all."""
        index = (
            keys.ALERTS_OPEN
            if status in ("unresolved", "open", "acknowledged")
            else (keys.ALERTS_BY_TIME)
        )
        ids = await self.redis.zrange(index, 0, -1, rev=True)
        out: list[Alert] = []
        if not ids:
            return out
        raws = await self.redis.mget([keys.alert(_s(i)) for i in ids])
        for raw in raws:
            if raw is None:
                continue
            alert = _decoder.decode(raw)
            if status in (None, "unresolved") or alert.status == status:
                out.append(alert)
            if len(out) >= limit:
                break
        return out

    async def changed_since(self, since: float) -> list[bytes]:
        """Every alert (its JSON, as published) whose latest change was at or after
        ``since`` (epoch seconds, at most ``CHANGES_KEPT_S`` ago), oldest change first."""
        ids = await self.redis.zrange(keys.ALERTS_CHANGED, repr(since), "+inf", PureToken.BYSCORE)
        if not ids:
            return []
        raws = await self.redis.mget([keys.alert(_s(i)) for i in ids])
        return [raw if isinstance(raw, bytes) else raw.encode() for raw in raws if raw is not None]

    async def acknowledge(self, alert_id: str, by: str) -> Alert:
        """Mark an open alert as being handled by ``by``; acknowledging twice is a no-op."""
        alert = await self._require(alert_id)
        if alert.status == "resolved":
            raise AlertStateError(f"alert {alert_id} is already resolved")
        if alert.status == "acknowledged":
            return alert
        now = self.clock()
        acked = msgspec.structs.replace(
            alert,
            status="acknowledged",
            acknowledged_at=now,
            acknowledged_by=by,
            time_to_ack_s=now - alert.created,
        )
        await self._store(acked, now)
        await self._changed(acked)
        return acked

    async def resolve(self, alert_id: str, by: str, resolution: str = "") -> Alert:
        """Close an alert; its key is free again for a new alert."""
        alert = await self._require(alert_id)
        if alert.status == "resolved":
            return alert
        return await self._resolve(alert, by, resolution)

    async def resolve_key(self, key: str, by: str, resolution: str = "") -> Alert | None:
        """Resolve the unresolved alert with ``key``, if any (e.g. the vehicle is back online)."""
        alert_id = await self.redis.get(keys.alert_dedupe(key))
        if alert_id is None:
            return None
        alert = await self.get(_s(alert_id))
        if alert is None or alert.status == "resolved":
            return None
        return await self._resolve(alert, by, resolution)

    async def _resolve(self, alert: Alert, by: str, resolution: str) -> Alert:
        now = self.clock()
        done = msgspec.structs.replace(
            alert,
            status="resolved",
            resolved_at=now,
            resolved_by=by,
            resolution=resolution or None,
            time_to_resolve_s=now - alert.created,
        )
        async with self.redis.pipeline(transaction=True) as p:
            p.set(keys.alert(done.id), _encoder.encode(done), ex=ALERT_TTL_S)
            p.zrem(keys.ALERTS_OPEN, [done.id])
            p.delete([keys.alert_dedupe(done.key)])
            _note_change(p, done.id, now)
        await self._changed(done)
        return done

    async def _require(self, alert_id: str) -> Alert:
        alert = await self.get(alert_id)
        if alert is None:
            raise UnknownAlert(alert_id)
        return alert

    async def _store(self, alert: Alert, now: float) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.set(keys.alert(alert.id), _encoder.encode(alert), ex=ALERT_TTL_S)
            _note_change(p, alert.id, now)

    async def _changed(self, alert: Alert) -> None:
        if self.publish:
            try:
                await publish(self.redis, keys.ALERTS_CHANNEL, _encoder.encode(alert))
            except REDIS_DOWN as exc:
                # Stored already; pub/sub keeps nothing for later (the other processes'
                # subscriptions are down too). Browsers see it when they next list alerts.
                log.warning("alert %s stored but not published: %r", alert.id, exc)
        if self.listener is not None:
            try:
                await self.listener(alert)
            except Exception:
                # Stored already; a failing listener (a closed channel) must not undo it.
                log.exception("alert listener failed for %s", alert.id)


def _note_change(p: Any, alert_id: str, now: float) -> None:
    """Queue on pipeline ``p``: ``alert_id`` changed at ``now``; older changes forgotten."""
    p.zadd(keys.ALERTS_CHANGED, {alert_id: now})
    p.zremrangebyscore(keys.ALERTS_CHANGED, "-inf", f"({now - CHANGES_KEPT_S!r}")


def decode_alert(raw: bytes | str) -> Alert:
    """Decode an alert as published on ``notify:alerts``."""
    return _decoder.decode(raw)
