"""The device endpoints on the API's port: OsmAnd (Traccar Client), OwnTracks, and a batch
POST, described in /openapi.json and answered by ``gateway.ingest.device_http`` (the same
answers as the lean device server on ``DEVICE_HTTP_PORT``)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, Final

import msgspec
from quart import Blueprint, Response, request

from gateway.fleet.position import PositionShape
from gateway.http.spec import Content, Op
from gateway.ingest.device_formats import OsmAndFields, OsmAndJson, OwnTracksMessage
from gateway.ingest.device_http import DeviceRequests, Reply, non_empty
from gateway.ingest.wire import Ack

# The operations of this module, for /openapi.json. OsmAnd and OwnTracks are read with the
# Structs of ``device_formats``; the batch body by ``wire.decode_frame``, with ``Position``.
# What the batch POST takes: a position of the right types, or an array of anything; each
# position is then checked on its own, and one that fails (out of range, a field missing)
# is named in the ack's `rejected` with the reason, the others kept (200).
Batch = Annotated[
    list[Any],
    msgspec.Meta(
        description="positions (the Position shape), at most MAX_BATCH_POSITIONS; an item "
        "that is not one is named in the ack's `rejected` and the others are kept"
    ),
]

OPS: Final = [
    Op("POST", "/v1/positions",
       "Device batch POST: one position or an array; answers the ack once stored",
       {200: Ack, 401: None, 429: None}, body=PositionShape | Batch, public=True,
       description="Authorization: Bearer <device token>. The body may also be MessagePack "
       "(Content-Type: application/msgpack, the same shape), answered in MessagePack. A "
       "position refused on its own (out of range, a duplicate...) is named in the ack's "
       "`rejected`; a frame that cannot be read at all, or too large, is a 400. 429: the "
       "device's rate limit, with Retry-After."),
    *(Op(method, "/v1/osmand",
         "OsmAnd protocol (Traccar Client): one position; id = the device token",
         {200: (Content("text/plain", {"type": "string", "maxLength": 0}, "stored, or no fix"),
                Content("application/json", Ack, "filtered: the ack names why")),
          400: None, 401: None, 429: None},
         query=OsmAndFields, public=True,
         body=(Content("application/x-www-form-urlencoded", OsmAndFields), OsmAndJson)
         if method == "POST" else None,
         description="The fields come as query arguments, as a form, or (POST) as the app's "
         "JSON body (speed in m/s there, in knots otherwise); fields not listed are ignored, "
         "an empty one counts as absent, and a negative speed, heading, accuracy or battery "
         "is unknown. Anything that reads as a position answers 200, stored or filtered (a "
         "duplicate, out of range, too coarse...: the ack names why): the app resends a fix "
         "until it gets a success, and would block every fix behind it. A request without "
         "coordinates (cell or Wi-Fi only) answers 200 and keeps the device online. 400: a "
         "field of the wrong type or a time that is not one; 401: unknown or revoked device.")
      for method in ("GET", "POST")),
    Op("POST", "/v1/owntracks", "OwnTracks HTTP mode (basic auth password = the device token)",
       {200: Content("application/json", {"type": "array", "maxItems": 0}, "no commands"),
        400: None, 401: None, 429: None},
       body=OwnTracksMessage, body_required=False, public=True,
       description="A `location` is stored; other message types, an empty body and a "
       "filtered fix (a duplicate, out of range...) also answer []: OwnTracks sends again "
       "whatever did not get a success. A negative acc, vel, cog or batt is unknown. 400: "
       "not a JSON object, or a field of the wrong type."),
]  # fmt: skip


def http_ingest_blueprint(requests: DeviceRequests) -> Blueprint:
    """The device endpoints on the API's port (the lean device server,
    ``gateway.ingest.http_server``, answers the same requests faster on its own port)."""
    bp = Blueprint("http_ingest", __name__)

    def answer(reply: Reply) -> Response:
        return Response(
            reply.body, status=reply.status, content_type=reply.content_type,
            headers=reply.headers,
        )  # fmt: skip

    async def run(call: Awaitable[Reply]) -> Response:
        # An ApiError it raises is answered by the app's error handler.
        return answer(await call)

    async def raw_body() -> bytes:
        data = await request.get_data(as_text=False)
        assert isinstance(data, bytes)
        return data

    @bp.route("/v1/osmand", methods=["GET", "POST"])
    async def osmand() -> Any:
        params = non_empty(dict(request.args))
        json_body = request.method == "POST" and request.mimetype == "application/json"
        if request.method == "POST" and not json_body:
            params.update(non_empty(dict(await request.form)))
        body = await raw_body() if json_body else b""
        auth = request.headers.get("Authorization")
        return await run(requests.osmand(params, body, json_body, auth))

    @bp.post("/v1/owntracks")
    async def owntracks() -> Any:
        body = await raw_body()
        return await run(requests.owntracks(body, request.headers.get("Authorization")))

    @bp.post("/v1/positions")
    async def batch() -> Any:
        body = await raw_body()
        binary = request.mimetype in ("application/msgpack", "application/x-msgpack")
        return await run(requests.batch(body, binary, request.headers.get("Authorization")))

    return bp
