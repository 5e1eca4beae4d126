"""What the MQTT side reads, pure: the broker URL, which device a topic is, the positions a
payload holds, and why a connection ended (the cause a reconnect is counted under)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

import anyio
import msgspec
import trio
from moat.lib.mqtt import MQTTConnectionLost, MQTTException, MQTTPublishPacket, ReasonCode

from gateway.core.structs import field_of, out_of_range
from gateway.fleet.position import Position
from gateway.ingest.device_formats import owntracks_position
from gateway.ingest.mqtt_ack import BrokerEnd
from gateway.ingest.wire import MAX_POSITIONS, MalformedFrame, Reason, Rejection, decode_frame

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

log = logging.getLogger(__name__)

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


def decode_payload(
    protocol: str, payload: bytes | str, max_positions: int = MAX_POSITIONS
) -> tuple[list[Position], list[Rejection]]:
    """Positions from a message; raises MalformedFrame when nothing can be read.

    ``str`` is a payload the publisher marked as UTF-8 text."""
    if protocol == "owntracks":
        try:
            msg = _any_json.decode(payload)
        except msgspec.DecodeError as exc:
            raise MalformedFrame(str(exc)) from None
        except RecursionError:
            raise MalformedFrame("nested too deeply") from None
        if not isinstance(msg, dict):
            raise MalformedFrame("an OwnTracks message is a JSON object")
        try:
            pos = owntracks_position(msg)
        except msgspec.ValidationError as exc:
            message, where = field_of(exc)
            if out_of_range(message):
                return [], [Rejection(None, Reason.OUT_OF_RANGE, where or message)]
            raise MalformedFrame(f"cannot read the location: {message}") from None
        except ValueError as exc:  # Unreadable: no position in it
            raise MalformedFrame(f"cannot read the location: {exc}") from None
        return ([pos] if pos is not None else []), []
    if isinstance(payload, str):
        return decode_frame(payload, max_positions)
    if payload.lstrip()[:1] in (b"{", b"["):  # JSON text
        return decode_frame(payload.decode("utf-8", "replace"), max_positions)
    return decode_frame(payload, max_positions)  # MessagePack


def payload_bytes(payload: bytes | str) -> int:
    """The size of a payload as it came over the wire, in bytes (a text payload is UTF-8)."""
    if isinstance(payload, bytes) or payload.isascii():  # isascii: O(1) for a str
        return len(payload)
    return len(payload.encode())


def packet_payload(packet: MQTTPublishPacket) -> bytes | str:
    payload = packet.payload
    return payload if isinstance(payload, bytes | str) else bytes(payload)


CONNECTION_LOST: Final = (MQTTConnectionLost, anyio.BrokenResourceError, anyio.ClosedResourceError,
                anyio.EndOfStream, trio.BrokenResourceError, trio.ClosedResourceError)  # fmt: skip


def leaf_errors(errors: Sequence[BaseException]) -> Iterator[BaseException]:
    for exc in errors:
        if isinstance(exc, BaseExceptionGroup):
            yield from leaf_errors(exc.exceptions)
        else:
            yield exc


def reconnect_cause(errors: Sequence[BaseException], end: BrokerEnd | None) -> tuple[str, str]:
    """Why a connection ended, from what its client raised and what the broker said: a
    label for ``gateway_mqtt_reconnects_total{cause}`` (one of a few) and the detail to log.

    The broker's own reason comes first: its DISCONNECT's reason code
    (``session_taken_over``: another client connected with the gateway's client id;
    ``server_shutting_down``, ...) or its refusal of the connection (``refused_<reason>``).
    Then ``connect_failed`` (no TCP or TLS connection), ``protocol_error`` (the broker sent
    what the client cannot read), ``error`` (a fault in the gateway) and ``connection_lost``
    (the connection closed without a word: a network cut, a broker killed, or Mosquitto
    dropping a client that sent nothing for 1.5 keep-alive periods)."""
    leaves = list(leaf_errors(errors))
    detail = ", ".join(repr(e) for e in leaves) or "no exception"
    if end is not None:
        code = ReasonCode(end.reason)
        name = "normal_disconnection" if code == ReasonCode.NORMAL_DISCONNECTION else code.name
        said = "refused the connection" if end.refused else "disconnected"
        text = f" ({end.text})" if end.text else ""
        cause = f"refused_{name.lower()}" if end.refused else name.lower()
        return cause, f"the broker {said}: {name} 0x{int(code):02X}{text}; {detail}"
    if any(isinstance(e, OSError) for e in leaves):
        return "connect_failed", detail
    if any(isinstance(e, MQTTException) and not isinstance(e, CONNECTION_LOST) for e in leaves):
        return "protocol_error", detail
    if any(not isinstance(e, CONNECTION_LOST) for e in leaves):
        return "error", detail
    return "connection_lost", detail
