"""Every error the HTTP app answers is JSON, and nothing a request sends reaches the server.

- ``ApiError(status, message, field)``: what handlers raise for bad input; answered as
  ``{"error": message, "field": field}``.
- Quart's own HTTP errors (404, 405, 413, ...) get the same JSON shape and their status.
- Anything else a handler raises is a bug: answered 500 ``{"error": "internal error"}``,
  counted in ``gateway_http_errors_total{error=...}``, and its traceback logged once per
  place it was raised (a client repeating the request that trips it cannot flood the log).
- Every answer, an error above all, waits for the rest of the request's body first
  (``quart_body``), so the keep-alive connection takes the next request.
- ``json_object`` reads a request body as a JSON object: not JSON, not UTF-8, nested too
  deeply, a number too large to be one, or not an object is a 400 saying which.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec
from quart import Quart, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from gateway.core.errors import ApiError
from gateway.core.failures import log_once
from gateway.core.metrics import Metrics
from gateway.http.body import body_finished

log = logging.getLogger(__name__)

# Integers beyond this are refused: every number the API takes is a float or a count, and
# a 400-digit integer overflows the float conversion downstream.
MAX_JSON_INT: Final = 2**63

_any_json: Final = msgspec.json.Decoder()


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def decode_json(data: bytes | str) -> Any:
    """``data`` as JSON, or ApiError(400) saying what is wrong with it."""
    try:
        value = _any_json.decode(data)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply") from None
    _check_ints(value)
    return value


async def json_object(what: str = "the body must be a JSON object") -> dict[str, Any]:
    """The request body as a JSON object; ApiError(400) otherwise (``what`` says why)."""
    body = decode_json(await request.get_data(as_text=False))
    if not isinstance(body, dict):
        raise ApiError(400, what)
    return body


def _check_ints(value: Any) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, int) and not -MAX_JSON_INT <= v <= MAX_JSON_INT:
            raise ApiError(400, "a number in the body is too large")


def install_error_handlers(app: Quart, metrics: Metrics) -> None:
    @app.after_request
    async def _body_read(response: Response) -> Response:
        # Every answer (an error above all, which may come before the body was read) waits
        # for the rest of the request's body, or closes the connection.
        if not await body_finished():
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.field, exc.headers)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(status, exc.description or exc.name)
        if status == 405 and exc.get_headers():
            for name, value in exc.get_headers():
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    async def _bug(exc: Exception) -> Response:
        metrics.inc("gateway_http_errors_total", error=type(exc).__name__)
        log_once(log, f"{request.method} {request.path} failed", exc)
        return error_response(500, "internal error")
