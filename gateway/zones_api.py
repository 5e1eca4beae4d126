"""Zones over REST, as GeoJSON Features (with the circle and corridor extensions)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Final

from quart import Blueprint, jsonify, request

from geofence import Zone, ZoneError

from .api import ApiError, agent_required
from .api_spec import Op
from .http_errors import json_object

if TYPE_CHECKING:
    from .app import Gateway

# The operations of this module, for /openapi.json (still described by hand in
# openapi.py while this list is empty).
OPS: Final[list[Op]] = []


def zones_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("zones", __name__)
    agent = agent_required(gw)

    async def feature_body(zone_id: str | None) -> Zone:
        body = await json_object("the body must be a GeoJSON Feature object")
        if zone_id is not None:
            given = body.get("id")
            if given is not None and str(given) != zone_id:
                raise ApiError(400, "the feature id differs from the id in the path", "id")
            body = {**body, "id": zone_id}
        elif body.get("id") is None:
            body = {**body, "id": "z_" + secrets.token_hex(6)}
        try:
            return Zone.from_geojson(body)
        except ZoneError as exc:
            raise ApiError(422, exc.reason, exc.field) from None

    async def save(zone: Zone) -> dict[str, Any]:
        await gw.zone_store.put(zone)
        # Applied here at once; other processes apply it from the change feed.
        gw.live.apply_zone(zone.id, zone)
        return zone.to_geojson()

    @bp.post("/v1/zones")
    @agent
    async def create_zone() -> Any:
        zone = await feature_body(None)
        if await gw.zone_store.get(zone.id) is not None:
            raise ApiError(409, f"zone {zone.id} exists; PUT /v1/zones/{zone.id} replaces it", "id")
        return jsonify(await save(zone)), 201

    @bp.put("/v1/zones/<zone_id>")
    @agent
    async def put_zone(zone_id: str) -> Any:
        return jsonify(await save(await feature_body(zone_id)))

    @bp.get("/v1/zones")
    @agent
    async def list_zones() -> Any:
        kind = request.args.get("kind")
        zones = [z for z in gw.live.engine.zones() if kind is None or z.kind == kind]
        return jsonify({"type": "FeatureCollection", "features": [z.to_geojson() for z in zones]})

    @bp.get("/v1/zones/<zone_id>")
    @agent
    async def get_zone(zone_id: str) -> Any:
        feature = await gw.zone_store.get(zone_id)
        if feature is None:
            raise ApiError(404, "no such zone")
        return jsonify(feature)

    @bp.delete("/v1/zones/<zone_id>")
    @agent
    async def delete_zone(zone_id: str) -> Any:
        if not await gw.zone_store.delete(zone_id):
            raise ApiError(404, "no such zone")
        gw.live.apply_zone(zone_id, None)
        return "", 204

    return bp
