"""The OpenAPI 3 description served at ``/openapi.json``: generated from the operations the
route modules list (``api_spec.Op``), and, for the operations not listed yet, the hand-written
part below (``_legacy``), being replaced by listed operations module by module."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from .api_spec import Op
from .api_spec import openapi_spec as generated_spec
from .dispatch_lifecycle import FAILURE_REASONS, STATUSES


def _err() -> dict[str, Any]:
    return {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(schema: dict[str, Any], desc: str = "ok") -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ref_response(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, typ: str, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": typ},
            "description": desc}  # fmt: skip


# Marks an operation described by hand below, not from its handler's types.
HAND_WRITTEN: Final = "x-hand-written"


def openapi_spec(server_url: str, ops: Iterable[Op]) -> dict[str, Any]:
    spec = generated_spec(
        server_url,
        ops,
        title="Fleet tracking and notification gateway",
        version="0.1.0",
        description=(
            "Devices push positions over WebSocket (see README: device protocol); agents and "
            "shippers' systems use this API with an API key."
        ),
    )
    legacy = _legacy(server_url)
    for name, schema in legacy["components"]["schemas"].items():
        spec["components"]["schemas"].setdefault(name, schema)
    spec["components"]["responses"] = legacy["components"]["responses"]
    for path, item in legacy["paths"].items():
        for method, op in item.items():
            if method not in spec["paths"].get(path, {}):
                spec["paths"].setdefault(path, {})[method] = op | {HAND_WRITTEN: True}
    return spec


def _legacy(server_url: str) -> dict[str, Any]:
    number = {"type": "number"}
    opt_number = {"type": ["number", "null"]}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
        },
        "DeviceCreate": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"},
                "vehicle": {"type": "string", "description": "defaults to the device id"},
                "name": {"type": "string"},
            },
        },
        "Device": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "vehicle": {"type": "string"},
                "name": {"type": "string"},
                "revoked": {"type": "boolean"},
                "created": number,
            },
        },
        "DeviceToken": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "vehicle": {"type": "string"},
                "token": {"type": "string", "description": "shown once; stored hashed"},
            },
        },
        "Vehicle": {
            "type": "object",
            "properties": {
                "vehicle": {"type": "string"},
                "device": {"type": "string"},
                "seq": {"type": "integer"},
                "ts": number,
                "lat": number,
                "lon": number,
                "speed": opt_number,
                "heading": opt_number,
                "accuracy": opt_number,
                "battery": opt_number,
                "temp_c": opt_number,
                "status": {"type": "string", "enum": ["moving", "stopped", "offline"]},
                "since": number,
                "seen": number,
            },
        },
        "Position": {
            "type": "object",
            "required": ["seq", "ts", "lat", "lon"],
            "properties": {
                "device": {"type": "string"},
                "seq": {"type": "integer"},
                "ts": number,
                "lat": number,
                "lon": number,
                "speed": number,
                "heading": number,
                "accuracy": number,
                "alt": number,
                "battery": number,
                "temp_c": number,
                "odometer": number,
            },
        },
        "Event": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "type": {"type": "string"},
                "ts": number,
                "vehicle": {"type": ["string", "null"]},
                "route": {"type": ["string", "null"]},
                "stop": {"type": ["string", "null"]},
                "delivery": {"type": ["string", "null"]},
                "data": {"type": "object"},
            },
        },
    }
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Liveness and Redis reachability", "security": [],
                             "responses": {"200": _ok({"type": "object"}), "503": _err()}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                             "responses": {"200": {"description": "text exposition format"}}}},
        "/v1/devices": {
            "post": {
                "summary": "Register a device; returns its secret token once",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("DeviceCreate")}}},
                "responses": {"201": _ok(_ref("DeviceToken"), "created"), "400": _err(),
                              "401": _err(), "409": _err()},
            },
            "get": {"summary": "List devices", "responses": {"200": _ok({
                "type": "object",
                "properties": {"devices": {"type": "array", "items": _ref("Device")}}})}},
        },
        "/v1/devices/{id}": {"get": {"summary": "One device", "parameters": [_path_param("id")],
                                     "responses": {"200": _ok(_ref("Device")), "404": _err()}}},
        "/v1/devices/{id}/token": {"post": {
            "summary": "Issue a new token (the old one stops working; also un-revokes)",
            "parameters": [_path_param("id")],
            "responses": {"200": _ok(_ref("DeviceToken")), "404": _err()}}},
        "/v1/devices/{id}/revoke": {"post": {
            "summary": "Revoke the device's token and close its connections",
            "parameters": [_path_param("id")],
            "responses": {"200": _ok({"type": "object"}), "404": _err()}}},
        "/v1/vehicles": {"get": {"summary": "Latest state of every vehicle", "responses": {
            "200": _ok({"type": "object", "properties": {
                "vehicles": {"type": "array", "items": _ref("Vehicle")}}})}}},
        "/v1/vehicles/{id}": {"get": {"summary": "Latest state of one vehicle",
                                      "parameters": [_path_param("id")],
                                      "responses": {"200": _ok(_ref("Vehicle")), "404": _err()}}},
        "/v1/vehicles/{id}/track": {"get": {
            "summary": "Position history, oldest first",
            "parameters": [
                _path_param("id"),
                _query("since", "number", "epoch seconds, default one hour ago"),
                _query("until", "number", "epoch seconds, default now"),
                _query("limit", "integer", "at most 50000, default 10000"),
            ],
            "responses": {"200": _ok({"type": "object", "properties": {
                "positions": {"type": "array", "items": _ref("Position")}}}), "400": _err()}}},
        "/v1/events": {"get": {
            "summary": "The event log, oldest first (order=desc: newest first)",
            "parameters": [_query("after", "string", "return events after this id"),
                           _query("limit", "integer", "at most 1000, default 100"),
                           {**_query("order", "string", "asc: the oldest events (after "
                                     "`after`), oldest first; desc: the newest, newest first"),
                            "schema": {"type": "string", "enum": ["asc", "desc"],
                                       "default": "asc"}},
                           _query("type", "string", "only events of this type (applied to "
                                  "the page of `limit` events)")],
            "responses": {"200": _ok({"type": "object", "properties": {
                "events": {"type": "array", "items": _ref("Event")}}}), "400": _err()}}},
    }  # fmt: skip
    _add_dispatch(schemas, paths)
    _add_more(paths)
    for item in paths.values():
        for op in item.values():
            if isinstance(op, dict) and "responses" in op:
                op["responses"].setdefault("503", _ref_response("StorageUnavailable"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Fleet tracking and notification gateway",
            "version": "0.1.0",
            "description": (
                "Devices push positions over WebSocket (see README: device protocol); agents and "
                "shippers' systems use this API with an API key."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": schemas,
            "responses": {
                "StorageUnavailable": {
                    "description": (
                        'Redis does not answer ({"error": "storage_unavailable"}); a GET was '
                        "tried again for API_REDIS_RETRY_S first. Try again after Retry-After."
                    ),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
            },
        },
        "paths": paths,
    }


def _add_dispatch(schemas: dict[str, Any], paths: dict[str, Any]) -> None:
    """Routes, stops and deliveries (``gateway/dispatch_api.py``)."""
    string = {"type": "string"}
    opt_string = {"type": ["string", "null"]}
    number = {"type": "number"}
    opt_number = {"type": ["number", "null"]}
    time_value = {
        "oneOf": [number, {"type": "string", "format": "date-time"}],
        "description": "epoch seconds, or ISO 8601 with a UTC offset",
    }
    statuses = list(STATUSES)
    reasons = list(FAILURE_REASONS)

    def obj(required: list[str], **props: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "required": required,
            "properties": props,
            "additionalProperties": False,
        }

    e164 = {
        "type": "string",
        "pattern": "^\\+[1-9][0-9]{7,14}$",
        "description": "E.164; spaces, dots, dashes and brackets are dropped first",
    }
    schemas.update(
        {
            "LatLon": obj(["lat", "lon"], lat=number, lon=number),
            "Window": obj(["start", "end"], start=time_value, end=time_value),
            "Driver": obj(["name"], name=string, phone=e164),
            "Recipient": obj(
                ["name"],
                name=string,
                phone=e164,
                email={"type": "string", "format": "email"},
                language={"type": "string", "default": "en"},
                timezone={"type": "string", "default": "UTC", "description": "IANA name"},
                channels={
                    "type": "array",
                    "items": {"enum": ["sms", "email"]},
                    "description": "default: each channel with a contact given",
                },
            ),
            "DeliveryInput": obj(
                ["external_id", "recipient"],
                external_id=string,
                recipient=_ref("Recipient"),
                brand={"type": "string", "default": "default"},
                notes=string,
                temp_min_c=number,
                temp_max_c=number,
            ),
            "StopInput": obj(
                ["external_id", "location", "address", "window", "deliveries"],
                external_id=string,
                location=_ref("LatLon"),
                address=string,
                window=_ref("Window"),
                service_s={"type": "number", "default": 0},
                planned_arrival=time_value,
                kind={"enum": ["delivery", "pickup"], "default": "delivery"},
                deliveries={"type": "array", "minItems": 1, "items": _ref("DeliveryInput")},
            ),
            "RouteInput": obj(
                ["external_id", "vehicle", "driver", "date", "stops"],
                external_id=string,
                vehicle={"type": "string", "description": "a registered vehicle (else 422)"},
                driver=_ref("Driver"),
                date={"type": "string", "format": "date"},
                stops={"type": "array", "minItems": 1, "items": _ref("StopInput")},
                path={
                    "type": "array",
                    "items": {"type": "array", "items": number, "minItems": 2, "maxItems": 2},
                    "description": "planned polyline, [lat, lon] points",
                },
            ),
            "RouteImport": obj(
                ["routes"], routes={"type": "array", "minItems": 1, "items": _ref("RouteInput")}
            ),
            "ImportResult": {
                "type": "object",
                "properties": {
                    "routes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"external_id": string, "id": string},
                        },
                    },
                    "imported": {"type": "integer"},
                    "updated": {"type": "integer"},
                    "deliveries_created": {"type": "integer"},
                    "deliveries_updated": {"type": "integer"},
                    "events": {"type": "integer"},
                },
            },
            "Stop": {
                "type": "object",
                "properties": {
                    "id": string,
                    "external_id": string,
                    "kind": string,
                    "location": _ref("LatLon"),
                    "address": string,
                    "window": _ref("Window"),
                    "service_s": number,
                    "planned_arrival": opt_number,
                    "deliveries": {"type": "array", "items": string},
                },
            },
            "Route": {
                "type": "object",
                "properties": {
                    "id": string,
                    "external_id": string,
                    "vehicle": string,
                    "driver": _ref("Driver"),
                    "date": string,
                    "status": {"enum": ["planned", "started", "finished"]},
                    "stops": {"type": "array", "items": _ref("Stop")},
                    "path": {"type": ["array", "null"]},
                    "created": number,
                    "updated": number,
                    "started": opt_number,
                },
            },
            "RouteSummary": {
                "type": "object",
                "properties": {
                    "id": string,
                    "external_id": string,
                    "vehicle": string,
                    "driver": _ref("Driver"),
                    "date": string,
                    "status": string,
                    "stops": {"type": "integer"},
                    "deliveries": {"type": "integer"},
                },
            },
            "Delivery": {
                "type": "object",
                "properties": {
                    "id": string,
                    "external_id": string,
                    "route": opt_string,
                    "stop": opt_string,
                    "status": {"enum": statuses},
                    "address": string,
                    "window": _ref("Window"),
                    "brand": string,
                    "kind": string,
                    "recipient": _ref("Recipient"),
                    "notes": string,
                    "temp_min_c": opt_number,
                    "temp_max_c": opt_number,
                    "location": _ref("LatLon"),
                    "reason": opt_string,
                    "note": opt_string,
                    "created": number,
                    "updated": number,
                },
            },
            "StatusChange": obj(
                ["status"],
                status={"enum": statuses},
                reason={"enum": reasons, "description": "required for failed"},
                note=string,
                window=_ref("Window"),
            ),
            "Assign": obj([], vehicle=string, driver=_ref("Driver")),
            "TransitionError": {
                "type": "object",
                "properties": {"error": string, "field": string, "from": string, "to": string},
            },
        }
    )
    ident = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": string,
        "description": "internal id, or the shipper's external id",
    }
    conflict = {
        "description": "conflicts with the current state",
        "content": {"application/json": {"schema": _ref("TransitionError")}},
    }
    paths.update({
        "/v1/routes": {
            "put": {
                "summary": "Bulk import routes (upsert by external id; all or nothing)",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("RouteImport")}}},
                "responses": {"200": _ok(_ref("ImportResult")), "400": _err(), "409": _err(),
                              "422": _err()}},
            "get": {
                "summary": "List routes",
                "parameters": [_query("date", "string", "YYYY-MM-DD"),
                               _query("vehicle", "string", "vehicle id"),
                               _query("status", "string", "planned, started or finished"),
                               _query("limit", "integer", "at most 1000, default 100")],
                "responses": {"200": _ok({"type": "object", "properties": {
                    "routes": {"type": "array", "items": _ref("RouteSummary")}}}),
                    "400": _err()}}},
        "/v1/routes/{id}": {"get": {
            "summary": "One route with its stops", "parameters": [ident],
            "responses": {"200": _ok(_ref("Route")), "404": _err()}}},
        "/v1/routes/{id}/assign": {"post": {
            "summary": "Change the vehicle and/or driver", "parameters": [ident],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("Assign")}}},
            "responses": {"200": _ok({"type": "object", "properties": {
                "route": _ref("Route")}}), "400": _err(), "404": _err(), "409": conflict,
                "422": _err()}}},
        "/v1/routes/{id}/start": {"post": {
            "summary": "Start the route: its deliveries go out for delivery",
            "parameters": [ident],
            "responses": {"200": _ok({"type": "object", "properties": {
                "route": _ref("Route")}}), "404": _err(), "409": conflict}}},
        "/v1/deliveries": {"get": {
            "summary": "Search deliveries",
            "parameters": [_query("route", "string", "route id or external id"),
                           _query("status", "string", "one delivery status"),
                           _query("q", "string",
                                  "part of the external id, recipient name, address or phone"),
                           _query("limit", "integer", "at most 1000, default 100")],
            "responses": {"200": _ok({"type": "object", "properties": {
                "deliveries": {"type": "array", "items": _ref("Delivery")},
                "total": {"type": "integer"}}}), "400": _err(), "404": _err()}}},
        "/v1/deliveries/{id}": {"get": {
            "summary": "One delivery", "parameters": [ident],
            "responses": {"200": _ok(_ref("Delivery")), "404": _err()}}},
        "/v1/deliveries/{id}/status": {"post": {
            "summary": "Move a delivery along its lifecycle", "parameters": [ident],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("StatusChange")}}},
            "responses": {"200": _ok({"type": "object", "properties": {
                "delivery": _ref("Delivery")}}), "400": _err(), "404": _err(),
                "409": conflict}}},
    })  # fmt: skip


def _op(summary: str, *codes: str, params: list[dict[str, Any]] | None = None,
        body: bool = False, public: bool = False) -> dict[str, Any]:  # fmt: skip
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {c: ({"description": "ok"} if c < "300" else _err()) for c in codes},
    }
    if params:
        op["parameters"] = params
    if body:
        json_object = {"application/json": {"schema": {"type": "object"}}}
        op["requestBody"] = {"required": True, "content": json_object}
    if public:
        op["security"] = []
    return op


def _add_more(paths: dict[str, Any]) -> None:
    """Zones, HTTP ingest, tracking links, proof of delivery, claims, notifications, ops."""
    zid, did, tok = _path_param("id"), _path_param("id"), _path_param("token")
    paths.update({
        "/v1/positions": {"post": _op(
            "Device batch POST (Bearer device token; JSON or application/msgpack); "
            "answers the ack once stored", "200", "400", "401", body=True, public=True)},
        "/v1/osmand": {"get": _op("OsmAnd protocol (Traccar Client); id = device token",
                                  "200", "400", "401", public=True)},
        "/v1/owntracks": {"post": _op("OwnTracks HTTP mode (basic auth password = token)",
                                      "200", "400", "401", body=True, public=True)},
        "/v1/deliveries/{id}/link": {"post": _op("Issue a customer tracking link", "200", "404",
                                                 params=[did])},
        "/v1/deliveries/{id}/link/revoke": {"post": _op(
            "Revoke every tracking link issued so far", "200", "404", params=[did])},
        "/v1/track/{token}": {"get": _op("The customer's view of one delivery", "200", "403",
                                         params=[tok], public=True)},
        "/v1/track/{token}/reschedule": {"post": _op(
            "After a failed attempt, choose one of the windows offered", "200", "400", "403",
            "409", params=[tok], body=True, public=True)},
        "/v1/deliveries/{id}/pod": {
            "post": _op("Complete with proof of delivery (multipart: photo, signature, "
                        "recipient_name, notes, lat, lon, ts); agent key or the vehicle's "
                        "device token. Images must decode as JPEG or PNG (415), of at most "
                        "5 MiB and 25 megapixels each (413); ts is epoch seconds from "
                        "2000-01-01 to FUTURE_TOLERANCE_S ahead (400)", "201", "400", "401",
                        "403", "404", "409", "413", "415", params=[did]),
            "get": _op("The proof of delivery", "200", "401", "404", params=[did]),
        },
        "/v1/deliveries/{id}/claims": {"post": _op("Open a claim", "201", "400", "404",
                                                   params=[did], body=True)},
        "/v1/claims": {"get": _op("Claims", "200", params=[
            _query("status", "string", "open or resolved"),
            _query("delivery", "string", "one delivery's")])},
        "/v1/claims/{id}/resolve": {"post": _op("Resolve a claim", "200", "400", "404", "409",
                                                params=[zid], body=True)},
        "/v1/notifications": {"get": _op("Every notification of a delivery, with its attempts",
                                         "200", params=[_query("delivery", "string", "id")])},
        "/v1/alerts": {"get": _op("Alerts", "200", params=[
            _query("status", "string", "unresolved (default), open, acknowledged, resolved or all"),
        ])},
        "/v1/alerts/{id}/ack": {"post": _op("Acknowledge an alert", "200", "404", "409",
                                            params=[zid])},
        "/v1/alerts/{id}/resolve": {"post": _op("Resolve an alert", "200", "404", params=[zid])},
        "/v1/webhooks": {"get": _op("Webhook subscriptions", "200"),
                         "post": _op("Subscribe a URL (url, secret, events)", "201", "400",
                                     body=True)},
        "/v1/webhooks/{id}": {"get": _op("One subscription", "200", "404", params=[zid]),
                              "patch": _op("Change it", "200", "400", "404", params=[zid],
                                           body=True),
                              "delete": _op("Delete it", "204", "404", params=[zid])},
        "/v1/kpis": {"get": _op("KPIs from the event log", "200", "400",
                                params=[_query("since", "number", "epoch seconds")])},
        "/v1/deliveries.csv": {"get": _op("Deliveries as CSV", "200", "400", "404")},
        "/v1/live": {"get": _op("Routes tracked by this process, with ETAs", "200")},
        "/v1/capture/messages": {"get": _op(
            "What the local capture servers received (demo)", "200", "404")},
    })  # fmt: skip
