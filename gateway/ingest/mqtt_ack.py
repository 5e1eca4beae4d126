"""Acknowledging MQTT deliveries only once their positions are in Redis.

moat-lib-mqtt (pinned exactly in ``pyproject.toml``) has no public way to do this:

- its client state machine's ``__init__`` sets ``_auto_ack_publishes``, so
  ``_handle_packet`` queues the PUBACK of a QoS 1 PUBLISH while ``feed_bytes`` parses it,
  and ``AsyncMQTTClient._read_inbound_packets`` sends it before anything reads the message;
- ``AsyncMQTTClient._do_handshake`` passes neither its ``clean_start`` nor a session expiry
  to ``connect``, so every connection starts a session the broker drops when it ends,
  and with it every message it had not delivered;
- leaving a ``subscribe`` block sends UNSUBSCRIBE, so a kept session would stop
  collecting messages while the gateway is away;
- ``AsyncMQTTClient._deliver_publish`` drops a message that matches none of this
  connection's subscriptions, which is what the broker's first redeliveries to a resumed
  session are (they come before SUBSCRIBE);
- the client's documented ``receive_maximum`` is never sent, so nothing bounds how many
  unacknowledged messages the broker sends;
- leaving the client sends DISCONNECT and closes the socket at once. The broker goes on
  sending while the gateway stops, so the socket closes with data unread and the kernel
  resets the connection; Mosquitto then drops the connection ("Broken pipe") without reading
  what was still in its buffer, the last PUBACKs among it, and redelivers those messages;
- the state machine's ``_handle_packet`` replaces the client's ``keep_alive`` with the
  CONNACK's Server Keep Alive property, ``None`` when the broker sends none (Mosquitto never
  does unless ``max_keepalive`` is set), and ``AsyncMQTTClient._keep_alive``, the task that
  sends the PINGREQs, then sends none. The broker still holds the client to the keep-alive
  it asked for in CONNECT and drops it after 1.5 times that without a packet: an idle feed
  (or one at QoS 0, where the gateway sends nothing back) lost its connection every 45 s at
  a keep-alive of 30, and with it the QoS 0 messages of the reconnect;
- why a connection ended is lost: the reason code of the broker's DISCONNECT (a session
  taken over by another client with the same id, a broker shutting down) or of a refused
  CONNACK is dropped, and the client only raises ``MQTTConnectionLost``.

``AckingClient`` changes exactly these things: a state machine subclass that does not
acknowledge by itself, writes its own CONNECT (the library's ``connect`` plus the session
flag and properties), keeps the keep-alive it asked for when the CONNACK announces none
(MQTT 5: the server's, when it announces one) and notes the reason code of a DISCONNECT or
a refusal; and a client subclass that installs it, delivers every message to one stream,
acknowledges on request and, before it leaves, waits until the broker has taken every
acknowledgement (``settle``: a PINGREQ, answered only once the broker has read all that
came before it). The library's ``_keep_alive`` task is left as it is: with the keep-alive
kept, it sends a PINGREQ every keep-alive period. Tests against a real broker
(``tests/gateway/ingest/test_mqtt.py``) show the result: what the gateway has not written is
redelivered, what it has is not; an idle gateway stays connected
(``test_mqtt_keep_alive.py``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio
import trio
from moat.lib.mqtt import (
    MQTTClientState,
    MQTTConnAckPacket,
    MQTTConnectPacket,
    MQTTDisconnectPacket,
    MQTTPacket,
    MQTTPingResponsePacket,
    MQTTPublishPacket,
    Pattern,
    PropertyType,
    PropertyValue,
    ReasonCode,
    Will,
)
from moat.lib.mqtt.async_client import AsyncMQTTClient
from moat.lib.mqtt.client_state_machine import MQTTClientStateMachine

from gateway.ingest.writer import Session

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

log = logging.getLogger(__name__)

MQTT_RECEIVE_MAXIMUM: Final = 65_535  # the protocol's, when a client names none
# How long a stop waits for the broker to answer the PINGREQ after the last PUBACKs.
SETTLE_TIMEOUT_S: Final = 5.0

# The library internals used below. Fail at import, not silently, if a release renames
# one: an override of a method that no longer exists is never called.
_INTERNALS: Final = {
    MQTTClientStateMachine: (
        "_auto_ack_publishes",
        "_out_buffer",
        "_out_require_state",
        "_state",
        "_handle_packet",
        "keep_alive",
    ),
    AsyncMQTTClient: (
        "_state_machine",
        "_deliver_publish",
        "_handle_packet",
        "_flush_outbound_data",
        "_keep_alive",  # not overridden: the task that pings every ``keep_alive`` seconds
    ),
}
if not all(hasattr(cls, name) for cls, names in _INTERNALS.items() for name in names):
    raise ImportError("moat-lib-mqtt changed its internals: see gateway/ingest/mqtt_ack.py")


class BrokerEnd(NamedTuple):
    """Why the broker ended a connection: the reason code of its DISCONNECT, or of the
    CONNACK that refused the connection (``refused``), and its reason string if any."""

    reason: ReasonCode
    refused: bool
    text: str | None


class _StateMachine(MQTTClientStateMachine):
    """The library's client state machine, acknowledging nothing by itself, asking the
    broker for at most ``receive_maximum`` unacknowledged messages at a time and, with an
    ``expiry_s``, resuming the session the broker kept."""

    def __init__(self, client_id: str | None, expiry_s: int, receive_maximum: int) -> None:
        super().__init__(client_id)
        self._auto_ack_publishes = False
        self.expiry_s = expiry_s
        self.receive_maximum = receive_maximum
        self.pings = 0  # PINGREQs sent on this connection, keep-alives included
        self.broker_end: BrokerEnd | None = None

    def _handle_packet(self, packet: MQTTPacket) -> bool:
        if isinstance(packet, MQTTConnAckPacket):
            # The library takes the CONNACK's Server Keep Alive as the keep-alive, None when
            # there is none, and then never pings. MQTT 5: the server's if it names one,
            # else the one the client asked for (and the broker holds it to).
            asked = self.keep_alive
            handled = super()._handle_packet(packet)
            if packet.reason_code is not ReasonCode.SUCCESS:
                self.broker_end = BrokerEnd(packet.reason_code, True, _reason_text(packet))
            elif packet.properties.get(PropertyType.SERVER_KEEP_ALIVE) is None:
                self.keep_alive = asked
            return handled
        if isinstance(packet, MQTTDisconnectPacket):
            self.broker_end = BrokerEnd(packet.reason_code, False, _reason_text(packet))
        return super()._handle_packet(packet)

    def ping(self) -> None:
        super().ping()
        self.pings += 1

    def connect(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        will: Will | None = None,
        clean_start: bool = True,
        keep_alive: int = 0,
    ) -> None:
        # The library's own ``connect``, with the session flag and properties it leaves out.
        self._out_require_state(MQTTClientState.DISCONNECTED)
        properties: dict[PropertyType, PropertyValue] = {}
        if self.expiry_s:
            properties[PropertyType.SESSION_EXPIRY_INTERVAL] = self.expiry_s
        if 0 < self.receive_maximum < MQTT_RECEIVE_MAXIMUM:
            properties[PropertyType.RECEIVE_MAXIMUM] = self.receive_maximum
        MQTTConnectPacket(
            client_id=self.client_id,
            will=will,
            username=username,
            password=password,
            clean_start=not self.expiry_s,
            keep_alive=keep_alive,
            properties=properties,
        ).encode(self._out_buffer)
        self.keep_alive = keep_alive
        self._state = MQTTClientState.CONNECTING

    def unsubscribe(self, patterns: Sequence[Pattern]) -> int | None:
        # A kept session keeps its subscriptions, so the broker goes on collecting messages
        # while the gateway is away. None: the client sends nothing.
        return None if self.expiry_s else super().unsubscribe(patterns)


def _reason_text(packet: MQTTConnAckPacket | MQTTDisconnectPacket) -> str | None:
    text = packet.properties.get(PropertyType.REASON_STRING)
    return text if isinstance(text, str) else None


def _check_keep_alive() -> None:
    """The keep-alive survives a CONNACK without Server Keep Alive and yields to one with:
    names alone would not show a release that handles the CONNACK elsewhere."""
    for announced, expected in ((None, 7), (3, 3)):
        state = _StateMachine("import-check", 0, 0)
        state.connect(keep_alive=7)
        connack = bytearray()
        props: dict[PropertyType, PropertyValue] = (
            {} if announced is None else {PropertyType.SERVER_KEEP_ALIVE: announced}
        )
        MQTTConnAckPacket(
            reason_code=ReasonCode.SUCCESS, session_present=False, properties=props
        ).encode(connack)
        state.feed_bytes(connack)
        if state.keep_alive != expected:
            raise ImportError(
                "moat-lib-mqtt changed its keep-alive: see gateway/ingest/mqtt_ack.py"
            )


_check_keep_alive()


class AckingClient(AsyncMQTTClient):
    """An ``AsyncMQTTClient`` that hands every PUBLISH of its session to ``deliveries``, in
    arrival order, and acknowledges one only when ``ack`` is called with its packet id.

    With ``session_expiry_s`` (and a fixed ``client_id``), the broker keeps the session for
    that long after a disconnect and redelivers what was not acknowledged on the next
    connection; without, every connection starts clean, as the library's own client does.
    ``receive_maximum`` (a parameter of the library's client that it does not send) is sent:
    the broker has at most that many messages unacknowledged. Once ``deliveries`` is full,
    the client stops reading from the broker.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        deliveries: MemoryObjectSendStream[MQTTPublishPacket],
        session_expiry_s: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(host, port, **kwargs)
        # Kept apart too: leaving the client puts a new library state machine in its place.
        self._own_state = _StateMachine(self.client_id, session_expiry_s, self.receive_maximum)
        self._state_machine = self._own_state
        self.deliveries = deliveries
        self.taking = True
        self._pongs = 0  # PINGRESPs received; the broker answers PINGREQs in order
        self._pong = trio.Event()

    @property
    def keep_alive_s(self) -> int:
        """Seconds between this connection's PINGREQs (0: none): once connected, the
        broker's Server Keep Alive if its CONNACK named one, else the ``keep_alive`` asked."""
        return self._own_state.keep_alive

    @property
    def pings_answered(self) -> int:
        """PINGRESPs received on this connection."""
        return self._pongs

    @property
    def broker_end(self) -> BrokerEnd | None:
        """Why the broker ended the connection, if it said (a DISCONNECT, or a CONNACK
        refusing it); also once the client is left."""
        return self._own_state.broker_end

    def stop_taking(self) -> None:
        """Hand over no more messages. Those the broker sends from now on are neither
        handed over nor acknowledged: a kept session has them redelivered on the next
        connection. A delivery already waiting for room in ``deliveries`` still goes in."""
        self.taking = False

    async def _deliver_publish(self, packet: MQTTPublishPacket) -> None:
        if not self.taking:
            return
        try:
            self.deliveries.send_nowait(packet)  # no scheduling round per message
        except anyio.WouldBlock:
            await self.deliveries.send(packet)

    async def _handle_packet(self, packet: MQTTPacket) -> None:
        if isinstance(packet, MQTTPingResponsePacket):
            self._pongs += 1
            self._pong.set()
            self._pong = trio.Event()
        await super()._handle_packet(packet)

    async def settle(self) -> None:
        """Return once the broker has read and handled everything sent before this call
        (the PUBACKs above all): a PINGREQ, and its PINGRESP, which the broker sends only
        after handling the packets before it. Leaving the client right after sending them
        could reset the connection before the broker had read them."""
        state = self._state_machine
        assert isinstance(state, _StateMachine)
        state.ping()
        await self._flush_outbound_data()
        answered = state.pings
        while self._pongs < answered:
            await self._pong.wait()

    async def ack(self, packet_ids: Iterable[int]) -> None:
        """Send the PUBACK of each of ``packet_ids`` (QoS 1 deliveries of this connection,
        each once), in the order given."""
        state = self._state_machine
        for packet_id in packet_ids:
            state.acknowledge_publish(packet_id, ReasonCode.SUCCESS)
        await self._flush_outbound_data()


class DurableAcks:
    """Acknowledgements held until the positions of their messages are in Redis, then sent
    in the order the messages arrived (as MQTT requires).

    One per connection. It holds at most one entry per message the broker has out
    unacknowledged, which the client's ``receive_maximum`` bounds.
    """

    def __init__(self, client: AckingClient) -> None:
        self._client = client
        self._pending: deque[tuple[list[int], list[tuple[Session, int]]]] = deque()
        self._progress = trio.Event()
        self._closed = False

    def add(self, packet_ids: list[int], waits: list[tuple[Session, int]]) -> None:
        """Acknowledge ``packet_ids`` once each ``(session, seq)`` is durable (its session's
        positions up to ``seq`` are written) and everything added before has been acked."""
        if packet_ids:
            self._pending.append((packet_ids, waits))
            self._progress.set()

    def wake(self) -> None:
        """Something may have become durable (a session's ``on_progress``)."""
        self._progress.set()

    def close(self) -> None:
        """Nothing more will be added: ``run`` returns once all that was is acknowledged
        and the broker has taken the acknowledgements."""
        self._closed = True
        self._progress.set()

    async def run(self) -> None:
        """Send acknowledgements as they become due, until cancelled or, once closed, until
        none is left to send and the broker has taken them (within ``SETTLE_TIMEOUT_S``:
        one it has not is redelivered, a duplicate the gateway drops)."""
        pending = self._pending
        while True:
            # A new event before looking: progress made while we look sets it.
            self._progress = trio.Event()
            due: list[int] = []
            while pending and all(s.durable_seq >= seq for s, seq in pending[0][1]):
                due += pending.popleft()[0]
            if due:
                await self._client.ack(due)
            elif self._closed and not pending:
                with trio.move_on_after(SETTLE_TIMEOUT_S) as settling:
                    await self._client.settle()
                if settling.cancelled_caught:
                    log.warning(
                        "MQTT broker did not confirm the last acknowledgements within %.0fs: "
                        "it may deliver those messages again",
                        SETTLE_TIMEOUT_S,
                    )
                return
            else:
                await self._progress.wait()
