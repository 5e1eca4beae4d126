"""The protocol-independent ingest path: validate, queue, write to Redis, acknowledge, fan out.

Every device connection (WebSocket, HTTP request, MQTT topic) has a ``Session``. A session
validates positions against its device's cursor and hands the accepted ones to the single
writer through a bounded queue (full: the session waits, which back-pressures that device's
socket and nothing else; the bound counts positions, so batch frames cannot make it hold
more than a small one would). Handing over is a plain append to the session's own pending list,
no scheduling round per frame (the frame's receive already was one); the queue holds
sessions with something pending, so the writer's work grows with the devices it serves, not
with the frames they sent. The writer drains whatever has queued into one Redis round trip,
then raises each session's durable ``seq`` and wakes its acknowledger, updates the in-memory
fleet and publishes to browsers. Nothing here waits for a browser.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final, TypeVar

import trio

from gateway.core.events import EventLog
from gateway.core.metrics import Metrics
from gateway.core.outage import REDIS_OUTAGE
from gateway.fleet.devices import DeviceRecord
from gateway.fleet.hub import Hub
from gateway.fleet.position import Position
from gateway.fleet.state import Fleet, VehicleState, encode_state
from gateway.fleet.store import Store, VehicleWrite
from gateway.ingest.validation import DeviceCursor, Limits, validate
from gateway.ingest.wire import Rejection
from notify.events import Event

log = logging.getLogger(__name__)

RETRY_MIN_S: Final = 0.1
RETRY_MAX_S: Final = 5.0

T = TypeVar("T")


def _one_run(group: list[tuple[Session, list[Position]]]) -> list[Position]:
    """The positions of several sessions of one device (a reconnect while the old
    connection's frames were still queued), in queue order, each ``seq`` once: the new
    session was checked against the cursor stored before the old one's were written."""
    out: list[Position] = []
    top = -1
    for _, positions in group:
        for p in positions:
            if p.seq > top:
                out.append(p)
                top = p.seq
    return out


class TokenBucket:
    """Sustained ``rate`` per second with bursts up to ``burst``; ``take`` returns the wait."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def available(self, now: float) -> float:
        """Tokens at ``now``, taking none."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens

    def take_now(self, n: float, now: float) -> float:
        """Take ``n`` tokens if they are there and return 0; otherwise take none and return
        the seconds until they are (infinite past ``burst``)."""
        tokens = self.tokens + (now - self.updated) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.updated = now
        if tokens >= n:
            self.tokens = tokens - n
            return 0.0
        self.tokens = tokens
        return math.inf if n > self.burst else (n - tokens) / self.rate

    def take(self, n: float, now: float) -> float:
        tokens = self.tokens + (now - self.updated) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.updated = now
        self.tokens = tokens = tokens - n
        return 0.0 if tokens >= 0 else -tokens / self.rate


# A frame is charged before it is decoded: one token, and one more per this many bytes, so
# a device sending garbage runs out of budget like one sending positions; once decoded,
# whatever the positions cost beyond that (one token each). A position takes 40-120 bytes
# (JSON), so a valid frame costs its positions; the costliest garbage to decode (bench/
# decode.py) then costs about as much CPU per token as a valid position.
FRAME_BYTES_PER_TOKEN: Final = 128
MAX_BUDGETS: Final = 1_000_000  # devices whose budget is kept in memory (oldest forgotten)


def frame_cost(size: int) -> int:
    """What a frame of ``size`` bytes is charged before it is decoded."""
    return 1 + size // FRAME_BYTES_PER_TOKEN


class Budgets:
    """Each device's rate budget: one token bucket per device, shared by all its
    connections, requests and MQTT messages in this process, so reconnecting does not refill
    it. A device's remaining budget is saved in Redis when its WebSocket closes and taken
    into account when one opens (in this process or another): the smaller of the two wins.
    A device connected to N processes at once can get N times its rate."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, device_id: str, saved: tuple[float, float] | None = None) -> TokenBucket:
        """The device's bucket; ``saved``: (tokens, wall-clock time) as ``saved`` gave it."""
        now = time.monotonic()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            if len(self._buckets) >= MAX_BUDGETS:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[device_id] = TokenBucket(self.rate, self.burst, now)
        if saved is not None:
            tokens, at = saved
            refilled = min(self.burst, tokens + max(0.0, time.time() - at) * self.rate)
            if refilled < bucket.available(now):
                bucket.tokens = refilled
        return bucket

    def saved(self, device_id: str) -> tuple[float, float] | None:
        """(tokens, wall-clock time) of the device's bucket, for another process."""
        bucket = self._buckets.get(device_id)
        return None if bucket is None else (bucket.available(time.monotonic()), time.time())


@dataclass(eq=False)
class Session:
    """One device connection's view of the ingest path."""

    pipeline: Ingest
    device: DeviceRecord
    cursor: DeviceCursor
    durable_seq: int
    on_progress: Callable[[], None] = lambda: None
    rejected: list[Rejection] = field(default_factory=list)
    bucket: TokenBucket | None = None
    _progress: trio.Event = field(default_factory=trio.Event)
    # Accepted positions waiting for the writer, in order, as the lists they were offered in
    # (a batch frame's is handed on as it is); queued: in the writer's queue.
    pending: list[list[Position]] = field(default_factory=list)
    pending_count: int = 0  # positions in ``pending``
    queued: bool = False
    queued_at: float = 0.0  # monotonic time the oldest of ``pending`` was queued
    taken_queued_at: float = 0.0  # ``queued_at`` of what the writer took last
    ack_latency: Any = None  # its protocol's child of the ack latency histogram

    async def submit(self, positions: list[Position], rejected: list[Rejection]) -> None:
        """Validate ``positions`` and queue the accepted ones for the writer.

        ``rejected`` are rejections already made while decoding. Waits only when the
        writer's queue is full.
        """
        left = self.offer(positions, rejected)
        if left is not None:
            await self.pipeline.enqueue(self, left)

    def offer(self, positions: list[Position], rejected: list[Rejection]) -> list[Position] | None:
        """``submit`` without waiting: validate and queue the accepted positions when the
        writer's queue has room; otherwise return them, for ``pipeline.enqueue`` to queue
        once it has. The receive loops call this and await only when it returns a list.
        """
        p = self.pipeline
        accepted, bad = validate(self.cursor, positions, time.time(), p.limits)
        if bad or rejected:
            for r in (*rejected, *bad):
                p.metrics.inc("gateway_positions_rejected_total", reason=str(r.reason))
            self.rejected.extend(rejected)
            self.rejected.extend(bad)
            if not accepted:
                self.on_progress()
        if accepted:
            p.metrics.add(p.accepted_key, len(accepted))
            if not p.append_nowait(self, accepted):
                return accepted
        return None

    def pulse(self) -> None:
        """Wake every ``wait_durable`` (the ``on_progress`` of request/response protocols)."""
        event, self._progress = self._progress, trio.Event()
        event.set()

    async def wait_durable(self, seq: int) -> None:
        """Return once positions up to ``seq`` are in Redis; needs ``on_progress = pulse``."""
        while self.durable_seq < seq:
            await self._progress.wait()

    def take_rejected(self) -> list[Rejection]:
        out, self.rejected = self.rejected, []
        return out


class Ingest:
    """Sessions, the writer and its queue."""

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        hub: Hub,
        metrics: Metrics,
        limits: Limits,
        *,
        queue_size: int,
        max_batch: int,
        linger_s: float,
        event_log: EventLog,
        after_write: Callable[[list[tuple[str, list[Position]]]], Awaitable[None]] | None = None,
        after_states: Callable[[list[tuple[str, bytes]]], Awaitable[None]] | None = None,
        rate_per_s: float = math.inf,
        burst: float = math.inf,
    ) -> None:
        self.store = store
        self.budgets = Budgets(rate_per_s, burst)
        self.fleet = fleet
        self.hub = hub
        self.metrics = metrics
        self.limits = limits
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.event_log = event_log
        self.after_write = after_write
        self.after_states = after_states
        self.accepted_key = metrics.key("gateway_positions_accepted_total")
        self.queue_size = queue_size
        self._queue: deque[Session] = deque()  # sessions with positions pending
        self._queued = 0  # positions pending in all of them
        self._closed = False
        self._work = trio.Event()  # set while the queue holds something (or on close)
        # Sessions waiting for room, in order, with the positions each brings: the writer
        # wakes as many as the room it made takes, not every one of them.
        self._waiting: deque[tuple[int, trio.Event]] = deque()
        self._overloaded = False  # in an episode of a full queue (logged once each)
        metrics.gauge_fn("gateway_writer_queue_depth", lambda: float(self._queued))

    async def keep_alive(self, device: DeviceRecord) -> None:
        """A request of ``device`` that holds no fix (cell towers or Wi-Fi only): its vehicle
        is seen now, not offline (``Fleet.touch``)."""
        state, events = self.fleet.touch(device.vehicle, time.time())
        if state is None:
            return
        self.hub.publish_state(state)
        for ev in events:
            self.metrics.inc("gateway_events_total", type=ev.type)
        if events:
            await self._until_done(self.event_log.append, events)

    async def open_session(self, device: DeviceRecord, proto: str = "ws") -> Session:
        """A session for ``device``, with its cursor and its rate budget (what another
        process saved of it counted in)."""
        raw, saved = await self.store.load_session(device.vehicle, device.id)
        cursor = DeviceCursor.from_tuple(raw) if raw else DeviceCursor()
        session = Session(self, device, cursor, durable_seq=cursor.seq)
        session.ack_latency = self.metrics.latency.ack.labels(proto)
        session.bucket = self.budgets.bucket(device.id, saved)
        return session

    async def save_budget(self, device: DeviceRecord) -> None:
        """Leave the device's remaining budget in Redis for the process it reconnects to
        (best effort: an outage costs only that process's view of it)."""
        saved = self.budgets.saved(device.id)
        if saved is None:
            return
        try:
            await self.store.save_budget(device.vehicle, device.id, saved)
        except Exception as exc:  # an outage: the budget is advisory across processes
            self.metrics.inc("gateway_budget_save_errors_total")
            log.debug("could not save the rate budget of %s: %r", device.id, exc)

    async def enqueue(self, session: Session, positions: list[Position]) -> None:
        """Queue validated positions for the writer; waits only while the queue is full.

        Positions of one session stay in the order they were queued.
        """
        if self._queued >= self.queue_size or self._waiting:
            self._overload()
            entry = (len(positions), trio.Event())
            self._waiting.append(entry)
            try:
                await entry[1].wait()
            except BaseException:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
                if entry[1].is_set():
                    self._wake_waiters()  # the room it was given goes to the next one
                raise
            self._waiting.remove(entry)
        if self._closed:
            raise trio.ClosedResourceError("the writer is closed")
        self._append(session, positions)

    def _overload(self) -> None:
        if not self._overloaded:
            self._overloaded = True
            self.metrics.inc("gateway_writer_overloads_total")
            log.warning(
                "the writer's queue is full (%d positions, %d the most): devices are slowed "
                "until Redis writes catch up",
                self._queued,
                self.queue_size,
            )

    def _wake_waiters(self) -> None:
        """Wake the waiting sessions, oldest first, that the queue's room takes (at least
        one, so a batch larger than the room still goes in once the queue is empty)."""
        free = self.queue_size - self._queued - sum(n for n, room in self._waiting if room.is_set())
        for n, room in self._waiting:
            if room.is_set():
                continue
            if n > free and free < self.queue_size:
                break
            room.set()
            free -= n
        if self._overloaded and not self._waiting and self._queued < self.queue_size // 2:
            self._overloaded = False
            log.info("the writer's queue is back to %d positions", self._queued)

    def append_nowait(self, session: Session, positions: list[Position]) -> bool:
        """``enqueue`` when the queue has room (the common case); False when it would wait."""
        if self._queued < self.queue_size and not self._waiting and not self._closed:
            self._append(session, positions)
            return True
        return False

    def _append(self, session: Session, positions: list[Position]) -> None:
        if not session.pending:
            session.queued_at = time.monotonic()
        session.pending.append(positions)
        n = len(positions)
        session.pending_count += n
        self._queued += n
        if not session.queued:
            session.queued = True
            self._queue.append(session)
            self._work.set()

    async def run_writer(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write queued positions to Redis until ``close`` is called and the queue is empty.

        Cancelled instead, whatever is still queued was never acknowledged, so devices
        resend it; nothing acknowledged is lost either way.
        """
        task_status.started()
        while True:
            await self._work.wait()
            if not self._queue:
                return  # closed and drained
            # Let a few more frames arrive: fewer, larger Redis round trips cost less CPU
            # per position, for a few milliseconds of latency; not when a full round trip's
            # worth is already waiting.
            if not self._closed and self._queued < self.max_batch:
                await trio.sleep(self.linger_s)
            items = self._take()
            await self._flush(items, [s.taken_queued_at for s, _ in items])

    def close(self) -> None:
        """No more positions: the writer finishes what is queued, then returns."""
        self._closed = True
        self._work.set()
        for _, room in self._waiting:
            room.set()

    def _take(self) -> list[tuple[Session, list[Position]]]:
        """Sessions' pending positions from the queue, up to about ``max_batch`` (at least
        one session's)."""
        queue = self._queue
        items: list[tuple[Session, list[Position]]] = []
        n = 0
        while queue and (n < self.max_batch or not items):
            session = queue.popleft()
            session.taken_queued_at = session.queued_at
            chunks, session.pending = session.pending, []
            positions = chunks[0] if len(chunks) == 1 else list(chain.from_iterable(chunks))
            self._queued -= session.pending_count
            session.pending_count = 0
            session.queued = False
            items.append((session, positions))
            n += len(positions)
        if not queue and not self._closed:
            self._work = trio.Event()
        if self._waiting or self._overloaded:
            self._wake_waiters()
        return items

    async def _flush(
        self, items: list[tuple[Session, list[Position]]], queued_at: list[float]
    ) -> None:
        now = time.time()
        # One write per vehicle and device: each device's cursor guards its own positions.
        by_device: dict[tuple[str, str], list[tuple[Session, list[Position]]]] = {}
        for item in items:
            device = item[0].device
            by_device.setdefault((device.vehicle, device.id), []).append(item)
        writes: list[VehicleWrite] = []
        written: list[tuple[str, list[Position]]] = []
        events: list[Event] = []
        states: list[VehicleState] = []
        count = 0
        for (vehicle, device_id), group in by_device.items():
            positions = group[0][1] if len(group) == 1 else _one_run(group)
            state, evs = self.fleet.apply(vehicle, device_id, positions, now)
            events.extend(evs)
            written.append((vehicle, positions))
            count += len(positions)
            writes.append(VehicleWrite.of(vehicle, device_id, encode_state(state), positions))
            states.append(state)
        started = time.monotonic()
        dropped, replicated = await self._until_done(self.store.write_and_wait, writes, now)
        self.metrics.latency.write.observe(time.monotonic() - started)
        if not replicated:
            await self._wait_for_replicas()
        if dropped:
            # Accepted here against a cursor another process (or a retried batch) had
            # already moved past: Redis had them, and kept them once.
            self.metrics.inc("gateway_writer_already_stored_total", dropped)
        if events:
            for ev in events:
                self.metrics.inc("gateway_events_total", type=ev.type)
            await self._until_done(self.event_log.append, events)
        self.metrics.inc("gateway_writer_batches_total")
        self.metrics.inc("gateway_writer_positions_total", count)
        done = time.monotonic()
        for (s, positions), at in zip(items, queued_at, strict=True):
            if s.ack_latency is not None:
                s.ack_latency.observe(done - at)
            seq = positions[-1].seq
            if seq > s.durable_seq:
                s.durable_seq = seq
            s.on_progress()
        for state in states:
            # Customer pages wait for the live stage (their view has the ETA of the position).
            self.hub.publish_state(state, customers=False)
        if self.after_states is not None:
            await self.after_states([(w.vehicle, w.state) for w in writes])
        if self.after_write is not None:
            await self.after_write(written)

    async def _wait_for_replicas(self) -> None:
        """The batch is on the primary but fewer than ``REDIS_WAIT_REPLICAS`` replicas
        confirmed it: ask again, with the writer's backoff, until they do. Nothing is
        acknowledged meanwhile, so the queue fills and devices are slowed."""
        log.warning(
            "fewer than %d Redis replica(s) confirmed a write batch within %d ms: "
            "no acks until they do",
            self.store.wait_replicas,
            self.store.wait_timeout_ms,
        )
        delay = RETRY_MIN_S
        while True:
            self.metrics.inc("gateway_writer_replica_wait_short_total")
            await trio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)
            if await self._until_done(self.store.wait_for_replicas):
                log.info("Redis replicas confirmed the writes again: acks resume")
                return

    async def _until_done(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)``, repeated while Redis is unreachable (``REDIS_OUTAGE``): nothing
        is acknowledged meanwhile and the queue fills, which back-pressures devices; nothing
        is dropped. Any other exception is a bug: logged with its traceback, counted
        (``gateway_writer_bugs_total``) and raised, which stops the process rather than
        silently stop acknowledging. Nothing unacknowledged is lost by that: devices send it
        again, the broker delivers it again."""
        delay = RETRY_MIN_S
        while True:
            try:
                return await fn(*args)
            except REDIS_OUTAGE as exc:
                self.metrics.inc("gateway_writer_errors_total")
                log.warning("redis write failed, retrying in %.1fs: %r", delay, exc)
                await trio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
            except Exception:
                self.metrics.inc("gateway_writer_bugs_total")
                log.exception("the writer failed on something other than a Redis outage")
                raise
