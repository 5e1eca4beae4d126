"""The OpenAPI 3 description served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any


def _err() -> dict[str, Any]:
    return {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(schema: dict[str, Any], desc: str = "ok") -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, typ: str, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": typ},
            "description": desc}  # fmt: skip


def openapi_spec(server_url: str) -> dict[str, Any]:
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
            "summary": "The event log, oldest first",
            "parameters": [_query("after", "string", "return events after this id"),
                           _query("limit", "integer", "at most 1000, default 100"),
                           _query("type", "string", "only events of this type")],
            "responses": {"200": _ok({"type": "object", "properties": {
                "events": {"type": "array", "items": _ref("Event")}}})}}},
    }  # fmt: skip
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
        },
        "paths": paths,
    }
