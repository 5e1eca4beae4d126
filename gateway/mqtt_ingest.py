"""Device ingest from an MQTT broker (when ``MQTT_URL`` is set).

Topics (configurable): our native ``fleet/{device}/pos`` (JSON or MessagePack, one position
or a batch, the WebSocket schema) and OwnTracks ``owntracks/{user}/{device}`` (``_type:
location``; other types are ignored). The device comes from the topic, looked up in the
device registry (the broker's ACLs are what stop a device publishing on another's topic):
``{device}`` for native topics, ``{user}.{device}`` for OwnTracks. Unknown or revoked
devices are refused and counted.

With ``MQTT_SHARED_GROUP`` set the gateway subscribes through ``$share/<group>/...``, so
several gateway processes split one feed. The connection is kept with reconnect and
resubscribe, backing off up to ``RECONNECT_MAX_S``.

Acknowledgement: the client library acknowledges QoS 1 deliveries to the broker when it
hands them over, before the position is in Redis; a crash in between can lose what was in
flight (the WebSocket and HTTP paths acknowledge only after the write).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

import msgspec
import trio
from moat.lib.mqtt import QoS
from moat.lib.mqtt.async_client import AsyncMQTTClient

from .http_ingest import owntracks_position
from .ingest import Session
from .wire import MalformedFrame, Position, Reason, Rejection, decode_frame

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger(__name__)

RECONNECT_MIN_S: Final = 0.5
RECONNECT_MAX_S: Final = 30.0
SESSION_CACHE: Final = 100_000
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


def decode_payload(protocol: str, payload: bytes) -> tuple[list[Position], list[Rejection]]:
    """Positions from a message; raises MalformedFrame when nothing can be read."""
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
    text = payload.lstrip()[:1] in (b"{", b"[")
    return decode_frame(payload.decode("utf-8", "replace") if text else payload)


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
                    self.connected = True
                    delay = RECONNECT_MIN_S
                    log.info("MQTT subscribed to %s at %s:%d", self.patterns, self.url.host,
                             self.url.port)  # fmt: skip
                    async for packet in messages:
                        payload = packet.payload
                        await self.handle(
                            packet.topic,
                            payload.encode() if isinstance(payload, str) else bytes(payload),
                        )
            except* Exception as group:
                log.warning("MQTT connection lost (%r); reconnecting in %.1fs",
                            group.exceptions, delay)  # fmt: skip
            self.connected = False
            self.gw.metrics.inc("gateway_mqtt_reconnects_total")
            await trio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def handle(self, topic: str, payload: bytes) -> None:
        metrics = self.gw.metrics
        found = topic_device(topic)
        if found is None:
            metrics.inc("gateway_frames_rejected_total", reason="unknown_topic")
            return
        protocol, device_id = found
        metrics.inc("gateway_frames_total", proto="mqtt", enc=protocol)
        session = await self._session(device_id)
        if session is None:
            metrics.inc("gateway_handshakes_refused_total", reason="unknown_device")
            return
        if len(payload) > self.gw.settings.max_frame_bytes:
            metrics.inc("gateway_frames_rejected_total", reason="too_big")
            return
        try:
            positions, bad = decode_payload(protocol, payload)
        except MalformedFrame as exc:
            metrics.inc("gateway_frames_rejected_total", reason="malformed")
            log.debug("malformed MQTT payload on %s: %s", topic, exc)
            return
        await session.submit(positions, bad)
        session.take_rejected()  # counted in metrics; MQTT has no reply channel

    async def _session(self, device_id: str) -> Session | None:
        session = self.sessions.get(device_id)
        if session is not None and not session.device.revoked:
            return session
        device = await self.gw.store.get_device(device_id)
        if device is None or device.revoked:
            return None
        if len(self.sessions) >= SESSION_CACHE:
            self.sessions.clear()
        session = self.sessions[device_id] = await self.gw.ingest.open_session(device)
        return session

    def forget(self, device_id: str) -> None:
        self.sessions.pop(device_id, None)
