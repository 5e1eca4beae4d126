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
resubscribe, backing off up to ``RECONNECT_MAX_S``.

Acknowledgement: the client library acknowledges QoS 1 deliveries to the broker when it
reads them, before the position is in Redis; a crash in between can lose what was in
flight (the WebSocket and HTTP paths acknowledge only after the write).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

import anyio
import msgspec
import trio
from moat.lib.mqtt import MQTTPublishPacket, QoS
from moat.lib.mqtt.async_client import AsyncMQTTClient, AsyncMQTTSubscription

from .auth import TOKEN_CACHE_S
from .http_ingest import owntracks_position
from .ingest import Session
from .wire import MalformedFrame, Position, Reason, Rejection, decode_frame

if TYPE_CHECKING:
    from types import TracebackType

    from .app import Gateway

log = logging.getLogger(__name__)

RECONNECT_MIN_S: Final = 0.5
RECONNECT_MAX_S: Final = 30.0
SESSION_CACHE: Final = 100_000
DEVICE_CACHE_S: Final = TOKEN_CACHE_S
# Messages the client may hand over before its reader waits for the gateway (back-pressure
# to the broker), the most taken as one batch, and how long the first message of a batch
# waits for others while messages are arriving fast.
INBOX_SIZE: Final = 4_096
BATCH_MAX: Final = 2_048
BATCH_LINGER_S: Final = 0.005
_any_json: Final = msgspec.json.Decoder()


class MqttUrl(msgspec.Struct, frozen=True):
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> MqttUrl:
    """``mqtt://user:pass@host:1883`` or ``mqtts://...`` (TLS, default port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT_URL must start with mqtt:// or mqtts://, got {url!r}")
    tls = parts.scheme == "mqtts"
    return MqttUrl(
        host=parts.hostname or "localhost",
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


def topic_device(topic: str) -> tuple[str, str] | None:
    """``(protocol, device id)`` of a topic, or None for a topic we do not read."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "fleet" and parts[2] == "pos" and parts[1]:
        return "native", parts[1]
    if len(parts) == 3 and parts[0] == "owntracks" and parts[1] and parts[2]:
        return "owntracks", f"{parts[1]}.{parts[2]}"
    return None


def decode_payload(protocol: str, payload: bytes | str) -> tuple[list[Position], list[Rejection]]:
    """Positions from a message; raises MalformedFrame when nothing can be read.

    ``str`` is a payload the publisher marked as UTF-8 text."""
    if protocol == "owntracks":
        try:
            msg = _any_json.decode(payload)
        except msgspec.DecodeError as exc:
            raise MalformedFrame(str(exc)) from None
        if not isinstance(msg, dict):
            raise MalformedFrame("an OwnTracks message is a JSON object")
        try:
            pos = owntracks_position(msg)
        except msgspec.ValidationError as exc:
            return [], [Rejection(None, Reason.OUT_OF_RANGE, str(exc))]
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedFrame(f"cannot read the location: {exc}") from None
        return ([pos] if pos is not None else []), []
    if isinstance(payload, str):
        return decode_frame(payload)
    if payload.lstrip()[:1] in (b"{", b"["):  # JSON text
        return decode_frame(payload.decode("utf-8", "replace"))
    return decode_frame(payload)  # MessagePack


def _payload(packet: MQTTPublishPacket) -> bytes | str:
    payload = packet.payload
    return payload if isinstance(payload, bytes | str) else bytes(payload)


class Inbox:
    """A subscription's messages, taken in batches.

    moat-lib-mqtt hands each message to a subscription through a memory stream of five and
    starts a task per message once that is full. The subscription's ``send_stream`` is
    replaced by a larger one, so the client's reader goes on without waiting while the
    gateway handles a batch. Messages handed over before the replacement are taken first:
    the reader hands over the next message only once the previous one is in a stream.
    """

    def __init__(self, subscription: AsyncMQTTSubscription, size: int = INBOX_SIZE) -> None:
        self._subscription = subscription
        self._early = subscription.send_stream
        self._send, self._recv = anyio.create_memory_object_stream[MQTTPublishPacket](size)
        subscription.send_stream = self._send
        self._busy = False  # the last batch had more than one message

    def __enter__(self) -> Inbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._early.close()
        self._send.close()
        self._recv.close()

    async def _take_early(self, into: list[MQTTPublishPacket]) -> None:
        stats = self._early.statistics
        while stats().current_buffer_used or stats().tasks_waiting_send:
            into.append(await anext(self._subscription))

    async def batch(
        self, limit: int = BATCH_MAX, linger_s: float = BATCH_LINGER_S
    ) -> list[MQTTPublishPacket]:
        """The next messages in arrival order, at most ``limit``: waits for one and takes
        what has arrived with it. While messages come in faster than one per batch, the
        first also waits ``linger_s`` for others (fewer, larger batches cost less per
        message); a lone message does not wait."""
        out: list[MQTTPublishPacket] = []
        await self._take_early(out)
        recv = self._recv
        if not out:
            first = await recv.receive()
            if self._busy and recv.statistics().current_buffer_used < limit - 1:
                await trio.sleep(linger_s)
            await self._take_early(out)
            out.append(first)
        while len(out) < limit:
            try:
                out.append(recv.receive_nowait())
            except anyio.WouldBlock:
                break
        self._busy = len(out) > 1
        return out


