"""Per-vehicle live state: latest fix, derived speed, status (moving, stopped, offline).

Pure logic: positions and times go in, state changes and events come out. The ingest
writer persists the result; the offline sweep calls ``sweep`` with the current time.
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

from gateway.core.events import event
from gateway.fleet.position import Position
from geofence import haversine_m
from notify.events import Event

MOVING: Final = "moving"
STOPPED: Final = "stopped"
IDLING: Final = "idling"  # stopped with the ignition on (the ``ignition`` attribute)
OFFLINE: Final = "offline"


class VehicleState(msgspec.Struct, kw_only=True):
    vehicle: str
    device: str = ""
    seq: int = 0
    ts: float = 0.0  # fix time of the latest position
    lat: float = math.nan
    lon: float = math.nan
    speed: float | None = None
    heading: float | None = None
    accuracy: float | None = None
    alt: float | None = None
    battery: float | None = None
    temp_c: float | None = None
    odometer: float | None = None
    status: str = OFFLINE
    since: float = 0.0  # when the current status began (fix time)
    seen: float = 0.0  # wall time the latest position arrived
    # The latest value of each attribute the device reported (``Position.attributes``).
    attributes: dict[str, bool | float | str] | None = None


_mp_enc: Final = msgspec.msgpack.Encoder()
_mp_dec: Final = msgspec.msgpack.Decoder(VehicleState)
_json_enc: Final = msgspec.json.Encoder()


def encode_state(s: VehicleState) -> bytes:
    return _mp_enc.encode(s)


def decode_state(blob: bytes) -> VehicleState:
    return _mp_dec.decode(blob)


def live_json(s: VehicleState) -> bytes:
    """The compact JSON a browser receives for one vehicle."""
    return _json_enc.encode(
        {
            "id": s.vehicle,
            "ts": s.ts,
            "lat": s.lat,
            "lon": s.lon,
            "speed": s.speed,
            "heading": s.heading,
            "status": s.status,
            "battery": s.battery,
            "temp_c": s.temp_c,
            "ignition": attrs.get("ignition") if (attrs := s.attributes) else None,
            "fuel": attrs.get("fuel") if attrs else None,
        }
    )


def public(s: VehicleState) -> dict[str, Any]:
    return msgspec.to_builtins(s)


def vehicle_event(etype: str, s: VehicleState, ts: float, **data: Any) -> Event:
    return event(
        etype, ts, vehicle=s.vehicle, data={"lat": s.lat, "lon": s.lon, "device": s.device, **data}
    )


def later(state: VehicleState, than: VehicleState | None) -> bool:
    """Whether ``state`` is a later state of its vehicle than ``than``: every change of a
    vehicle's state advances its fix time or, when it is marked offline without a new fix,
    the time its status began."""
    return than is None or (state.ts, state.since) > (than.ts, than.since)


class Fleet:
    """Latest state of every vehicle this process knows."""

    def __init__(self, stopped_speed_mps: float, offline_after_s: float) -> None:
        self.stopped_speed_mps = stopped_speed_mps
        self.offline_after_s = offline_after_s
        self.vehicles: dict[str, VehicleState] = {}
        # Vehicles whose newest state this process wrote: the ones it marks offline.
        self.local: set[str] = set()

    def load(self, blobs: dict[str, bytes]) -> None:
        for vid, blob in blobs.items():
            self.vehicles[vid] = decode_state(blob)
            self.local.add(vid)

    def take_remote(self, state: VehicleState) -> bool:
        """A state written by another process; taken (True) unless this process already
        holds a later state of the vehicle (:func:`later`: the other's news came late)."""
        current = self.vehicles.get(state.vehicle)
        if current is not None and later(current, state):
            return False
        self.vehicles[state.vehicle] = state
        self.local.discard(state.vehicle)
        return True

    def apply(
        self, vehicle: str, device: str, positions: list[Position], now: float
    ) -> tuple[VehicleState, list[Event]]:
        """Advance ``vehicle`` to the last of ``positions`` (validated, in order, not empty).

        Only the newest fix sets the state; the one before it gives a speed when the device
        reports none; each fix's attributes update the latest value of each. The ignition on
        while stopped is ``idling``.
        """
        s = self.vehicles.get(vehicle)
        if s is None:
            s = self.vehicles[vehicle] = VehicleState(vehicle=vehicle)
        self.local.add(vehicle)
        events: list[Event] = []
        p = positions[-1]
        prev_ts, prev_lat, prev_lon = (
            (positions[-2].ts, positions[-2].lat, positions[-2].lon)
            if len(positions) > 1
            else (s.ts, s.lat, s.lon)
        )
        speed = p.speed
        if speed is None and p.ts > prev_ts and not math.isnan(prev_lat):
            speed = haversine_m(prev_lat, prev_lon, p.lat, p.lon) / (p.ts - prev_ts)
        was = s.status
        s.device = device
        s.seq = p.seq
        s.ts = p.ts
        s.lat = p.lat
        s.lon = p.lon
        s.speed = speed
        if p.heading is not None:
            s.heading = p.heading
        s.accuracy = p.accuracy
        s.alt = p.alt
        if p.battery is not None:
            s.battery = p.battery
        if p.temp_c is not None:
            s.temp_c = p.temp_c
        if p.odometer is not None:
            s.odometer = p.odometer
        for q in positions:
            if q.attributes:
                s.attributes = {**s.attributes, **q.attributes} if s.attributes else q.attributes
        if (speed or 0.0) >= self.stopped_speed_mps:
            status = MOVING
        elif s.attributes and s.attributes.get("ignition") is True:
            status = IDLING
        else:
            status = STOPPED
        if was == OFFLINE:
            events.append(vehicle_event("vehicle.online", s, positions[0].ts))
        if status != was:
            s.status = status
            s.since = p.ts
        s.seen = now
        return s, events

    def touch(self, vehicle: str, now: float) -> tuple[VehicleState | None, list[Event]]:
        """The vehicle's device is alive but sent no fix: it is seen now (an offline one is
        online again, stopped where it last was). None if the vehicle has no state yet."""
        s = self.vehicles.get(vehicle)
        if s is None:
            return None, []
        self.local.add(vehicle)
        s.seen = now
        if s.status != OFFLINE:
            return s, []
        s.status = STOPPED
        s.since = now
        return s, [vehicle_event("vehicle.online", s, now, fix=False)]

    def sweep(self, now: float) -> list[tuple[VehicleState, Event]]:
        """Mark vehicles silent for longer than ``offline_after_s`` as offline."""
        out = []
        limit = now - self.offline_after_s
        for vid in self.local:
            s = self.vehicles[vid]
            if s.status != OFFLINE and s.seen < limit:
                s.status = OFFLINE
                s.since = now
                out.append((s, vehicle_event("vehicle.offline", s, now, silent_s=now - s.seen)))
        return out
