"""Customer tracking pages and their data, opened by signed links; agents issue and revoke.

``GET /t/<token>``: the page (the map's tile URL, ``TILE_URL``, in its ``tile-url`` meta
element). ``GET /v1/track/<token>``: the view as JSON.
``WS /v1/track/<token>/live``: the view again whenever it changes, until the link expires or
is revoked (closed then with ``CLOSE_LINK_INVALID``, within ``REVOCATION_POLL_S`` of a
revocation). A bad, expired or revoked token gets 403 with the same body whether or not the
delivery exists. No answer of these routes may be cached (``Cache-Control: no-store``): a
link that stops working must not keep showing what it showed.
"""

from __future__ import annotations

import html
import time
from typing import Any, Final

import msgspec
import trio
from quart import Blueprint, Response, jsonify, websocket

from gateway.customer.links import LinkClaims, Links
from gateway.customer.models import CustomerView, LinkIssued, LinksRevoked, RescheduleChoice
from gateway.customer.pod import Proofs
from gateway.customer.view import Basis, CustomerViews
from gateway.dispatch.lifecycle import RESCHEDULED
from gateway.dispatch.records import Window
from gateway.dispatch.service import Dispatch
from gateway.fleet.hub import Hub
from gateway.http.common import STATIC_DIR, AgentAuth, drain_browser
from gateway.http.errors import ApiError
from gateway.http.pod import send_pod_file
from gateway.http.spec import Content, Op, read_body

REFRESH_S: Final = 5.0  # the view is re-sent at least this often (ETA moves with time)
DENIED: Final = "this tracking link is invalid or has expired"
CLOSE_LINK_INVALID: Final = 4403  # the link expired or was revoked while its stream was open

_json: Final = msgspec.json.Encoder()

_TOKEN: Final = {"token": "the tracking link's token"}
_DID: Final = {"id": "internal id, or the shipper's external id"}
_IMAGE: Final = Content("image/*", {"type": "string", "format": "binary"}, "a JPEG or PNG image")

# The operations of this module, for /openapi.json. The page ``/t/{token}`` is for browsers
# and the ``live`` stream a WebSocket: neither is described.
OPS: Final = [
    Op("GET", "/v1/track/{token}", "The customer's view of one delivery",
       {200: CustomerView, 403: None}, params=_TOKEN, public=True),
    Op("POST", "/v1/track/{token}/reschedule",
       "After a failed attempt, choose one of the windows offered",
       {200: CustomerView, 403: None, 409: None, 422: None}, body=RescheduleChoice,
       params=_TOKEN, public=True,
       description="409: the delivery cannot be rescheduled now; 422: not a window offered."),
    Op("GET", "/v1/track/{token}/pod/{sha}", "A file of the proof of delivery",
       {200: _IMAGE, 403: None, 404: None},
       params={**_TOKEN, "sha": "the file's SHA-256, as in the view"}, public=True),
    Op("POST", "/v1/deliveries/{id}/link", "Issue a customer tracking link",
       {200: LinkIssued, 404: None}, params=_DID),
    Op("POST", "/v1/deliveries/{id}/link/revoke", "Revoke every tracking link issued so far",
       {200: LinksRevoked, 404: None}, params=_DID),
]  # fmt: skip