class MqttIngest:
    def __init__(self, gw: Gateway) -> None:
        s = gw.settings
        self.gw = gw
        self.url = parse_mqtt_url(s.mqtt_url)
        self.topics = [t.strip() for t in s.mqtt_topics.split(",") if t.strip()]
        group = s.mqtt_shared_group.strip()
        self.patterns = [f"$share/{group}/{t}" if group else t for t in self.topics]
        self.client_id = s.mqtt_client_id or f"fleetgate-{random.getrandbits(40):010x}"
        self.sessions: dict[str, Session] = {}
        self.refused: dict[str, float] = {}  # device id -> refused until (trio clock)
        self.checked: dict[str, float] = {}  # device id -> its record is current until
        self._topics: dict[str, tuple[str, str] | None] = {}
        self._frames_key = {
            proto: gw.metrics.key("gateway_frames_total", proto="mqtt", enc=proto)
            for proto in ("native", "owntracks")
        }
        self.connected = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay subscribed until cancelled. Reports started at once: a broker that is down
        must not hold up the gateway (``/healthz`` tells whether MQTT is connected)."""
        delay = RECONNECT_MIN_S
        task_status.started()
        while True:
            try:
                async with (
                    AsyncMQTTClient(
                        self.url.host,
                        self.url.port,
                        ssl=self.url.tls,
                        client_id=self.client_id,
                        username=self.url.username,
                        password=self.url.password,
                        keep_alive=30,
                    ) as client,
                    client.subscribe(*self.patterns, qos=QoS.AT_LEAST_ONCE) as messages,
                ):
                    with Inbox(messages) as inbox:
                        self.connected = True
                        delay = RECONNECT_MIN_S
                        log.info("MQTT subscribed to %s at %s:%d", self.patterns, self.url.host,
                                 self.url.port)  # fmt: skip
                        while True:
                            batch = await inbox.batch()
                            await self.handle_batch([(p.topic, _payload(p)) for p in batch])
            except* Exception as group:
                log.warning("MQTT connection lost (%r); reconnecting in %.1fs",
                            group.exceptions, delay)  # fmt: skip
            self.connected = False
            self.gw.metrics.inc("gateway_mqtt_reconnects_total")
            await trio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def handle_batch(self, messages: list[tuple[str, bytes | str]]) -> None:
        """``(topic, payload)`` pairs in arrival order."""
        self.gw.metrics.inc("gateway_mqtt_batches_total")
        await self._handle_groups(self._split(messages))

    def _split(
        self, messages: list[tuple[str, bytes | str]]
    ) -> dict[str, list[tuple[str, bytes | str]]]:
        """Messages by device, each device's in arrival order; other topics are counted."""
        topics = self._topics
        by_device: dict[str, list[tuple[str, bytes | str]]] = {}
        for topic, payload in messages:
            try:
                found = topics[topic]
            except KeyError:
                if len(topics) >= SESSION_CACHE:
                    topics.clear()
                found = topics[topic] = topic_device(topic)
            if found is None:
                self.gw.metrics.inc("gateway_frames_rejected_total", reason="unknown_topic")
                continue
            protocol, device_id = found
            group = by_device.get(device_id)
            if group is None:
                by_device[device_id] = [(protocol, payload)]
            else:
                group.append((protocol, payload))
        return by_device

    async def _handle_groups(self, by_device: dict[str, list[tuple[str, bytes | str]]]) -> None:
        metrics = self.gw.metrics
        max_bytes = self.gw.settings.max_frame_bytes
        frames = self._frames_key
        checked = self.checked
        now = trio.current_time()
        for device_id, messages in by_device.items():
            for protocol, _ in messages:
                metrics.add(frames[protocol])
            session = self.sessions.get(device_id)
            if session is None or checked.get(device_id, 0.0) <= now:
                session = await self._session(device_id, now)
                if session is None:
                    metrics.inc("gateway_handshakes_refused_total", len(messages),
                                reason="unknown_device")  # fmt: skip
                    continue
            positions: list[Position] = []
            bad: list[Rejection] = []
            for protocol, payload in messages:
                if len(payload) > max_bytes:
                    metrics.inc("gateway_frames_rejected_total", reason="too_big")
                    continue
                try:
                    good, rejected = decode_payload(protocol, payload)
                except MalformedFrame as exc:
                    metrics.inc("gateway_frames_rejected_total", reason="malformed")
                    log.debug("malformed MQTT payload from %s: %s", device_id, exc)
                    continue
                positions += good
                if rejected:
                    bad += rejected
            if positions or bad:
                await session.submit(positions, bad)
                session.take_rejected()  # counted in metrics; MQTT has no reply channel

    async def _session(self, device_id: str, now: float) -> Session | None:
        """The device's session after reading its record again; None if it is unknown or
        revoked (then refused without a lookup for ``DEVICE_CACHE_S``)."""
        if self.refused.get(device_id, 0.0) > now:
            return None
        device = await self.gw.store.get_device(device_id)
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
            session = self.sessions[device_id] = await self.gw.ingest.open_session(device)
        self.checked[device_id] = now + DEVICE_CACHE_S
        return session

    def forget(self, device_id: str) -> None:
        """The device was revoked (or changed): read its record again at its next message."""
        self.sessions.pop(device_id, None)
        self.checked.pop(device_id, None)
        self.refused.pop(device_id, None)
