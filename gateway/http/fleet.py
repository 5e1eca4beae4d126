"""Devices, vehicles and the event log over REST: register devices and issue or revoke their
tokens, read each vehicle's latest state (one vehicle's with the zones it is inside) and track,
page through the events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from quart import Blueprint, jsonify

from gateway.core.events import EventLog
from gateway.fleet.devices import DeviceExists, Devices, UnknownDevice
from gateway.fleet.state import Fleet, public
from gateway.fleet.store import Store
from gateway.http.common import AgentAuth
from gateway.http.errors import ApiError
from gateway.http.models import Device as DeviceOut
from gateway.http.models import (
    DeviceCreate,
    DeviceList,
    Events,
    EventsQuery,
    NewDevice,
    NewToken,
    Revoked,
    Track,
    TrackQuery,
    VehicleDetail,
    VehicleList,
    VehicleZone,
)
from gateway.http.spec import Op, read_body, read_query
from gateway.live.persistence import GEO_FIELD
from geofence import GeofenceEngine

_ID: Final = {"id": "the device id"}
_VID: Final = {"id": "the vehicle id"}

# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("POST", "/v1/devices", "Register a device; returns its secret token once",
       {201: NewDevice, 409: None}, body=DeviceCreate),
    Op("GET", "/v1/devices", "List devices", {200: DeviceList}),
    Op("GET", "/v1/devices/{id}", "One device", {200: DeviceOut, 404: None}, params=_ID),
    Op("POST", "/v1/devices/{id}/token",
       "Issue a new token (the old one stops working; also un-revokes)",
       {200: NewToken, 404: None}, params=_ID),
    Op("POST", "/v1/devices/{id}/revoke", "Revoke the device's token and close its connections",
       {200: Revoked, 404: None}, params=_ID),
    Op("GET", "/v1/vehicles", "Latest state of every vehicle", {200: VehicleList}),
    Op("GET", "/v1/vehicles/{id}", "Latest state of one vehicle and the zones it is inside",
       {200: VehicleDetail, 404: None}, params=_VID),
    Op("GET", "/v1/vehicles/{id}/track", "Position history, oldest first",
       {200: Track}, params=_VID, query=TrackQuery),
    Op("GET", "/v1/events", "The event log, oldest first (order=desc: newest first)",
       {200: Events}, query=EventsQuery),
]  # fmt: skip


class _SavedMembership(msgspec.Struct):
    since: float


class _SavedZones(msgspec.Struct):
    """The part of a vehicle's saved geofence state (``GeofenceEngine.export_state``) read
    here."""

    zones: dict[str, _SavedMembership] = msgspec.field(default_factory=dict)


def fleet_blueprint(
    devices: Devices,
    store: Store,
    fleet: Fleet,
    event_log: EventLog,
    agent: AgentAuth,
    geofences: GeofenceEngine,
    *,
    on_new_token: Callable[[str], None],
    on_revoked: Callable[[str], None],
    future_tolerance_s: float,
) -> Blueprint:
    """``geofences``: the live stage's engine (this process's zones, and the memberships of
    the vehicles whose fixes it receives). ``on_new_token``/``on_revoked``: called with the
    device id once its token changed or it was revoked (caches forget it, its connections
    close)."""
    bp = Blueprint("fleet", __name__)

    @bp.post("/v1/devices")
    @agent
    async def create_device() -> Any:
        body = await read_body(DeviceCreate)
        dev_id = body.id
        vehicle = body.vehicle or dev_id
        name = body.name if isinstance(body.name, str) else dev_id
        try:
            token = await devices.create_device(dev_id, vehicle, name)
        except DeviceExists:
            raise ApiError(409, f"device {dev_id} exists; rotate its token instead", "id") from None
        return jsonify({"id": dev_id, "vehicle": vehicle, "name": name, "token": token}), 201

    @bp.get("/v1/devices")
    @agent
    async def list_devices() -> Any:
        return jsonify({"devices": [d.public() for d in await devices.list_devices()]})

    @bp.get("/v1/devices/<dev_id>")
    @agent
    async def get_device(dev_id: str) -> Any:
        rec = await devices.get_device(dev_id)
        if rec is None:
            raise ApiError(404, "no such device")
        filtered = await devices.last_filtered(dev_id)
        return jsonify(rec.public() | {"filtered": msgspec.to_builtins(filtered)})

    @bp.post("/v1/devices/<dev_id>/token")
    @agent
    async def rotate_token(dev_id: str) -> Any:
        try:
            token = await devices.rotate_token(dev_id)
        except UnknownDevice:
            raise ApiError(404, "no such device") from None
        on_new_token(dev_id)
        return jsonify({"id": dev_id, "token": token})

    @bp.post("/v1/devices/<dev_id>/revoke")
    @agent
    async def revoke_device(dev_id: str) -> Any:
        try:
            await devices.revoke_device(dev_id)
        except UnknownDevice:
            raise ApiError(404, "no such device") from None
        on_revoked(dev_id)
        return jsonify({"id": dev_id, "revoked": True})

    # ----- vehicles

    @bp.get("/v1/vehicles")
    @agent
    async def list_vehicles() -> Any:
        return jsonify({"vehicles": [public(s) for s in fleet.vehicles.values()]})

    async def zones_of(vid: str) -> list[VehicleZone]:
        """The zones ``vid`` is inside: this process's engine's view if its fixes arrive here,
        else what the process receiving them saved last (every few seconds)."""
        if vid in fleet.local:
            since = {zid: m.since for zid, m in geofences.memberships(vid).items()}
        else:
            raw = (await store.load_live_fields(vid, (GEO_FIELD,))).get(GEO_FIELD)
            saved = msgspec.json.decode(raw, type=_SavedZones) if raw is not None else None
            since = {zid: m.since for zid, m in saved.zones.items()} if saved else {}
        out = []
        for zid in sorted(since):
            zone = geofences.zone(zid)
            if zone is not None:  # else deleted since
                out.append(VehicleZone(zid, zone.name, zone.kind, since[zid]))
        return out

    @bp.get("/v1/vehicles/<vid>")
    @agent
    async def get_vehicle(vid: str) -> Any:
        s = fleet.vehicles.get(vid)
        if s is None:
            raise ApiError(404, "no such vehicle")
        zones = msgspec.to_builtins(await zones_of(vid))
        return jsonify(public(s) | {"zones": zones})

    @bp.get("/v1/vehicles/<vid>/track")
    @agent
    async def vehicle_track(vid: str) -> Any:
        now = time.time()
        q = read_query(TrackQuery)
        since = now - 3600 if isinstance(q.since, msgspec.UnsetType) else q.since
        until = now + future_tolerance_s if isinstance(q.until, msgspec.UnsetType) else q.until
        limit = q.limit
        rows = await store.read_track(vid, since, until, limit, future_tolerance_s)
        positions = [{"device": device, **msgspec.to_builtins(p)} for device, p in rows]
        return jsonify({"vehicle": vid, "since": since, "until": until, "positions": positions})

    # ----- events

    @bp.get("/v1/events")
    @agent
    async def list_events() -> Any:
        """The oldest ``limit`` events after ``after``, oldest first; with ``order=desc`` the
        newest ``limit`` (after ``after``), newest first."""
        q = read_query(EventsQuery)
        after = q.after or ""
        limit = q.limit
        order = q.order
        if order == "asc":
            events = await event_log.read("(" + after if after else "-", limit)
        elif order == "desc":
            events = await event_log.read_reverse(limit)
            if after:  # ids increase: those of the newest after it are the newest after it
                bound = tuple(map(int, after.split("-")))
                events = [e for e in events if tuple(map(int, e["id"].split("-"))) > bound]
        etype = q.type
        if etype:
            events = [e for e in events if e.get("type") == etype]
        return jsonify({"events": events})

    return bp
