"""The shipper's and the driver app's side of the gateway's routes and deliveries API.

:class:`DispatchClient` makes the HTTP calls (``PUT /v1/routes``, ``POST .../start``,
``POST /v1/deliveries/{id}/status``, ``POST /v1/deliveries/{id}/pod``,
``POST /v1/deliveries/{id}/link``), retrying what may succeed later (no answer, HTTP 5xx)
and turning refusals into :class:`DispatchError` with the gateway's reason and field.

:class:`Dispatcher` runs them for a fleet: :meth:`Dispatcher.import_routes` imports and starts
the first routes before the vans leave; afterwards each van's later routes and stop reports go
through a small queue of their own (:meth:`Dispatcher.submit`), worked off by one task per van
so a van's reports stay in order and its driving never waits for the gateway.

A delivery is completed the way the driver app does it: a proof of delivery (a photo, the
recipient's signature, who took the parcel, where and when) uploaded with the van's device
token, which by itself makes the delivery ``delivered``. Failed attempts are plain status
reports with the agent key.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx
import trio

from .manifest import RouteManifest, StopManifest, stop_outcome
from .png import delivery_photo, signature_image

log = logging.getLogger(__name__)

IMPORT_BATCH: Final = 100  # routes per PUT /v1/routes
CONCURRENCY: Final = 16  # requests in flight across the fleet
REQUEST_TIMEOUT_S: Final = 10.0
ATTEMPTS: Final = 5  # per request, for transport errors and HTTP 5xx
RETRY_BASE_S: Final = 0.5  # doubled after each failed attempt
VAN_QUEUE: Final = 256  # pending jobs per van; when full new jobs are dropped and counted
OPEN_STATUSES: Final = ("scheduled", "out_for_delivery", "arriving")
STALE_NOTE: Final = "route superseded by a new simulator run"
NEIGHBOUR_SHARE: Final = 0.1  # deliveries handed to a neighbour
NEIGHBOUR: Final = "neighbour"


class DispatchError(Exception):
    """The gateway refused a call or could not be reached; ``status`` 0 means no answer."""

    def __init__(self, what: str, status: int, reason: str, field: str | None = None) -> None:
        where = f" ({field})" if field else ""
        http = f"HTTP {status}: " if status else ""
        super().__init__(f"{what}: {http}{reason}{where}")
        self.status = status
        self.reason = reason
        self.field = field


@dataclass(slots=True)
class DispatchStats:
    """What the dispatcher did; the fleet report carries it as ``dispatch``."""

    routes_imported: int = 0
    routes_started: int = 0
    import_failures: int = 0  # routes the gateway did not take
    start_failures: int = 0  # routes imported but not started; their stops are not reported
    stale_routes_closed: int = 0  # earlier runs' routes that kept a van busy
    delivered: int = 0
    pod_uploaded: int = 0  # deliveries completed with a proof of delivery
    pod_conflicts: int = 0  # proofs refused with 409: the delivery was no longer open
    failed: int = 0  # deliveries reported failed at the door
    status_errors: int = 0  # status reports that did not get through
    retries: int = 0
    dropped: int = 0  # jobs given up because a van's queue was full

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class DispatchClient:
    """HTTP calls of the routes and deliveries API; use as an async context manager."""

    def __init__(
        self,
        api: str,
        api_key: str,
        *,
        attempts: int = ATTEMPTS,
        retry_base_s: float = RETRY_BASE_S,
        stats: DispatchStats | None = None,
    ) -> None:
        self.api = api.rstrip("/")
        self.stats = stats if stats is not None else DispatchStats()
        self._attempts = attempts
        self._retry_base_s = retry_base_s
        self._client = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_S, headers={"Authorization": f"Bearer {api_key}"}
        )

    async def __aenter__(self) -> DispatchClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        data: dict[str, str] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        token: str | None = None,
    ) -> Any:
        """The decoded JSON answer of a 2xx; retries transport errors and 5xx, raises
        :class:`DispatchError` for the rest or when the attempts run out. ``token`` replaces
        the agent key for this call."""
        url = self.api + path
        headers = {"Authorization": f"Bearer {token}"} if token else None
        delay = self._retry_base_s
        for attempt in range(1, self._attempts + 1):
            try:
                resp = await self._client.request(
                    method, url, json=json, params=params, data=data, files=files, headers=headers
                )
            except httpx.TransportError as exc:
                problem = DispatchError(what, 0, f"no answer from {self.api}: {exc!r}")
            else:
                if resp.is_success:
                    return resp.json()
                problem = _refusal(what, resp)
                if resp.status_code < 500:
                    raise problem
            if attempt == self._attempts:
                raise problem
            self.stats.retries += 1
            log.debug("%s (attempt %d), retrying", problem, attempt)
            await trio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def import_routes(self, routes: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """``PUT /v1/routes``: all of ``routes`` or none of them."""
        reply: dict[str, Any] = await self._call(
            f"import of {len(routes)} routes", "PUT", "/v1/routes", json={"routes": list(routes)}
        )
        return reply

    async def start(self, route: str) -> dict[str, Any]:
        reply: dict[str, Any] = await self._call(
            f"start of route {route}", "POST", f"/v1/routes/{_q(route)}/start"
        )
        return reply

    async def set_status(
        self, delivery: str, status: str, *, reason: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if reason is not None:
            body["reason"] = reason
        if note:
            body["note"] = note
        reply: dict[str, Any] = await self._call(
            f"{status} of delivery {delivery}",
            "POST",
            f"/v1/deliveries/{_q(delivery)}/status",
            json=body,
        )
        return reply

    async def upload_pod(
        self,
        delivery: str,
        *,
        token: str | None,
        photo: bytes,
        signature: bytes,
        recipient_name: str,
        notes: str,
        position: tuple[float, float] | None,
        ts: float,
    ) -> dict[str, Any]:
        """``POST /v1/deliveries/{id}/pod`` as multipart, authenticated with the device
        ``token`` (the agent key when None); the gateway marks the delivery delivered."""
        form = {"recipient_name": recipient_name, "notes": notes, "ts": f"{ts:.3f}"}
        if position is not None:
            form["lat"], form["lon"] = f"{position[0]:.7f}", f"{position[1]:.7f}"
        files = [
            ("photo", ("photo.png", photo, "image/png")),
            ("signature", ("signature.png", signature, "image/png")),
        ]
        reply: dict[str, Any] = await self._call(
            f"proof of delivery {delivery}",
            "POST",
            f"/v1/deliveries/{_q(delivery)}/pod",
            data=form,
            files=files,
            token=token,
        )
        return reply

    async def issue_link(self, delivery: str) -> str:
        """A customer tracking link for ``delivery`` (``POST /v1/deliveries/{id}/link``)."""
        reply = await self._call(
            f"tracking link of {delivery}", "POST", f"/v1/deliveries/{_q(delivery)}/link"
        )
        return str(reply["url"])

    async def started_route(self, vehicle: str) -> dict[str, Any] | None:
        """Summary of the route ``vehicle`` is on, if any."""
        reply = await self._call(
            f"routes of {vehicle}",
            "GET",
            "/v1/routes",
            params={"vehicle": vehicle, "status": "started"},
        )
        routes = reply.get("routes") or []
        return routes[0] if routes else None

    async def open_deliveries(self, route: str) -> list[str]:
        """Ids of the deliveries of ``route`` still waiting for the van."""
        params = {"route": route, "limit": 1000}
        reply = await self._call(f"deliveries of {route}", "GET", "/v1/deliveries", params=params)
        return [d["id"] for d in reply.get("deliveries", []) if d.get("status") in OPEN_STATUSES]


def _q(ident: str) -> str:
    return quote(ident, safe="")


def _refusal(what: str, resp: httpx.Response) -> DispatchError:
    try:
        body = resp.json()
        reason, where = str(body.get("error", resp.text[:200])), body.get("field")
    except (ValueError, AttributeError):
        reason, where = resp.text[:200] or resp.reason_phrase, None
    return DispatchError(what, resp.status_code, reason, where)


@dataclass(frozen=True, slots=True)
class ImportRoute:
    """Import and start a van's next route."""

    manifest: RouteManifest


