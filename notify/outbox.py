"""The durable outbox: every notification is queued in Redis, then sent by any gateway process.

A message is appended to the stream ``notify:{notify}:outbox`` (or to the scheduled set when
it is held for quiet hours) and read by the consumer group ``notify-outbox``. A worker sends
it through its channel and acknowledges it. A transient failure puts the message in the
scheduled set with an exponential, jittered delay that is never shorter than the provider's
``Retry-After``; the scheduler moves due messages back to the stream. A permanent failure, or
a transient one after ``max_attempts``, goes to the dead-letter stream with its reason. Every
attempt is recorded, per message, and listed per delivery by ``list_notifications``.

Delivery guarantee and the in-flight window
-------------------------------------------
Each trigger is queued at most once: ``enqueue`` claims the message's idempotency key with
``SET NX`` in the same script that appends the message, so a replayed event, a second
gateway process or a retried request can not queue a second message for the same trigger of
the same delivery. From then on the message is sent at least once:

* The outcome of an attempt (sent, retry scheduled, dead-lettered) is recorded and the
  stream entry acknowledged in one transaction, so a finished message is never sent again
  and an unfinished one is never lost.
* If a worker dies after handing a message to the provider but before that transaction, the
  entry stays pending under the dead worker's name. After ``claim_idle_s`` another worker
  claims it with XAUTOCLAIM and sends it again. That is the in-flight window: at most the
  messages the worker had in flight (``concurrency``) when it died, each repeated at most
  once per crash. A message the dead worker had not yet handed over is sent once, by the
  claimer.

The idempotency key narrows the window to the one message of that trigger: a crash can repeat
it, never create a second one, and the repeat carries the same message id, as the
``Idempotency-Key`` header of a webhook and the ``Message-ID`` of an email, so a receiver
that deduplicates drops it. Twilio's Messages API takes no idempotency key, so an SMS in
flight at a crash may reach the phone twice; the attempt log marks the repeated attempt as
``resumed`` so this is visible.

Redis going away
----------------
Every loop here waits out a lost Redis (refused or dropped connections, timeouts, a server
still loading its data) with ``RedisOutage`` and carries on where it left off; nothing is
sent while Redis is down except what was already handed to the provider, whose outcome is
kept in memory and stored once Redis answers. Entries read but not finished stay pending and
are read again. A consumer group that Redis lost is created again from the start of the
stream: every entry still in it is unfinished (a finished entry is deleted).
"""

from __future__ import annotations

import collections
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal

import coredis
import msgspec
import trio
from coredis.patterns.pipeline import ClusterPipeline, Pipeline

from . import keys
from .channels.base import Channel
from .errors import PermanentError, RecipientOptedOut, TransientError
from .message import Message, SendResult, decode_message, encode_message
from .redis_client import (
    OutageHook,
    RedisClient,
    RedisOutage,
    claim_idle_entries,
    keep_running,
    read_group,
)
from .redis_client import text as _s

log = logging.getLogger(__name__)

EnqueueStatus = Literal["queued", "held", "duplicate", "rate_limited"]
Outcome = Literal["sent", "retry", "dead", "suppressed", "expired"]
# Statuses after which a message is never attempted again.
FINAL_STATUSES: Final = frozenset(
    {"sent", "delivered", "undelivered", "dead", "suppressed", "expired", "rate_limited"}
)
# Provider delivery statuses, in the order they happen; a late callback never moves a
# message backwards (Twilio's callbacks can arrive out of order).
_PROVIDER_RANK: Final = {"sent": 0, "delivered": 1, "undelivered": 1}

