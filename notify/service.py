"""The notifier: from the event log to messages, alerts and webhooks, and back to the log.

``Notifier.run`` consumes the ``events`` stream with the consumer group ``notify`` (several
gateway processes share the events, each handled by one of them), applies the rules,
queues customer messages, on-call messages and webhook requests in the outbox, raises and
resolves alerts, and runs the outbox. Outcomes of SMS and email messages go back into the
log as ``notification.sent`` / ``notification.failed`` / ``notification.delivered``.

Loop guard: ``notification.*`` events never produce messages or alerts, and webhook
deliveries write no events, so nothing the notifier writes can make it write again. They
are still sent to webhook subscribers who ask for them.

An event is acknowledged after everything it causes has been queued; a process that dies
in between leaves it pending, and another claims and handles it again. Every queued message
has an idempotency key, so the repeat queues nothing twice.

While Redis does not answer, the consumer waits (0.1 s doubling up to 5 s) and then reads
again what it had read and not acknowledged; an event whose handling Redis cut short is
handled again. The newest event handled is stored (``keys.EVENTS_POSITION``), so a consumer
group that Redis lost is created again from there, skipping nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import coredis
import msgspec
import trio

from . import keys
from .alerts import AlertStore
from .channels.base import Channel
from .deliveries import DeliveryLookup, RedisDeliveryLookup
from .events import (
    EVENT_FIELD,
    EVENTS_STREAM,
    NOTIFICATION_DELIVERED,
    NOTIFICATION_FAILED,
    NOTIFICATION_SENT,
    Event,
    decode_event,
)
from .message import Message, message_id
from .optouts import opt_in, opt_out
from .outbox import Attempt, EnqueueStatus, Outbox, OutboxConfig, default_consumer_name
from .redis_client import (
    OutageHook,
    RedisClient,
    RedisOutage,
    claim_idle_entries,
    keep_running,
    read_group,
)
from .redis_client import text as _s
from .rules import (
    Intent,
    RulesConfig,
    alert_for,
    customer_intents,
    oncall_intents,
    resolved_alert_keys,
)
from .subscriptions import Subscription, list_subscriptions
from .templates import Templates

log = logging.getLogger(__name__)

STOP_WORDS: Final = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS: Final = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS: Final = frozenset({"HELP", "INFO"})
CUSTOMER_MESSAGE: Final = "delivery.customer_message"
SUBSCRIPTIONS_CACHE_S: Final = 2.0  # webhook subscriptions are re-read at most this often
SYSTEM_ACTOR: Final = "system"


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    rules: RulesConfig = field(default_factory=RulesConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    events_batch: int = 100
    events_block_ms: int = 2000
    events_claim_idle_s: float = 60.0  # an event pending this long is handled by another process
    events_claim_interval_s: float = 30.0
    events_max_len: int = 1_000_000  # approximate trim of the events stream on our writes


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What an inbound SMS did: ``action`` and the reply text to send back (may be empty)."""

    action: str  # "opt_out", "opt_in", "help", "message"
    reply: str
    delivery: str | None = None