@dataclass(frozen=True, slots=True)
class ReportStop:
    """The driver is done at a stop: report each of its deliveries."""

    route: str  # external id
    stop: StopManifest
    position: tuple[float, float] | None = None  # the van's (lat, lon) at the stop
    at: float | None = None  # wall-clock epoch seconds the van left the stop; None: now


Job = ImportRoute | ReportStop
Notice = Callable[[str], None]
DeviceToken = Callable[[str], str | None]  # vehicle -> its device's current token, if any


@dataclass(slots=True)
class _Van:
    send: trio.MemorySendChannel[Job]
    receive: trio.MemoryReceiveChannel[Job]
    rng: random.Random


@dataclass(slots=True)
class Dispatcher:
    """Imports routes, starts them and reports stops for a fleet; see the module docstring."""

    client: DispatchClient
    fail_rate: float = 0.05  # share of stops the driver reports failed
    seed: int = 1
    notice: Notice = field(default=lambda line: None)
    # Proofs of delivery go with the van's device token; without one, with the agent key.
    device_token: DeviceToken = field(default=lambda vehicle: None)
    batch: int = IMPORT_BATCH
    started: set[str] = field(default_factory=set)  # external ids of routes we started
    _vans: dict[str, _Van] = field(default_factory=dict)
    _limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(CONCURRENCY)
    )

    @property
    def stats(self) -> DispatchStats:
        return self.client.stats

    def add_van(self, vehicle: str) -> None:
        send, receive = trio.open_memory_channel[Job](VAN_QUEUE)
        self._vans[vehicle] = _Van(send, receive, random.Random(f"{self.seed}:{vehicle}"))

    def submit(self, vehicle: str, job: Job) -> None:
        """Queue ``job`` for ``vehicle`` without waiting; dropped and counted if the queue is
        full or closed."""
        try:
            self._vans[vehicle].send.send_nowait(job)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.stats.dropped += 1

    def close(self) -> None:
        """Take no more jobs; :meth:`run` returns once the queued ones are done."""
        for van in self._vans.values():
            van.send.close()

    async def run(self) -> None:
        """Work off every van's queue until cancelled."""
        async with trio.open_nursery() as nursery:
            for vehicle, van in self._vans.items():
                nursery.start_soon(self._run_van, vehicle, van)

    async def _run_van(self, vehicle: str, van: _Van) -> None:
        async for job in van.receive:
            try:
                if isinstance(job, ImportRoute):
                    if await self._import([job.manifest]):
                        await self._start(job.manifest)
                else:
                    await self._report(vehicle, van.rng, job)
            except Exception:
                # A bug here must not stop this van's later reports, nor the fleet.
                log.exception("%s: dispatch job failed", vehicle)

    async def import_routes(self, manifests: Sequence[RouteManifest]) -> None:
        """Import ``manifests`` in batches, then start each imported route."""
        imported: list[RouteManifest] = []
        for i in range(0, len(manifests), self.batch):
            chunk = list(manifests[i : i + self.batch])
            if await self._import(chunk):
                imported.extend(chunk)
        async with trio.open_nursery() as nursery:
            for m in imported:
                nursery.start_soon(self._start, m)

    async def _import(self, manifests: list[RouteManifest]) -> bool:
        async with self._limiter:
            try:
                await self.client.import_routes([m.payload for m in manifests])
            except DispatchError as exc:
                self.stats.import_failures += len(manifests)
                self.notice(f"routes not imported: {exc}")
                return False
        self.stats.routes_imported += len(manifests)
        return True

    async def _start(self, m: RouteManifest) -> None:
        async with self._limiter:
            try:
                await self._start_once(m)
            except DispatchError as exc:
                if exc.status == 409 and exc.field == "vehicle":
                    await self._start_after_stale(m, exc)
                elif exc.status == 409 and "already started" in exc.reason:
                    self._mark_started(m)
                else:
                    self.stats.start_failures += 1
                    self.notice(f"{m.vehicle}: {exc}; its stops will not be reported")

    async def _start_once(self, m: RouteManifest) -> None:
        await self.client.start(m.external_id)
        self._mark_started(m)

    def _mark_started(self, m: RouteManifest) -> None:
        self.started.add(m.external_id)
        self.stats.routes_started += 1

    async def _start_after_stale(self, m: RouteManifest, busy: DispatchError) -> None:
        """The van is still on an earlier route. One this simulator made for the same vehicle
        (an interrupted run, or a report that never got through) is closed by cancelling what
        is left of it; any other is left alone and this route stays planned."""
        try:
            other = await self.client.started_route(m.vehicle)
            if other is None:  # finished in the meantime
                await self._start_once(m)
                return
            ext = str(other.get("external_id", ""))
            if not ext.startswith(f"{m.vehicle}-"):
                self.stats.start_failures += 1
                self.notice(
                    f"{m.vehicle}: not started, the vehicle is on route {ext} "
                    f"that this simulator did not make ({busy.reason}); driving untracked"
                )
                return
            open_ids = await self.client.open_deliveries(str(other["id"]))
            for did in open_ids:
                await self.client.set_status(did, "cancelled", note=STALE_NOTE)
            self.stats.stale_routes_closed += 1
            self.notice(
                f"{m.vehicle}: closed earlier route {ext} ({len(open_ids)} open deliveries "
                f"cancelled) to start {m.external_id}"
            )
            await self._start_once(m)
        except DispatchError as exc:
            self.stats.start_failures += 1
            self.notice(f"{m.vehicle}: route {m.external_id} not started: {exc}")

    async def _report(self, vehicle: str, rng: random.Random, job: ReportStop) -> None:
        if job.route not in self.started:
            return
        status, reason, note = stop_outcome(rng, self.fail_rate, job.stop.kind)
        for delivery in job.stop.deliveries:
            async with self._limiter:
                try:
                    if status == "delivered":
                        await self._complete(vehicle, delivery, job)
                    else:
                        await self.client.set_status(delivery, status, reason=reason, note=note)
                except DispatchError as exc:
                    if status == "delivered" and exc.status == 409:
                        self.stats.pod_conflicts += 1
                    else:
                        self.stats.status_errors += 1
                    log.warning("%s", exc)
                    continue
            if status == "delivered":
                self.stats.delivered += 1
                self.stats.pod_uploaded += 1
            else:
                self.stats.failed += 1

    async def _complete(self, vehicle: str, delivery: str, job: ReportStop) -> None:
        """Upload the proof of ``delivery``, which marks it delivered."""
        neighbour = random.Random(delivery).random() < NEIGHBOUR_SHARE
        name = NEIGHBOUR if neighbour or not job.stop.recipient else job.stop.recipient
        if job.stop.kind == "pickup":
            notes = "Return collected"
        else:
            notes = "Left with the neighbour" if name == NEIGHBOUR else "Handed to the recipient"
        await self.client.upload_pod(
            delivery,
            token=self.device_token(vehicle),
            photo=delivery_photo(delivery),
            signature=signature_image(delivery),
            recipient_name=name,
            notes=notes,
            position=job.position,
            ts=job.at if job.at is not None else time.time(),
        )