def customer_blueprint(
    links: Links,
    views: CustomerViews,
    dispatch: Dispatch,
    proofs: Proofs,
    hub: Hub,
    agent: AgentAuth,
    *,
    public_url: str,
    tile_url: str = "",
) -> Blueprint:
    """``public_url``: the gateway's, which the links issued start with; ``tile_url``: the
    map's street tiles (empty: a plain background)."""
    bp = Blueprint("customer", __name__)
    tile_meta = f'name="tile-url" content="{html.escape(tile_url)}"'
    page_html = (STATIC_DIR / "track.html").read_text(encoding="utf-8")
    page_html = page_html.replace('name="tile-url" content=""', tile_meta)

    @bp.after_request
    async def no_store(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        return response

    async def delivery_for(token: str) -> str:
        delivery = await links.check(token)
        if delivery is None:
            raise ApiError(403, DENIED)
        return delivery

    @bp.get("/t/<token>")
    async def page(token: str) -> Any:
        if await links.check(token) is None:
            return Response(f"<!doctype html><title>Tracking</title><p>{DENIED}.</p>", 403)
        response = Response(page_html, content_type="text/html; charset=utf-8")
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @bp.get("/v1/track/<token>")
    async def view(token: str) -> Any:
        body, _ = await views.view(await delivery_for(token))
        if body is None:
            raise ApiError(403, DENIED)
        return jsonify(body)

    @bp.websocket("/v1/track/<token>/live")
    async def live(token: str) -> Any:
        claims = await links.claims(token)
        basis = None if claims is None else await views.basis(claims.delivery)
        if claims is None or basis is None:
            return Response(DENIED, status=403)
        await websocket.accept()
        async with trio.open_nursery() as nursery:

            async def until_invalid(link: LinkClaims) -> None:
                await links.wait_invalid(link)
                nursery.cancel_scope.cancel()

            nursery.start_soon(drain_browser)
            nursery.start_soon(until_invalid, claims)
            await _stream_views(views, hub, basis, claims.delivery)
            nursery.cancel_scope.cancel()
        # The link stopped working, or the delivery is gone: either way it opens nothing.
        await websocket.close(CLOSE_LINK_INVALID, DENIED)
        return None

    @bp.get("/v1/track/<token>/pod/<sha>")
    async def pod_file(token: str, sha: str) -> Any:
        return await send_pod_file(proofs, await delivery_for(token), sha)

    @bp.post("/v1/track/<token>/reschedule")
    async def reschedule(token: str) -> Any:
        """After a failed attempt the customer picks a new window among those offered."""
        choice = (await read_body(RescheduleChoice)).window
        delivery = await delivery_for(token)
        options = await views.reschedule_options(delivery)
        if not options:
            raise ApiError(409, "this delivery cannot be rescheduled now")
        if (choice.start, choice.end) not in [(o.start, o.end) for o in options]:
            raise ApiError(422, "window must be one of the windows offered", "window")
        await dispatch.set_status(
            delivery,
            RESCHEDULED,
            note="rescheduled by the customer",
            window=Window(start=choice.start, end=choice.end),
        )
        body, _ = await views.view(delivery)
        return jsonify(body)

    @bp.post("/v1/deliveries/<ident>/link")
    @agent
    async def issue(ident: str) -> Any:
        delivery = await dispatch.store.resolve_delivery(ident)
        if delivery is None:
            raise ApiError(404, "no such delivery")
        token = links.issue(delivery, time.time())
        return jsonify({"delivery": delivery, "token": token, "url": f"{public_url}/t/{token}",
                        "expires": links.expiry(token)})  # fmt: skip

    @bp.post("/v1/deliveries/<ident>/link/revoke")
    @agent
    async def revoke(ident: str) -> Any:
        delivery = await dispatch.store.resolve_delivery(ident)
        if delivery is None:
            raise ApiError(404, "no such delivery")
        await links.revoke(delivery)
        # A link issued in the same millisecond would be refused too.
        await trio.sleep(0.002)
        return jsonify({"delivery": delivery, "revoked": True})

    return bp


async def _stream_views(views: CustomerViews, hub: Hub, basis: Basis, delivery: str) -> None:
    """Send the view, then again whenever it changes; return if the delivery is gone.

    The part read from Redis (``Basis``) is read again when an event of the delivery is
    logged, and every ``REFRESH_S`` (the ETA moves with time); each position of the
    vehicle only recomposes the view from memory, and is sent at once if the view changed."""
    page_latency = hub.metrics.latency.page.labels("customer")
    last, _ = await views.compose(basis)
    await _send_view(last)
    sub = hub.subscribe([basis.vehicle] if basis.vehicle else [], [delivery])
    try:
        while True:
            changed = True
            with trio.move_on_after(REFRESH_S):
                _, changed = await sub.next_batch()
            if changed:
                fresh = await views.basis(delivery)
                if fresh is None:
                    return
                if fresh.vehicle != basis.vehicle:
                    sub.close()
                    sub = hub.subscribe([fresh.vehicle] if fresh.vehicle else [], [delivery])
                basis = fresh
            body, _ = await views.compose(basis)
            if body != last:
                await _send_view(body)
                last = body
                vehicle = body.get("vehicle")
                if vehicle is not None:
                    page_latency.observe(max(0.0, time.time() - vehicle["ts"]))
    finally:
        sub.close()


async def _send_view(body: dict[str, Any]) -> None:
    await websocket.send(_json.encode({"type": "view", "view": body}).decode())