class Notifier:
    """The notification side of the gateway as one service.

    ``channels`` maps "sms", "email" and "webhook" to adapters (any may be missing: messages
    for a missing channel are not queued). ``link_for(delivery_id)`` returns the signed
    tracking link. ``lookup`` reads delivery records (default: ``dlv:{dispatch}:<id>`` in Redis).
    ``on_redis_outage(service)`` is called once per Redis outage that one of its services
    (the event consumer, the outbox's) waited out; ``on_not_configured(channel)`` for each
    message not queued for want of its channel.
    """

    def __init__(
        self,
        redis: RedisClient[Any],
        channels: Mapping[str, Channel],
        *,
        link_for: Callable[[str], str] | None = None,
        lookup: DeliveryLookup | None = None,
        templates: Templates | None = None,
        alerts: AlertStore | None = None,
        config: NotifierConfig | None = None,
        clock: Callable[[], float] = time.time,
        consumer: str | None = None,
        rng: random.Random | None = None,
        on_redis_outage: OutageHook | None = None,
        on_not_configured: Callable[[str], None] | None = None,
    ) -> None:
        self.redis = redis
        self.channels = dict(channels)
        self.config = config or NotifierConfig()
        self.link_for = link_for
        self.lookup = lookup or RedisDeliveryLookup(redis)
        self.templates = templates or Templates()
        self.clock = clock
        self.consumer = consumer or default_consumer_name()
        self.alerts = alerts or AlertStore(redis, clock=clock)
        self.outbox = Outbox(
            redis,
            self.channels,
            self.config.outbox,
            clock=clock,
            rng=rng,
            consumer=self.consumer,
            on_outcome=self._on_outcome,
            on_redis_outage=on_redis_outage,
        )
        self.on_redis_outage = on_redis_outage
        # Told of each message a recipient chose a channel for that has no adapter here.
        self.on_not_configured = on_not_configured
        self._emitting = RedisOutage("notification events", on_redis_outage)
        self._subs: list[Subscription] = []
        self._subs_read_at = -float("inf")

    # ----- services

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The outbox and the event consumer, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.outbox.run)
            await nursery.start(self.run_events)
            task_status.started()

    async def ensure_group(self) -> None:
        """Create the consumer group if missing: from the stored position, or, the first
        time, after the newest event (history is not replayed as messages)."""
        stored = await self.redis.get(keys.EVENTS_POSITION)
        if stored is None:
            newest = await self.redis.xrevrange(EVENTS_STREAM, count=1)
            start = _s(newest[0].identifier) if newest else "0-0"
            # Stored before the group exists, so a group lost later is never recreated at
            # "$", which would skip what was appended meanwhile.
            await self.redis.set(keys.EVENTS_POSITION, start, condition=coredis.PureToken.NX)
        else:
            start = _s(stored)
        try:
            await self.redis.xgroup_create(EVENTS_STREAM, keys.EVENTS_GROUP, start, mkstream=True)
        except coredis.exceptions.StreamDuplicateConsumerGroupError:
            pass

    async def run_events(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Consume ``events`` as ``self.consumer``; claim events idle on dead consumers."""
        outage = RedisOutage("event consumer", self.on_redis_outage)
        await outage.call(self.ensure_group)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._claim_events_loop)
            task_status.started()
            # First what this consumer left pending, then new events.
            await keep_running(self._read_events, "0", outage, self.ensure_group)

    async def _read_events(self, cursor: str) -> str:
        """Handle events after ``cursor`` (">": new ones; otherwise this consumer's pending
        ones); returns the cursor to read after."""
        entries = await read_group(
            self.redis,
            EVENTS_STREAM,
            keys.EVENTS_GROUP,
            self.consumer,
            cursor,
            self.config.events_batch,
            self.config.events_block_ms,
        )
        if not entries:
            return ">"
        for entry in entries:
            await self._handle_entry(entry)
        newest = _s(entries[-1].identifier)
        if cursor != ">":
            return newest
        await self.redis.set(keys.EVENTS_POSITION, newest)
        return ">"

    async def _claim_events_loop(self) -> None:
        outage = RedisOutage("event claimer", self.on_redis_outage)
        await keep_running(self._claim_events, None, outage, self.ensure_group)

    async def _claim_events(self, _: None) -> None:
        await trio.sleep(self.config.events_claim_interval_s)

        async def batch() -> int:
            return self.config.events_batch

        await claim_idle_entries(
            self.redis,
            EVENTS_STREAM,
            keys.EVENTS_GROUP,
            self.consumer,
            int(self.config.events_claim_idle_s * 1000),
            batch,
            self._handle_entry,
        )

    async def _handle_entry(self, entry: Any) -> None:
        entry_id = _s(entry.identifier)
        fields = entry.field_values or {}
        raw = fields.get(EVENT_FIELD.encode(), fields.get(EVENT_FIELD))
        if raw is not None:
            try:
                event = decode_event(raw)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.warning("event %s is unreadable, skipped: %s", entry_id, exc)
            else:
                if event.id is None:
                    event = msgspec.structs.replace(event, id=entry_id)
                try:
                    await self.handle_event(event)
                except coredis.exceptions.RedisError:
                    raise  # left pending: handled again once Redis answers
                except Exception:
                    # A bad record or template must not stop every later notification.
                    log.exception(
                        "event %s (%s) could not be handled; skipped", entry_id, event.type
                    )
        await self.redis.xack(EVENTS_STREAM, keys.EVENTS_GROUP, [entry_id])

    # ----- one event

    async def handle_event(self, event: Event) -> list[tuple[Message, EnqueueStatus]]:
        """Queue what ``event`` calls for and raise or resolve its alerts.

        Safe to call again with the same event (its ``id`` must be set): every message has
        an idempotency key.
        """
        now = self.clock()
        queued: list[tuple[Message, EnqueueStatus]] = []
        if not event.is_notification:
            delivery = await self.lookup.get(event.delivery) if event.delivery else None
            link = self.link_for(delivery.id) if delivery and self.link_for else None
            for intent in customer_intents(event, delivery, now, self.config.rules, link):
                # A channel this process has no adapter for is not queued at all: counted.
                if intent.channel in self.channels:
                    queued.append(await self._queue(intent, event.id, now))
                elif self.on_not_configured is not None:
                    self.on_not_configured(intent.channel)
            await self._alerts(event, now, queued)
        await self._webhooks(event, now, queued)
        return queued

    async def _alerts(
        self, event: Event, now: float, queued: list[tuple[Message, EnqueueStatus]]
    ) -> None:
        for key in resolved_alert_keys(event):
            await self.alerts.resolve_key(key, SYSTEM_ACTOR, f"resolved by {event.type}")
        spec = alert_for(event)
        if spec is None:
            return
        alert, created = await self.alerts.raise_alert(spec)
        if created:
            for intent in oncall_intents(alert.id, spec, now, self.config.rules):
                if intent.channel in self.channels:
                    queued.append(await self._queue(intent, event.id, now))

    async def _queue(
        self, intent: Intent, event_id: str | None, now: float
    ) -> tuple[Message, EnqueueStatus]:
        message = self.compose(intent, event_id, now)
        return message, await self.outbox.enqueue(message, intent.rate)

    def compose(self, intent: Intent, event_id: str | None, now: float) -> Message:
        """Render ``intent`` into a message for its channel."""
        subject = html = ""
        if intent.channel == "sms":
            text = self.templates.sms(
                intent.trigger,
                brand=intent.brand,
                language=intent.language,
                timezone=intent.timezone,
                context=intent.context,
            )
        else:
            rendered = self.templates.email(
                intent.trigger,
                brand=intent.brand,
                language=intent.language,
                timezone=intent.timezone,
                context=intent.context,
            )
            subject, text, html = rendered.subject, rendered.text, rendered.html
        return Message(
            id=message_id(intent.key),
            key=intent.key,
            channel=intent.channel,
            to=intent.to,
            trigger=intent.trigger,
            text=text,
            subject=subject,
            html=html,
            created=now,
            delivery=intent.delivery,
            event=event_id,
            not_before=intent.not_before,
            expires_at=intent.expires_at,
            urgent=intent.urgent,
        )

    async def _webhooks(
        self, event: Event, now: float, queued: list[tuple[Message, EnqueueStatus]]
    ) -> None:
        if "webhook" not in self.channels or event.id is None:
            return
        body: str | None = None
        for sub in await self._subscriptions():
            if not sub.wants(event.type):
                continue
            body = body or msgspec.json.encode(event).decode()
            key = f"wh:{sub.id}:{event.id}"
            message = Message(
                id=message_id(key),
                key=key,
                channel="webhook",
                to=sub.id,
                trigger=event.type,
                text=body,
                created=now,
                delivery=event.delivery,
                event=event.id,
            )
            queued.append((message, await self.outbox.enqueue(message)))

    async def _subscriptions(self) -> list[Subscription]:
        if trio.current_time() - self._subs_read_at > SUBSCRIPTIONS_CACHE_S:
            self._subs = await list_subscriptions(self.redis)
            self._subs_read_at = trio.current_time()
        return self._subs

    # ----- back into the event log

    async def emit(self, event: Event) -> str:
        """Append ``event`` to the ``events`` stream; returns its entry id."""
        entry_id = await self.redis.xadd(
            EVENTS_STREAM,
            {EVENT_FIELD: msgspec.json.encode(event)},
            trim_strategy=coredis.PureToken.MAXLEN,
            threshold=self.config.events_max_len,
            trim_operator=coredis.PureToken.APPROXIMATELY,
        )
        return _s(entry_id)

    async def _on_outcome(self, message: Message, attempt: Attempt) -> None:
        if message.channel == "webhook" or attempt.outcome == "retry":
            return
        kind = NOTIFICATION_SENT if attempt.outcome == "sent" else NOTIFICATION_FAILED
        data: dict[str, Any] = {
            "message": message.id,
            "channel": message.channel,
            "trigger": message.trigger,
            "to": message.to,
            "attempt": attempt.n,
            "outcome": attempt.outcome,
        }
        if attempt.provider_id:
            data["provider_id"] = attempt.provider_id
        if attempt.error:
            data["reason"] = attempt.error
        if attempt.code is not None:
            data["code"] = attempt.code
        event = Event(type=kind, ts=attempt.ts, delivery=message.delivery, data=data)
        # The outcome is stored; its event waits for Redis rather than going missing.
        await self._emitting.call(self.emit, event)

    async def provider_status(
        self, provider_id: str, status: str, error_code: int | None = None
    ) -> str | None:
        """Record a delivery receipt; returns the status stored, if it changed anything."""
        changed = await self.outbox.record_provider_status(provider_id, status, error_code)
        if changed is None:
            return None
        message, stored = changed
        if stored in ("delivered", "undelivered"):
            data: dict[str, Any] = {
                "message": message.id,
                "channel": message.channel,
                "trigger": message.trigger,
                "to": message.to,
                "provider_id": provider_id,
                "status": stored,
            }
            if error_code is not None:
                data["code"] = error_code
            kind = NOTIFICATION_DELIVERED if stored == "delivered" else NOTIFICATION_FAILED
            await self.emit(Event(type=kind, ts=self.clock(), delivery=message.delivery, data=data))
        return stored

    # ----- inbound SMS

    async def inbound_sms(self, from_: str, body: str) -> InboundResult:
        """Handle a text from a customer: STOP/START/HELP keywords or a message for agents.

        A message is attached to the latest delivery texted at that number and written to
        the log as ``delivery.customer_message``, which raises an alert for agents.
        """
        words = body.strip().upper().split()
        keyword = words[0].strip(".!") if words else ""
        raw_delivery = await self.redis.get(keys.phone_delivery(from_))
        delivery_id = _s(raw_delivery) if raw_delivery is not None else None
        if keyword in STOP_WORDS and len(words) == 1:
            await opt_out(self.redis, from_)
            return InboundResult("opt_out", "", delivery_id)
        if keyword in START_WORDS and len(words) == 1:
            await opt_in(self.redis, from_)
            return InboundResult("opt_in", "", delivery_id)
        if keyword in HELP_WORDS and len(words) == 1:
            delivery = await self.lookup.get(delivery_id) if delivery_id else None
            reply = self.templates.sms(
                "help",
                brand=delivery.brand if delivery else "default",
                language=delivery.recipient.language if delivery else "en",
                context={},
            )
            return InboundResult("help", reply, delivery_id)
        delivery = await self.lookup.get(delivery_id) if delivery_id else None
        await self.emit(
            Event(
                type=CUSTOMER_MESSAGE,
                ts=self.clock(),
                delivery=delivery_id,
                route=delivery.route if delivery else None,
                stop=delivery.stop if delivery else None,
                data={"from": from_, "body": body},
            )
        )
        return InboundResult("message", "", delivery_id)


__all__ = ["InboundResult", "Notifier", "NotifierConfig"]