_ENQUEUE_LUA: Final = """
-- KEYS: idempotency, outbox stream, scheduled zset, rate counter, record hash, delivery list
-- ARGV: message, message id, idempotency ttl, not_before, now, rate limit (0: none),
--       rate window, record ttl, has delivery ('1'/'0')
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3]) then
  return 'duplicate'
end
local status
if tonumber(ARGV[6]) > 0 then
  local n = redis.call('INCR', KEYS[4])
  if n == 1 then redis.call('EXPIRE', KEYS[4], ARGV[7]) end
  if n > tonumber(ARGV[6]) then status = 'rate_limited' end
end
if not status then
  if tonumber(ARGV[4]) > tonumber(ARGV[5]) then
    redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
    status = 'held'
  else
    redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
    status = 'queued'
  end
end
redis.call('HSET', KEYS[5], 'm', ARGV[1], 'status', status, 'created', ARGV[5],
           'updated', ARGV[5])
redis.call('EXPIRE', KEYS[5], ARGV[8])
if ARGV[9] == '1' then
  redis.call('RPUSH', KEYS[6], ARGV[2])
  redis.call('EXPIRE', KEYS[6], ARGV[8])
end
return status
"""

_MOVE_DUE_LUA: Final = """
-- KEYS: scheduled zset, outbox stream. ARGV: now, max count.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'm', m)
  redis.call('ZREM', KEYS[1], m)
end
return #due
"""


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """Limits of the outbox; durations in seconds."""

    max_attempts: int = 8  # attempts in all, the first included
    backoff_base_s: float = 2.0  # delay before the second attempt
    backoff_factor: float = 2.0
    backoff_max_s: float = 900.0
    jitter: float = 0.25  # delay scaled by a random factor in [1 - jitter, 1 + jitter]
    send_timeout_s: float = 15.0
    claim_idle_s: float = 60.0  # pending this long on a silent worker: claimed by another
    claim_interval_s: float = 15.0
    concurrency: int = 16  # messages in flight per worker
    block_ms: int = 2000  # XREADGROUP block; bounds how long a stop can take to be seen
    scheduler_max_sleep_s: float = 1.0  # picks up messages scheduled by other processes
    idempotency_ttl_s: int = 14 * 86_400
    record_ttl_s: int = 30 * 86_400
    dead_max_len: int = 100_000

    def __post_init__(self) -> None:
        if self.claim_idle_s <= self.send_timeout_s:
            # Otherwise a slow but healthy send would be claimed and sent twice.
            raise ValueError("claim_idle_s must be longer than send_timeout_s")
        if self.max_attempts < 1 or self.concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")

    def retry_delay(self, failed_attempts: int, rng: random.Random) -> float:
        """Delay after the ``failed_attempts``-th failure (1 for the first)."""
        nominal = min(
            self.backoff_max_s, self.backoff_base_s * self.backoff_factor ** (failed_attempts - 1)
        )
        if self.jitter:
            nominal *= 1.0 + self.jitter * (2.0 * rng.random() - 1.0)
        return max(0.0, nominal)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` messages per ``window_s`` for one recipient, counted at ``key``."""

    key: str
    limit: int
    window_s: int


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One try to send a message, or the reason it was not tried."""

    n: int
    ts: float
    channel: str
    outcome: str
    provider_id: str | None = None
    error: str | None = None
    code: int | None = None
    retry_at: float | None = None
    resumed: bool = False  # the previous attempt was cut off by a crash; outcome unknown


class NotificationRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A message and everything that happened to it, as ``/v1/notifications`` shows it."""

    id: str
    trigger: str
    channel: str
    to: str
    delivery: str | None
    status: str
    created: float
    updated: float
    provider_id: str | None = None
    provider_status: str | None = None
    error: str | None = None
    next_attempt_at: float | None = None
    attempts: list[Attempt] = msgspec.field(default_factory=list)


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: str
    message: Message | None
    reason: str
    code: int | None
    ts: float


OutcomeHook = Callable[[Message, Attempt], Awaitable[None]]
_Pipeline = Pipeline[bytes] | ClusterPipeline[bytes]

_attempt_enc: Final = msgspec.json.Encoder()
_attempt_dec: Final = msgspec.json.Decoder(Attempt)


def default_consumer_name() -> str:
    """Unique per process start, so a restarted process never mistakes old entries for its own."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Outbox:
    """Queue, send, retry and record notifications.

    ``channels`` maps a channel name ("sms", "email", "webhook") to its adapter. ``clock``
    gives wall-clock epoch seconds (tests pass a clock driven by trio's virtual time).
    ``on_outcome`` is awaited after each attempt's outcome has been stored; the notifier
    uses it to write ``notification.*`` events. ``on_redis_outage(service)`` is called
    once per Redis outage that a service of the outbox waited out.

    ``run`` starts the scheduler, the claimer and a worker; each is also a service of its
    own (``run_worker``, ``run_scheduler``, ``run_claimer``), started with ``nursery.start``.
    """

    def __init__(
        self,
        redis: RedisClient[Any],
        channels: Mapping[str, Channel],
        config: OutboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        consumer: str | None = None,
        on_outcome: OutcomeHook | None = None,
        on_redis_outage: OutageHook | None = None,
    ) -> None:
        self.redis = redis
        self.channels = dict(channels)
        self.config = config or OutboxConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self.consumer = consumer or default_consumer_name()
        self.on_outcome = on_outcome
        self.on_redis_outage = on_redis_outage
        self._enqueue_script = redis.register_script(_ENQUEUE_LUA)
        self._move_due_script = redis.register_script(_MOVE_DUE_LUA)
        self._slots = trio.Semaphore(self.config.concurrency)
        # Entries being processed here: one read again (after an outage, or claimed while
        # its worker waits for Redis) is not processed twice at once.
        self._in_flight: set[str] = set()
        # Shared by the tasks that process messages: one warning per outage between them.
        self._sending = RedisOutage("outbox sender", on_redis_outage)
        self._wake_scheduler = trio.Event()
        self._group_ready = False
        # Attempts by outcome ("sent", "retry", "dead", ...), for the gateway's /metrics.
        self.counters: collections.Counter[str] = collections.Counter()

    # ----- queueing

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing."""
        if self._group_ready:
            return
        try:
            # From the start: every entry still in the stream is unfinished.
            await self.redis.xgroup_create(keys.OUTBOX, keys.OUTBOX_GROUP, "0", mkstream=True)
        except coredis.exceptions.StreamDuplicateConsumerGroupError:
            pass
        self._group_ready = True

    async def _recreate_group(self) -> None:
        self._group_ready = False
        await self.ensure_group()

    async def enqueue(self, message: Message, rate: RateLimit | None = None) -> EnqueueStatus:
        """Queue ``message`` once per idempotency key.

        Returns "queued", "held" (``not_before`` is in the future: waits in the scheduled
        set), "duplicate" (this key was queued before; nothing done) or "rate_limited" (the
        recipient's limit is reached; recorded, not sent, and the key is spent).
        """
        if message.channel not in self.channels:
            raise ValueError(f"no channel {message.channel!r} configured")
        now = self.clock()
        status: Any = await self._enqueue_script(
            keys=[
                keys.idempotency(message.key),
                keys.OUTBOX,
                keys.SCHEDULED,
                keys.rate(rate.key if rate else "-"),
                keys.record(message.id),
                keys.by_delivery(message.delivery or "-"),
            ],
            args=[
                encode_message(message),
                message.id,
                self.config.idempotency_ttl_s,
                repr(message.not_before),
                repr(now),
                rate.limit if rate else 0,
                rate.window_s if rate else 1,
                self.config.record_ttl_s,
                "1" if message.delivery else "0",
            ],
        )
        result = _s(status)
        if result == "held":
            self._wake_scheduler.set()
        return result  # type: ignore[return-value]

    # ----- services

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Scheduler, claimer and one worker, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run_scheduler)
            await nursery.start(self.run_claimer)
            await nursery.start(self.run_worker)
            task_status.started()

    async def run_worker(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Read the stream as ``self.consumer`` and send, ``concurrency`` messages at a time.

        Entries left pending under this consumer name (a previous run that was cancelled,
        or read just before Redis went away) are processed first.
        """
        outage = RedisOutage("outbox worker", self.on_redis_outage)
        await outage.call(self.ensure_group)
        async with trio.open_nursery() as nursery:
            task_status.started()
            await keep_running(partial(self._read, nursery), "0", outage, self._recreate_group)

    async def _read(self, nursery: trio.Nursery, cursor: str) -> str:
        """Read entries after ``cursor`` (">": new ones; otherwise this consumer's pending
        ones) and start processing them; returns the cursor to read after."""
        entries = await read_group(
            self.redis,
            keys.OUTBOX,
            keys.OUTBOX_GROUP,
            self.consumer,
            cursor,
            await self._free_slots(),
            self.config.block_ms,
        )
        if not entries:
            return ">"
        for entry in entries:
            await self._start(nursery, entry)
        # Pending entries are re-read from after the last one seen.
        return _s(entries[-1].identifier) if cursor != ">" else ">"

    async def _free_slots(self) -> int:
        """How many messages can start now, once at least one can."""
        await self._slots.acquire()
        self._slots.release()
        return max(1, self._slots.value)

    async def run_scheduler(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Move due messages (retries, quiet-hour holds) from the scheduled set to the stream."""
        outage = RedisOutage("outbox scheduler", self.on_redis_outage)
        await outage.call(self.ensure_group)
        task_status.started()
        await keep_running(self._move_due, None, outage)

    async def _move_due(self, _: None) -> None:
        self._wake_scheduler = trio.Event()
        now = self.clock()
        moved: Any = await self._move_due_script(
            keys=[keys.SCHEDULED, keys.OUTBOX], args=[repr(now), 100]
        )
        if int(moved) >= 100:
            return
        head = await self.redis.zrange(keys.SCHEDULED, 0, 0, withscores=True)
        sleep_s = self.config.scheduler_max_sleep_s
        if head:
            sleep_s = min(sleep_s, max(0.0, head[0].score - now))
        with trio.move_on_after(sleep_s):
            await self._wake_scheduler.wait()

    async def run_claimer(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Every ``claim_interval_s``, take over entries idle longer than ``claim_idle_s``."""
        outage = RedisOutage("outbox claimer", self.on_redis_outage)
        await outage.call(self.ensure_group)
        async with trio.open_nursery() as nursery:
            task_status.started()
            await keep_running(
                partial(self._claim_later, nursery), None, outage, self._recreate_group
            )

    async def _claim_later(self, nursery: trio.Nursery, _: None) -> None:
        await trio.sleep(self.config.claim_interval_s)
        await self.claim_idle(nursery)

    async def claim_idle(self, nursery: trio.Nursery) -> int:
        """Claim entries idle past ``claim_idle_s`` and start processing them in ``nursery``."""
        claimed = 0

        async def start(entry: Any) -> None:
            nonlocal claimed
            if await self._start(nursery, entry):
                log.info("claimed outbox entry %s from an idle consumer", _s(entry.identifier))
                claimed += 1

        await claim_idle_entries(
            self.redis,
            keys.OUTBOX,
            keys.OUTBOX_GROUP,
            self.consumer,
            int(self.config.claim_idle_s * 1000),
            self._free_slots,
            start,
        )
        return claimed

    # ----- processing one message

    async def _start(self, nursery: trio.Nursery, entry: Any) -> bool:
        """Process ``entry`` in ``nursery`` once a slot is free, unless it is in flight here
        already; returns whether it was started."""
        await self._slots.acquire()
        entry_id = _s(entry.identifier)
        if entry_id in self._in_flight:
            self._slots.release()
            return False
        self._in_flight.add(entry_id)
        nursery.start_soon(self._process_entry, entry_id, entry)
        return True

    async def _process_entry(self, entry_id: str, entry: Any) -> None:
        try:
            if not entry.field_values:
                # Deleted from the stream while still pending: already finished.
                await self._ack(entry_id)
                return
            raw = entry.field_values.get(b"m", entry.field_values.get("m"))
            try:
                message = decode_message(raw)
            except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
                await self._dead_unreadable(entry_id, raw, f"unreadable message: {exc}")
                return
            await self._process(entry_id, message)
        finally:
            self._in_flight.discard(entry_id)
            self._slots.release()

    async def _process(self, entry_id: str, message: Message) -> None:
        # Every Redis call here waits for Redis to answer: the entry stays in flight (and
        # holds its slot) meanwhile, and a send already made is stored once, not repeated.
        previous_status, opted_out = await self._sending.call(self._state, message)
        now = self.clock()
        if previous_status in FINAL_STATUSES:
            await self._ack(entry_id)
            return
        n = message.attempt + 1
        if message.expires_at is not None and now >= message.expires_at:
            attempt = Attempt(n=n, ts=now, channel=message.channel, outcome="expired")
            await self._finish(entry_id, message, attempt, status="expired")
            return
        if opted_out:
            attempt = Attempt(
                n=n,
                ts=now,
                channel=message.channel,
                outcome="suppressed",
                error="recipient opted out of SMS",
            )
            await self._finish(entry_id, message, attempt, status="suppressed")
            return
        resumed = previous_status == "sending"
        await self._sending.call(
            self.redis.hset,
            keys.record(message.id),
            {"status": "sending", "updated": repr(now), "attempt": str(n)},
        )
        channel = self.channels.get(message.channel)
        error: TransientError | PermanentError
        try:
            if channel is None:
                raise PermanentError(f"no channel {message.channel!r} configured")
            with trio.fail_after(self.config.send_timeout_s):
                result = await channel.send(message)
        except trio.TooSlowError:
            error = TransientError(f"send timed out after {self.config.send_timeout_s:g} s")
        except (TransientError, PermanentError) as exc:
            error = exc
        except Exception as exc:
            # A bug in an adapter: retried (and eventually dead-lettered), never dropped.
            log.exception("channel %s failed unexpectedly", message.channel)
            error = TransientError(f"unexpected error: {exc!r}")
        else:
            await self._sent(entry_id, message, result, n, resumed)
            return
        if isinstance(error, PermanentError):
            await self._dead(entry_id, message, error, n, resumed)
        elif n >= self.config.max_attempts:
            await self._dead(
                entry_id,
                message,
                PermanentError(f"gave up after {n} attempts: {error.reason}"),
                n,
                resumed,
            )
        else:
            await self._retry(entry_id, message, error, n, resumed)

    async def _state(self, message: Message) -> tuple[str | None, bool]:
        """The message's recorded status, and whether its recipient opted out of SMS."""
        async with self.redis.pipeline(transaction=False) as p:
            status = p.hget(keys.record(message.id), "status")
            opted_out = (
                p.sismember(keys.OPTOUT_SMS, message.to) if message.channel == "sms" else None
            )
        previous = await status
        return (
            _s(previous) if previous is not None else None,
            bool(await opted_out) if opted_out is not None else False,
        )

    async def _sent(
        self, entry_id: str, message: Message, result: SendResult, n: int, resumed: bool
    ) -> None:
        now = self.clock()
        attempt = Attempt(
            n=n,
            ts=now,
            channel=message.channel,
            outcome="sent",
            provider_id=result.provider_id,
            resumed=resumed,
        )
        fields = {"status": "sent", "updated": repr(now), "error": ""}
        if result.provider_id:
            fields["provider_id"] = result.provider_id

        def store(p: _Pipeline) -> None:
            p.hset(keys.record(message.id), fields)
            if result.provider_id:
                p.set(
                    keys.provider_id(result.provider_id),
                    message.id,
                    ex=self.config.record_ttl_s,
                )
            if message.channel == "sms" and message.delivery:
                p.set(
                    keys.phone_delivery(message.to),
                    message.delivery,
                    ex=self.config.record_ttl_s,
                )

        await self._conclude(entry_id, message, attempt, store)

    async def _retry(
        self, entry_id: str, message: Message, error: TransientError, n: int, resumed: bool
    ) -> None:
        now = self.clock()
        delay = self.config.retry_delay(n, self.rng)
        if error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        due = now + delay
        attempt = Attempt(
            n=n,
            ts=now,
            channel=message.channel,
            outcome="retry",
            error=error.reason,
            retry_at=due,
            resumed=resumed,
        )
        again = msgspec.structs.replace(message, attempt=n)

        def store(p: _Pipeline) -> None:
            p.zadd(keys.SCHEDULED, {encode_message(again): due})
            p.hset(
                keys.record(message.id),
                {
                    "status": "retrying",
                    "updated": repr(now),
                    "error": error.reason,
                    "next_attempt_at": repr(due),
                },
            )

        await self._conclude(entry_id, message, attempt, store)
        self._wake_scheduler.set()

    async def _dead(
        self, entry_id: str, message: Message, error: PermanentError, n: int, resumed: bool
    ) -> None:
        now = self.clock()
        attempt = Attempt(
            n=n,
            ts=now,
            channel=message.channel,
            outcome="dead",
            error=error.reason,
            code=error.code,
            resumed=resumed,
        )

        def store(p: _Pipeline) -> None:
            p.xadd(
                keys.DEAD,
                {
                    "m": encode_message(message),
                    "reason": error.reason,
                    "code": "" if error.code is None else str(error.code),
                    "ts": repr(now),
                },
                trim_strategy=coredis.PureToken.MAXLEN,
                threshold=self.config.dead_max_len,
                trim_operator=coredis.PureToken.APPROXIMATELY,
            )
            if isinstance(error, RecipientOptedOut) and message.channel == "sms":
                p.sadd(keys.OPTOUT_SMS, [message.to])
            p.hset(
                keys.record(message.id),
                {"status": "dead", "updated": repr(now), "error": error.reason},
            )

        await self._conclude(entry_id, message, attempt, store)

    async def _finish(self, entry_id: str, message: Message, attempt: Attempt, status: str) -> None:
        def store(p: _Pipeline) -> None:
            p.hset(
                keys.record(message.id),
                {"status": status, "updated": repr(attempt.ts), "error": attempt.error or ""},
            )

        await self._conclude(entry_id, message, attempt, store)

    async def _conclude(
        self,
        entry_id: str,
        message: Message,
        attempt: Attempt,
        store: Callable[[_Pipeline], None],
    ) -> None:
        """Store an attempt's outcome: what ``store`` queues, the attempt in the message's
        log, and the entry taken off the stream, in one transaction; then report it."""

        def outcome(p: _Pipeline) -> None:
            store(p)
            p.rpush(keys.attempts(message.id), [_attempt_enc.encode(attempt)])
            p.expire(keys.attempts(message.id), self.config.record_ttl_s)

        await self._store_once(entry_id, outcome)
        await self._report(message, attempt)

    async def _store_once(self, entry_id: str, store: Callable[[_Pipeline], None]) -> None:
        """Run, in one transaction, what ``store`` queues and the acknowledgement and
        deletion of ``entry_id``; tried again while Redis does not answer.

        A try whose answer was lost may have been carried out; then the entry is gone from
        the stream, and it is not carried out twice (no attempt logged twice).
        """
        tried = False

        async def once() -> None:
            nonlocal tried
            if tried and not await self.redis.xrange(keys.OUTBOX, entry_id, entry_id):
                return
            tried = True
            async with self.redis.pipeline(transaction=True) as p:
                store(p)
                p.xack(keys.OUTBOX, keys.OUTBOX_GROUP, [entry_id])
                p.xdel(keys.OUTBOX, [entry_id])

        await self._sending.call(once)

    async def _dead_unreadable(self, entry_id: str, raw: Any, reason: str) -> None:
        log.error("outbox entry %s: %s", entry_id, reason)

        def store(p: _Pipeline) -> None:
            p.xadd(
                keys.DEAD,
                {"m": raw if raw is not None else b"", "reason": reason, "code": "", "ts": "0"},
            )

        await self._store_once(entry_id, store)

    async def _ack(self, entry_id: str) -> None:
        await self._store_once(entry_id, lambda _: None)

    async def _report(self, message: Message, attempt: Attempt) -> None:
        self.counters[attempt.outcome] += 1
        if self.on_outcome is None:
            return
        try:
            await self.on_outcome(message, attempt)
        except Exception:
            # The outcome is already stored; a failing listener must not undo or repeat it.
            log.exception("outcome listener failed for %s", message.id)

    # ----- reading back

    async def get_record(self, message_id: str) -> NotificationRecord | None:
        records = await self._records([message_id])
        return records[0] if records else None

    async def list_notifications(self, delivery_id: str) -> list[NotificationRecord]:
        """Every message queued for ``delivery_id``, oldest first, with its attempts."""
        ids = await self.redis.lrange(keys.by_delivery(delivery_id), 0, -1)
        return await self._records([_s(i) for i in ids])

    async def _records(self, message_ids: Sequence[str]) -> list[NotificationRecord]:
        if not message_ids:
            return []
        async with self.redis.pipeline(transaction=False) as p:
            pending = [
                (p.hgetall(keys.record(i)), p.lrange(keys.attempts(i), 0, -1)) for i in message_ids
            ]
        out = []
        for message_id, (rec_req, att_req) in zip(message_ids, pending, strict=True):
            rec = {_s(k): _s(v) for k, v in (await rec_req).items()}
            if "m" not in rec:
                continue
            message = decode_message(rec["m"])
            out.append(
                NotificationRecord(
                    id=message_id,
                    trigger=message.trigger,
                    channel=message.channel,
                    to=message.to,
                    delivery=message.delivery,
                    status=rec.get("status", "queued"),
                    created=float(rec.get("created", message.created)),
                    updated=float(rec.get("updated", message.created)),
                    provider_id=rec.get("provider_id") or None,
                    provider_status=rec.get("provider_status") or None,
                    error=rec.get("error") or None,
                    next_attempt_at=(
                        float(rec["next_attempt_at"])
                        if rec.get("status") == "retrying" and rec.get("next_attempt_at")
                        else None
                    ),
                    attempts=[_attempt_dec.decode(a) for a in await att_req],
                )
            )
        return out

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        entries = await self.redis.xrevrange(keys.DEAD, count=count)
        out = []
        for entry in entries:
            fields = {_s(k): v for k, v in entry.field_values.items()}
            try:
                message: Message | None = decode_message(fields.get("m", b""))
            except (msgspec.ValidationError, msgspec.DecodeError):
                message = None
            code = _s(fields.get("code", b""))
            out.append(
                DeadLetter(
                    entry_id=_s(entry.identifier),
                    message=message,
                    reason=_s(fields.get("reason", b"")),
                    code=int(code) if code else None,
                    ts=float(_s(fields.get("ts", b"0")) or 0),
                )
            )
        return out

    async def record_provider_status(
        self, provider_id: str, status: str, error_code: int | None = None
    ) -> tuple[Message, str] | None:
        """Store a delivery receipt ("delivered", "undelivered", ...) for a provider's message.

        Returns the message and the status now recorded, or ``None`` when the provider id
        is unknown or the receipt is older than what is already stored.
        """
        message_id = await self.redis.get(keys.provider_id(provider_id))
        if message_id is None:
            return None
        record_key = keys.record(_s(message_id))
        raw, current = await self.redis.hmget(record_key, ["m", "provider_status"])
        if raw is None:
            return None
        rank = _PROVIDER_RANK.get(status)
        if rank is None:
            return None
        if current is not None and _PROVIDER_RANK.get(_s(current), -1) >= rank:
            return None
        fields = {"provider_status": status, "updated": repr(self.clock())}
        if status in ("delivered", "undelivered"):
            fields["status"] = status
        if error_code is not None:
            fields["error"] = f"provider error {error_code}"
        await self.redis.hset(record_key, fields)
        return decode_message(raw), status

    async def pending_count(self) -> int:
        """Entries read by some worker and not yet acknowledged."""
        info = await self.redis.xpending(keys.OUTBOX, keys.OUTBOX_GROUP)
        return int(getattr(info, "pending", 0))


def backoff_schedule(config: OutboxConfig, attempts: int) -> list[float]:
    """Nominal delays (no jitter) before attempts 2..``attempts``: for docs and tests."""
    return [
        min(config.backoff_max_s, config.backoff_base_s * config.backoff_factor**i)
        for i in range(max(0, attempts - 1))
    ]


__all__ = [
    "Attempt",
    "DeadLetter",
    "EnqueueStatus",
    "NotificationRecord",
    "Outbox",
    "OutboxConfig",
    "OutcomeHook",
    "RateLimit",
    "backoff_schedule",
    "default_consumer_name",
]
