"""Device ingest from an MQTT broker (when ``MQTT_URL`` is set).

Topics (configurable): our native ``fleet/{device}/pos`` (JSON or MessagePack, one position
or a batch, the WebSocket schema) and OwnTracks ``owntracks/{user}/{device}`` (``_type:
location``; other types are ignored). The device comes from the topic, looked up in the
device registry (the broker's ACLs are what stop a device publishing on another's topic):
``{device}`` for native topics, ``{user}.{device}`` for OwnTracks. Unknown or revoked
devices are refused and counted. Like a WebSocket token, a device's record is kept for
``DEVICE_CACHE_S`` (a refusal too) and then read again, so a device revoked through
another gateway process is refused within that time; revoked through this one, at once.

Messages are taken in batches: whatever the client has received by the time the previous
batch is handled (while messages arrive fast, after waiting ``BATCH_LINGER_S`` for more),
up to ``BATCH_MAX``. A batch is split
by device, keeping each device's messages in the order they arrived; each device's
positions are validated and handed to the writer together.

With ``MQTT_SHARED_GROUP`` set the gateway subscribes through ``$share/<group>/...``, so
several gateway processes split one feed. The connection is kept with reconnect and
resubscribe, backing off up to ``RECONNECT_MAX_S``; each reconnect is logged and counted
with its cause (``gateway_mqtt_reconnects_total{cause}``, see ``reconnect_cause``). The client
sends a PINGREQ every ``MQTT_KEEP_ALIVE_S`` (or the broker's server keep alive), so an idle
feed keeps its connection (``mqtt_ack``).

Retained messages: the subscription asks the broker not to keep the retain flag of live
messages ("retain as published" off), so a message with the flag set is one the broker
replays because the gateway (re)subscribed: after every reconnect, the last retained message
of each topic (OwnTracks retains every location). Its positions at or below the device's
cursor are already stored: such a message is skipped, neither stored again nor counted as a
rejection nor charged to the device's rate budget, and counted in
``gateway_mqtt_retained_total{outcome="already_stored"}``. One with newer positions (published
while the gateway was away) is handled like any message (``outcome="new"``), without the
positions it repeats; one of an unknown device is dropped (``outcome="unknown_device"``).

Acknowledgement: a QoS 1 message is acknowledged to the broker (PUBACK) only once the
positions it carried are in Redis, and after every message that arrived before it; one
that carried nothing to write (rejected, malformed, an unknown device or topic) once the
messages before it are acknowledged (see ``mqtt_ack``). With ``MQTT_CLIENT_ID`` set the
session outlives the connection for ``MQTT_SESSION_EXPIRY_S``, so what a crashed or cut-off
gateway had not acknowledged is redelivered when it connects again; positions already
stored come back as duplicates. A graceful stop (``stop_taking``) leaves none of those: it
takes no more messages, acknowledges each it took once the writer has drained it, and only
then disconnects.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Final

import anyio
import msgspec
import trio
from moat.lib.mqtt import MQTTPublishPacket, QoS

from gateway.config import Settings
from gateway.core.failures import log_once
from gateway.core.metrics import Metrics
from gateway.fleet.devices import Devices
from gateway.fleet.position import Position
from gateway.ingest.auth import TOKEN_CACHE_S
from gateway.ingest.mqtt_ack import AckingClient, DurableAcks
from gateway.ingest.mqtt_messages import (
    CONNECTION_LOST,
    decode_payload,
    leaf_errors,
    packet_payload,
    parse_mqtt_url,
    payload_bytes,
    reconnect_cause,
    topic_device,
)
from gateway.ingest.wire import MalformedFrame, Rejection
from gateway.ingest.writer import Ingest, Session, frame_cost

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

log = logging.getLogger(__name__)

RECONNECT_MIN_S: Final = 0.5
RECONNECT_MAX_S: Final = 30.0
SESSION_CACHE: Final = 100_000
DEVICE_CACHE_S: Final = TOKEN_CACHE_S
# Messages the client may hand over before its reader waits for the gateway (back-pressure
# to the broker; also the most QoS 1 messages the broker may have out unacknowledged), the
# most taken as one batch, and how long the first message of a batch waits for others
# while messages are arriving fast.
INBOX_SIZE: Final = 4_096
BATCH_MAX: Final = 2_048
BATCH_LINGER_S: Final = 0.005
MAX_KEEP_ALIVE_S: Final = 65_535  # the protocol's two bytes
_any_json: Final = msgspec.json.Decoder()
# A message: topic, payload, and whether it is a retained one replayed on (re)subscribe.
Message = tuple[str, bytes | str, bool]


class Inbox:
    """A connection's messages, taken in batches. The client hands every message to
    ``send``; once ``size`` wait there, its reader waits for the gateway (back-pressure to
    the broker)."""

    def __init__(self, size: int = INBOX_SIZE) -> None:
        self.send, self._recv = anyio.create_memory_object_stream[MQTTPublishPacket](size)
        self._busy = False  # the last batch had more than one message
        self.stopping = False
        self._waiting: trio.CancelScope | None = None  # while ``batch`` waits for a first

    def __enter__(self) -> Inbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.send.close()
        self._recv.close()

    def stop(self) -> None:
        """Wait for no more messages: from now on ``batch`` takes what is there and returns
        an empty list once nothing is (the client must hand over no more by then)."""
        self.stopping = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def batch(
        self, limit: int = BATCH_MAX, linger_s: float = BATCH_LINGER_S
    ) -> list[MQTTPublishPacket]:
        """The next messages in arrival order, at most ``limit``: waits for one and takes
        what has arrived with it. While messages come in faster than one per batch, the
        first also waits ``linger_s`` for others (fewer, larger batches cost less per
        message); a lone message does not wait. Once stopping, waits for nothing."""
        recv = self._recv
        out: list[MQTTPublishPacket] = []
        if not self.stopping:
            # Only the wait for the first message is cut short by ``stop``: a message
            # taken is never dropped.
            with trio.CancelScope() as self._waiting:
                out.append(await recv.receive())
            self._waiting = None
            if out and self._busy and recv.statistics().current_buffer_used < limit - 1:
                await trio.sleep(linger_s)
        while len(out) < limit:
            try:
                out.append(recv.receive_nowait())
            except anyio.WouldBlock:
                break
        self._busy = len(out) > 1
        return out


class MqttIngest:
    def __init__(
        self, settings: Settings, writer: Ingest, devices: Devices, metrics: Metrics
    ) -> None:
        s = settings
        self.settings = settings
        self.writer = writer
        self.devices = devices
        self.metrics = metrics
        self.url = parse_mqtt_url(s.mqtt_url)
        self.topics = [t.strip() for t in s.mqtt_topics.split(",") if t.strip()]
        group = s.mqtt_shared_group.strip()
        self.patterns = [f"$share/{group}/{t}" if group else t for t in self.topics]
        self.client_id = s.mqtt_client_id or f"fleetgate-{random.getrandbits(40):010x}"
        if not 0 <= s.mqtt_keep_alive_s <= MAX_KEEP_ALIVE_S:
            raise ValueError(f"mqtt_keep_alive_s must be 0 to {MAX_KEEP_ALIVE_S} seconds")
        self.keep_alive_s = s.mqtt_keep_alive_s
        # A fixed client id can come back for its session; a random one never would.
        self.session_expiry_s = s.mqtt_session_expiry_s if s.mqtt_client_id else 0
        self.sessions: dict[str, Session] = {}
        self.refused: dict[str, float] = {}  # device id -> refused until (trio clock)
        self.checked: dict[str, float] = {}  # device id -> its record is current until
        self._topics: dict[str, tuple[str, str] | None] = {}
        self._frames_key = {
            proto: metrics.key("gateway_frames_total", proto="mqtt", enc=proto)
            for proto in ("native", "owntracks")
        }
        self._retained_key = {
            outcome: metrics.key("gateway_mqtt_retained_total", outcome=outcome)
            for outcome in ("already_stored", "new", "unknown_device")
        }
        self.connected = False
        self._acks: DurableAcks | None = None  # the current connection's
        self._taking: tuple[AckingClient, Inbox] | None = None  # while handing messages over
        self._stopping = False
        self._scope = trio.CancelScope()  # run's, cut short by stop_taking while not connected
        # Set once run hands nothing more to the writer (stopping, or it has returned).
        self.handed_over = trio.Event()

    def stop_taking(self) -> None:
        """Begin a graceful stop: take no more messages; ``run`` hands what it has taken to
        the writer (then sets ``handed_over``), acknowledges each message once its positions
        are written, then disconnects from the broker and returns. Messages the broker sends
        meanwhile are not acknowledged: a kept session has them redelivered."""
        self._stopping = True
        if self._taking is None:
            self._scope.cancel()  # connecting or waiting to: nothing was taken
        else:
            client, inbox = self._taking
            client.stop_taking()
            inbox.stop()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay subscribed until cancelled or stopped (``stop_taking``). Reports started at
        once: a broker that is down must not hold up the gateway (``/healthz`` tells whether
        MQTT is connected)."""
        task_status.started()
        try:
            with self._scope:
                await self._run()
        finally:
            self.connected = False
            self.handed_over.set()

    async def _run(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._stopping:
            client: AckingClient | None = None
            errors: Sequence[BaseException] = ()
            try:
                with Inbox() as inbox:
                    client = AckingClient(
                        self.url.host,
                        self.url.port,
                        deliveries=inbox.send,
                        session_expiry_s=self.session_expiry_s,
                        receive_maximum=INBOX_SIZE,
                        ssl=self.url.tls,
                        client_id=self.client_id,
                        username=self.url.username,
                        password=self.url.password,
                        keep_alive=self.keep_alive_s,
                    )
                    async with (
                        client,
                        # Retain flag off on live messages: set, it marks a replay.
                        client.subscribe(
                            *self.patterns, qos=QoS.AT_LEAST_ONCE, retain_as_published=False
                        ),
                        trio.open_nursery() as nursery,
                    ):
                        self._acks = acks = DurableAcks(client)
                        self._taking = (client, inbox)
                        nursery.start_soon(acks.run)
                        self.connected = True
                        delay = RECONNECT_MIN_S
                        log.info("MQTT subscribed to %s at %s:%d", self.patterns, self.url.host,
                                 self.url.port)  # fmt: skip
                        while batch := await inbox.batch():  # empty: stopping
                            waits = await self.handle_batch(
                                [(p.topic, packet_payload(p), p.retain) for p in batch]
                            )
                            acks.add([p.packet_id for p in batch if p.packet_id], waits)
                        # Stopping: once what was taken is written and acknowledged, leaving
                        # the client sends DISCONNECT.
                        self.handed_over.set()
                        acks.close()
                    log.info("MQTT disconnected: stopped")
                    return
            except* Exception as group:
                errors = group.exceptions
            finally:
                self._taking = None
            was_connected, self.connected = self.connected, False
            self._acks = None
            cause, detail = reconnect_cause(errors, None if client is None else client.broker_end)
            if self._stopping:
                log.info("MQTT connection ended while stopping: %s (%s)", cause, detail)
                return
            self.metrics.inc("gateway_mqtt_reconnects_total", cause=cause)
            log.warning("MQTT %s: %s (%s); reconnecting in %.1fs",
                        "connection lost" if was_connected else "cannot connect", cause,
                        detail, delay)  # fmt: skip
            if cause == "error":  # a fault of the gateway's: its traceback, once per place
                for exc in leaf_errors(errors):
                    if not isinstance(exc, CONNECTION_LOST):
                        log_once(log, "the MQTT connection failed", exc)
            await trio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def handle_batch(self, messages: list[Message]) -> list[tuple[Session, int]]:
        """``(topic, payload, retained)`` in arrival order (``retained``: the retain flag, set
        only on a retained message replayed on subscribe). Returns what must be durable before
        the messages are acknowledged: ``(session, seq)``, the highest ``seq`` each touched
        device has had accepted (in this batch or, still unwritten, before)."""
        self.metrics.inc("gateway_mqtt_batches_total")
        return await self._handle_groups(self._split(messages))

    def _split(self, messages: list[Message]) -> dict[str, list[Message]]:
        """Messages by device as ``(protocol, payload, retained)``, each device's in arrival
        order; other topics are counted."""
        topics = self._topics
        metrics = self.metrics
        frames = self._frames_key
        by_device: dict[str, list[Message]] = {}
        for topic, payload, retained in messages:
            try:
                found = topics[topic]
            except KeyError:
                if len(topics) >= SESSION_CACHE:
                    topics.clear()
                found = topics[topic] = topic_device(topic)
            if found is None:
                metrics.inc("gateway_frames_rejected_total", reason="unknown_topic")
                continue
            protocol, device_id = found
            metrics.add(frames[protocol])
            group = by_device.get(device_id)
            if group is None:
                by_device[device_id] = [(protocol, payload, retained)]
            else:
                group.append((protocol, payload, retained))
        return by_device

    async def _handle_groups(
        self, by_device: dict[str, list[Message]]
    ) -> list[tuple[Session, int]]:
        waits: list[tuple[Session, int]] = []
        metrics = self.metrics
        checked = self.checked
        now = trio.current_time()
        for device_id, messages in by_device.items():
            session = self.sessions.get(device_id)
            if session is None or checked.get(device_id, 0.0) <= now:
                session = await self._session(device_id, now)
                if session is None:
                    replayed = sum(1 for m in messages if m[2])
                    if replayed:  # no new refusal: counted when it was published
                        metrics.add(self._retained_key["unknown_device"], replayed)
                    if len(messages) > replayed:
                        metrics.inc("gateway_handshakes_refused_total", len(messages) - replayed,
                                    reason="unknown_device")  # fmt: skip
                    continue
            positions, bad = self._decode(session, messages)
            if positions or bad:
                await session.submit(positions, bad)
                session.take_rejected()  # counted in metrics; MQTT has no reply channel
            # Even with nothing accepted now: a resent message (a redelivery) is acked only
            # once the position it repeats is written.
            if session.cursor.seq > session.durable_seq:
                waits.append((session, session.cursor.seq))
        return waits

    def _decode(
        self, session: Session, messages: list[Message]
    ) -> tuple[list[Position], list[Rejection]]:
        """A device's positions and rejections, in message order. A payload too big or
        unreadable, or past the device's rate budget, is counted and skipped (and, like
        every message, acknowledged: one connection carries every device, so one device's
        messages cannot be slowed alone). A payload whose handling raises is a bug: counted,
        logged once, skipped, and no other message is affected. A retained message replayed
        on (re)subscribe with nothing above the device's cursor is counted apart and skipped
        (nothing charged to the budget); one with newer positions goes on without the rest."""
        metrics = self.metrics
        settings = self.settings
        bucket = session.bucket
        assert bucket is not None
        positions: list[Position] = []
        bad: list[Rejection] = []
        for protocol, payload, retained in messages:
            size = payload_bytes(payload)
            if size > settings.max_frame_bytes:
                metrics.inc("gateway_frames_rejected_total", reason="too_big")
                continue
            now = time.monotonic()
            cost = frame_cost(size)
            # A replay is charged only once it shows something new (below).
            if not retained and bucket.take_now(cost, now):
                metrics.inc("gateway_frames_rejected_total", reason="rate_limited")
                continue
            try:
                good, rejected = decode_payload(protocol, payload, settings.max_batch_positions)
            except MalformedFrame as exc:
                metrics.inc("gateway_frames_rejected_total", reason=exc.reason)
                log.debug("malformed MQTT payload from %s: %s", session.device.id, exc)
                continue
            except Exception as exc:
                metrics.inc("gateway_handler_errors_total", proto="mqtt", error=type(exc).__name__)
                log_once(log, f"an MQTT payload of {session.device.id} failed", exc)
                continue
            if retained:
                stored = session.cursor.seq  # accepted: stored, or queued to be
                if not rejected and all(p.seq <= stored for p in good):
                    metrics.add(self._retained_key["already_stored"])
                    continue
                metrics.add(self._retained_key["new"])
                good = [p for p in good if p.seq > stored]
                if bucket.take_now(cost, now):
                    metrics.inc("gateway_frames_rejected_total", reason="rate_limited")
                    continue
            more = len(good) + len(rejected) - cost
            if more > 0 and bucket.take_now(more, now):
                metrics.inc("gateway_frames_rejected_total", reason="rate_limited")
                continue
            positions += good
            bad += rejected
        return positions, bad

    async def _session(self, device_id: str, now: float) -> Session | None:
        """The device's session after reading its record again; None if it is unknown or
        revoked (then refused without a lookup for ``DEVICE_CACHE_S``)."""
        if self.refused.get(device_id, 0.0) > now:
            return None
        device = await self.devices.get_device(device_id)
        if device is None or device.revoked:
            self.forget(device_id)
            if len(self.refused) >= SESSION_CACHE:
                self.refused.clear()
            self.refused[device_id] = now + DEVICE_CACHE_S
            return None
        session = self.sessions.get(device_id)
        if session is None:
            if len(self.sessions) >= SESSION_CACHE:
                self.sessions.clear()
                self.checked.clear()
            session = self.sessions[device_id] = await self.writer.open_session(device, "mqtt")
            session.on_progress = self._progress
        self.checked[device_id] = now + DEVICE_CACHE_S
        return session

    def _progress(self) -> None:
        if self._acks is not None:
            self._acks.wake()

    def forget(self, device_id: str) -> None:
        """The device was revoked (or changed): read its record again at its next message."""
        self.sessions.pop(device_id, None)
        self.checked.pop(device_id, None)
        self.refused.pop(device_id, None)
