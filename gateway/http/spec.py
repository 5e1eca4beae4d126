"""The API's operations as data, and the OpenAPI description generated from them.

Each route module lists its operations (``Op``): the request body and query types, and the
type each status answers. The types are msgspec Structs, and the handlers read their input
with the same types (``read_query``, ``read_body``), so what the description allows is what
the handler accepts: the schemas come from ``msgspec.json.schema_components``, never written
by hand. Statuses every operation of a kind can answer are added here: 400 where there is
input to refuse, 401 where an agent key is needed, 413 where there is a body, 503 while
Redis is away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgspec
from quart import request

from gateway.core.structs import field_of
from gateway.http.errors import ApiError

REF: Final = "#/components/schemas/{name}"
T = TypeVar("T")


class Error(msgspec.Struct, omit_defaults=True):
    """Every error answer: what is wrong, and the input to blame when there is one."""

    error: str
    field: str | None = None


class Unavailable(msgspec.Struct):
    """Redis does not answer; try again after ``Retry-After``."""

    error: str
    message: str
    retry_after_s: int


@dataclass(frozen=True)
class Content:
    """A response or request body that is not one JSON type: ``media_type`` with ``schema``
    (a type, a raw JSON schema, or None for any)."""

    media_type: str
    schema: Any = None
    description: str = ""


@dataclass(frozen=True)
class Op:
    """One operation. ``responses`` maps each status to the type of its JSON body (None:
    an ``Error``), a ``Content``, or a tuple of them (one per media type); ``body`` is the
    request body's, in the same forms;
    ``query`` a Struct whose fields are the query parameters; ``params`` describes the path
    parameters (``{name}`` in ``path``); ``public``: no agent key needed (it then lists
    its own 401 or 403 if it has one)."""

    method: str
    path: str
    summary: str
    responses: Mapping[int, Any]
    body: Any = None
    query: type | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    public: bool = False
    description: str = ""
    body_required: bool = True  # False: an empty body is answered too


def _refused(exc: msgspec.ValidationError) -> ApiError:
    message, where = field_of(exc)
    return ApiError(400, message, where)


def read_query(kind: type[T]) -> T:
    """The request's query arguments as ``kind`` (strings converted); a 400 naming the
    argument otherwise. Unknown arguments are ignored."""
    try:
        return msgspec.convert(dict(request.args), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise _refused(exc) from None


async def read_body(kind: type[T]) -> T:
    """The request's JSON body decoded as ``kind``; a 400 naming the field otherwise (not
    JSON, not UTF-8, nested past the recursion guard, or not of the type)."""
    data = await request.get_data(as_text=False)
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise _refused(exc) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply") from None


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


class _Schemas:
    """Collects the types named by the operations, for one ``schema_components`` call."""

    def __init__(self) -> None:
        self.types: list[Any] = []
        self.index: dict[int, int] = {}

    def add(self, kind: Any) -> int:
        key = id(kind)
        if key not in self.index:
            self.index[key] = len(self.types)
            self.types.append(kind)
        return self.index[key]


def _content(schemas: _Schemas, spec: Any, placeholders: list[tuple[dict[str, Any], int]]) -> Any:
    """A content map for ``spec`` (a type, a Content, or a tuple of them: one media type
    each), with placeholders for the schemas, filled later."""
    if isinstance(spec, tuple):
        out: dict[str, Any] = {}
        for one in spec:
            out.update(_content(schemas, one, placeholders))
        return out
    if isinstance(spec, Content):
        entry: dict[str, Any] = {}
        if isinstance(spec.schema, dict):
            entry["schema"] = spec.schema
        elif spec.schema is not None:
            placeholders.append((entry, schemas.add(spec.schema)))
        return {spec.media_type: entry}
    entry = {}
    placeholders.append((entry, schemas.add(spec)))
    return {"application/json": entry}


def _query_parameters(kind: type) -> list[dict[str, Any]]:
    (_,), components = msgspec.json.schema_components([kind], ref_template=REF)
    schema = components[kind.__name__]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", "")
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": prop}  # fmt: skip
        if description:
            param["description"] = description
        out.append(param)
    return out


def openapi_spec(
    server_url: str, ops: Iterable[Op], *, title: str, version: str, description: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``ops``."""
    schemas = _Schemas()
    schemas.add(Error)
    schemas.add(Unavailable)
    placeholders: list[tuple[dict[str, Any], int]] = []
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        responses: dict[str, Any] = {}
        codes: dict[int, Any] = dict(op.responses)
        has_input = op.body is not None or op.query is not None or bool(op.params)
        if has_input:
            codes.setdefault(400, None)
        if op.body is not None:
            codes.setdefault(413, None)
        if not op.public:
            codes.setdefault(401, None)
        for status in sorted(codes):
            spec = codes[status]
            if spec is None:
                spec = Error
            first = spec[0] if isinstance(spec, tuple) else spec
            if isinstance(first, Content):
                text = first.description or ("ok" if status < 300 else "error")
            else:
                doc = getattr(first, "__doc__", None) if isinstance(first, type) else None
                text = (doc or "").strip().split("\n")[0] or ("ok" if status < 300 else "error")
            response: dict[str, Any] = {"description": text}
            if status != 204:
                response["content"] = _content(schemas, spec, placeholders)
            responses[str(status)] = response
        unavailable = {
            "description": "Redis does not answer; a GET was tried again for "
            "API_REDIS_RETRY_S first. Try again after Retry-After.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": _content(schemas, Unavailable, placeholders),
        }
        responses["503"] = unavailable
        operation: dict[str, Any] = {"summary": op.summary, "responses": responses}
        if op.description:
            operation["description"] = op.description
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": text,
            }
            for name, text in op.params.items()
        ]
        if op.query is not None:
            parameters += _query_parameters(op.query)
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {
                "required": op.body_required,
                "content": _content(schemas, op.body, placeholders),
            }
        if op.public:
            operation["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    refs, components = msgspec.json.schema_components(schemas.types, ref_template=REF)
    for entry, i in placeholders:
        entry["schema"] = refs[i]
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": server_url}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": components,
        },
        "paths": paths,
    }


def merged(*groups: Sequence[Op]) -> list[Op]:
    """The operations of every route module, each once (by method and path)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for group in groups:
        for op in group:
            key = (op.method.upper(), op.path)
            if key in seen:
                raise ValueError(f"operation listed twice: {key}")
            seen.add(key)
            out.append(op)
    return out
