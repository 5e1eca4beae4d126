"""The OpenAPI 3 description served at ``/openapi.json``: generated from the operations the
route modules list (``api_spec.Op``), and, for the operations not listed yet, the hand-written
part below (``_legacy``), being replaced by listed operations module by module."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from .api_spec import Op
from .api_spec import openapi_spec as generated_spec


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
    """Zones, HTTP ingest, tracking links, proof of delivery, claims, ops."""
    did = _path_param("id")
    paths.update({
        "/v1/deliveries/{id}/pod": {
            "post": _op("Complete with proof of delivery (multipart: photo, signature, "
                        "recipient_name, notes, lat, lon, ts); agent key or the vehicle's "
                        "device token. Images must decode as JPEG or PNG (415), of at most "
                        "5 MiB and 25 megapixels each (413); ts is epoch seconds from "
                        "2000-01-01 to FUTURE_TOLERANCE_S ahead (400)", "201", "400", "401",
                        "403", "404", "409", "413", "415", params=[did]),
            "get": _op("The proof of delivery", "200", "401", "404", params=[did]),
        },
    })  # fmt: skip
