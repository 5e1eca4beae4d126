"""Zones over REST, as GeoJSON Features (with the circle and corridor extensions)."""

from __future__ import annotations

import secrets
from typing import Any, Final

import msgspec
from quart import Blueprint, jsonify, request

from gateway.http.common import AgentAuth
from gateway.http.errors import ApiError
from gateway.http.spec import Op, read_body, read_query
from gateway.live.tracking import LiveTracking
from gateway.zones.models import ZoneCollection, ZoneFeature, ZoneFeatureInput, ZonesQuery
from gateway.zones.store import ZoneStore
from geofence import Zone, ZoneError

_ID: Final = {"id": "the zone id"}
_SHAPES: Final = (
    "A GeoJSON Feature: Polygon, MultiPolygon, Point with properties.radius_m (a circle) or "
    "LineString with properties.width_m (a corridor). A Feature of the right shape that is "
    "no valid zone (a ring not closed or self-intersecting, no area, no radius_m for a "
    "Point, an unknown time zone...) is a 422 naming the field."
)

# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("POST", "/v1/zones", "Create a zone (its id made up if the Feature has none)",
       {201: ZoneFeature, 409: None, 422: None}, body=ZoneFeatureInput, description=_SHAPES),
    Op("GET", "/v1/zones", "Zones as a GeoJSON FeatureCollection", {200: ZoneCollection},
       query=ZonesQuery),
    Op("GET", "/v1/zones/{id}", "One zone", {200: ZoneFeature, 404: None}, params=_ID),
    Op("PUT", "/v1/zones/{id}", "Create or replace a zone (a Feature id must be the path's)",
       {200: ZoneFeature, 422: None}, body=ZoneFeatureInput, params=_ID, description=_SHAPES),
    Op("DELETE", "/v1/zones/{id}", "Delete a zone", {204: None, 404: None}, params=_ID),
]  # fmt: skip


def zones_blueprint(zones: ZoneStore, live: LiveTracking, agent: AgentAuth) -> Blueprint:
    bp = Blueprint("zones", __name__)

    async def feature_body(zone_id: str | None) -> Zone:
        """The request's Feature as a Zone: its shape checked by ``ZoneFeatureInput`` (400),
        its geometry by ``Zone`` (422). ``zone_id``: the path's (PUT)."""
        feature = await read_body(ZoneFeatureInput)
        # Decoded again as it came: the properties the Struct does not name are the zone's
        # own, kept and given back.
        body = msgspec.json.decode(await request.get_data(as_text=False))
        given = None if isinstance(feature.id, msgspec.UnsetType) else feature.id
        if zone_id is not None:
            if given is not None and str(given) != zone_id:
                raise ApiError(422, "the feature id differs from the id in the path", "id")
            body["id"] = zone_id
        elif given is None:
            body["id"] = "z_" + secrets.token_hex(6)
        try:
            return Zone.from_geojson(body)
        except ZoneError as exc:
            raise ApiError(422, exc.reason, exc.field) from None

    async def save(zone: Zone) -> dict[str, Any]:
        await zones.put(zone)
        # Applied here at once; other processes apply it from the change feed.
        live.apply_zone(zone.id, zone)
        return zone.to_geojson()

    @bp.post("/v1/zones")
    @agent
    async def create_zone() -> Any:
        zone = await feature_body(None)
        if await zones.get(zone.id) is not None:
            raise ApiError(409, f"zone {zone.id} exists; PUT /v1/zones/{zone.id} replaces it", "id")
        return jsonify(await save(zone)), 201

    @bp.put("/v1/zones/<zone_id>")
    @agent
    async def put_zone(zone_id: str) -> Any:
        return jsonify(await save(await feature_body(zone_id)))

    @bp.get("/v1/zones")
    @agent
    async def list_zones() -> Any:
        kind = read_query(ZonesQuery).kind
        zones = [
            z for z in live.engine.zones() if isinstance(kind, msgspec.UnsetType) or z.kind == kind
        ]
        return jsonify({"type": "FeatureCollection", "features": [z.to_geojson() for z in zones]})

    @bp.get("/v1/zones/<zone_id>")
    @agent
    async def get_zone(zone_id: str) -> Any:
        feature = await zones.get(zone_id)
        if feature is None:
            raise ApiError(404, "no such zone")
        return jsonify(feature)

    @bp.delete("/v1/zones/<zone_id>")
    @agent
    async def delete_zone(zone_id: str) -> Any:
        if not await zones.delete(zone_id):
            raise ApiError(404, "no such zone")
        live.apply_zone(zone_id, None)
        return "", 204

    return bp
