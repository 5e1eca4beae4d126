"""What an import, an assignment, a start or a status change does: records in, changes out.

Pure functions. Each takes the current records (read by the store inside a watched
transaction) and returns :class:`Changes`: the records to write, the vehicle -> active route
entries to set or clear, and the events to append. The store writes a ``Changes`` in one
MULTI/EXEC, so every operation is all-or-nothing.

Re-import rule: importing a route again (same external id) replaces its plan in place. A
delivery keeps its status unless the import changes its stop (another route or stop, the
location, address, window or kind); then it starts again as ``scheduled`` (or
``out_for_delivery`` on a started route). Changing the stop of a delivered or returned
delivery is refused. A delivery left out of the new plan leaves the route; if it was still
on the road (scheduled, out_for_delivery, arriving) it is cancelled with reason
``removed_from_route``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from gateway.core.events import event
from gateway.dispatch.lifecycle import (
    CANCELLED,
    CLOSED,
    FAILED,
    ON_THE_ROAD,
    OUT_FOR_DELIVERY,
    RESCHEDULED,
    SCHEDULED,
    check_transition,
    event_type,
)
from gateway.dispatch.records import (
    FINISHED,
    PLANNED,
    STARTED,
    DeliveryRecord,
    Driver,
    RouteRecord,
    Window,
)
from gateway.dispatch.validate import ImportedRoute
from notify.events import Event

REMOVED_FROM_ROUTE: Final = "removed_from_route"

# What makes a delivery's stop "the same stop" for the re-import rule.
_STOP_FIELDS: Final = ("route", "stop", "location", "address", "window", "kind")
_DELIVERY_FIELDS: Final = (
    "route", "stop", "status", "address", "window", "brand", "kind", "recipient", "notes",
    "temp_min_c", "temp_max_c", "location", "reason", "note",
)  # fmt: skip
_ROUTE_FIELDS: Final = ("vehicle", "driver", "date", "status", "stops", "path")


class Conflict(Exception):
    """The operation contradicts the current state (HTTP 409); ``field`` names the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Changes:
    """Records to write and events to append, as one unit (one MULTI/EXEC)."""

    routes: dict[str, RouteRecord] = field(default_factory=dict)
    deliveries: dict[str, DeliveryRecord] = field(default_factory=dict)
    # vehicle -> its active route id, or None to clear it.
    vehroutes: dict[str, str | None] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # Other records of the {dispatch} slot written with the change: key -> value (a proof
    # of delivery with the delivery it completes).
    records: dict[str, bytes] = field(default_factory=dict)

    def event(
        self,
        etype: str,
        ts: float,
        route: RouteRecord | None,
        *,
        stop: str | None = None,
        delivery: str | None = None,
        vehicle: str | None = None,
        **data: Any,
    ) -> None:
        if vehicle is None and route is not None:
            vehicle = route.vehicle
        self.events.append(
            event(
                etype,
                ts,
                vehicle=vehicle,
                route=None if route is None else route.id,
                stop=stop,
                delivery=delivery,
                data=data,
            )
        )


def _changed(old: msgspec.Struct, new: msgspec.Struct, fields: tuple[str, ...]) -> list[str]:
    return [f for f in fields if getattr(old, f) != getattr(new, f)]


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


# ----- import


def merge_import(
    batch: list[ImportedRoute],
    routes: Mapping[str, RouteRecord],
    deliveries: Mapping[str, DeliveryRecord],
    vehroutes: Mapping[str, str | None],
    now: float,
) -> Changes:
    """Merge a validated batch into the current state.

    ``routes`` and ``deliveries`` hold the current records of everything the batch names,
    of every delivery of those routes, and of the routes those deliveries are on now;
    ``vehroutes`` the active route of each vehicle the batch routes have or had.
    """
    ch = Changes()
    in_batch = {imp.route.id for imp in batch}
    claimed = {d.id for imp in batch for d in imp.deliveries}
    leaving: dict[str, set[str]] = {}  # route not in the batch -> deliveries moved away
    for i, imp in enumerate(batch):
        new, old = imp.route, routes.get(imp.route.id)
        route = new
        if old is not None:
            route = msgspec.structs.replace(
                new, status=old.status, created=old.created, updated=old.updated,
                started=old.started,
            )  # fmt: skip
        started = route.status == STARTED
        if started and old is not None and old.vehicle != route.vehicle:
            _move_vehicle(ch, route, old.vehicle, vehroutes, f"routes[{i}].vehicle")
        incoming = {d.id: d for d in imp.deliveries}
        for j, stop in enumerate(route.stops):
            for k, did in enumerate(stop.deliveries):
                path = f"routes[{i}].stops[{j}].deliveries[{k}]"
                before = deliveries.get(did)
                _merge_delivery(ch, incoming[did], before, route, now, path)
                was_on = None if before is None else before.route
                if was_on is not None and was_on != route.id and was_on not in in_batch:
                    leaving.setdefault(was_on, set()).add(did)
        if old is not None:
            for did in sorted(set(old.delivery_ids()) - set(route.delivery_ids()) - claimed):
                if did in deliveries:
                    _drop_delivery(ch, deliveries[did], route, now)
        if route.status == FINISHED and any(
            _current(ch, deliveries, did) == SCHEDULED for did in route.delivery_ids()
        ):
            # New work on a finished route: it is planned again and can be started.
            route = msgspec.structs.replace(route, status=PLANNED, started=None)
        if old is None:
            ch.routes[route.id] = route
            ch.event("route.imported", now, route, external_id=route.external_id)
        elif changed := _changed(old, route, _ROUTE_FIELDS):
            ch.routes[route.id] = msgspec.structs.replace(route, updated=now)
            ch.event("route.updated", now, route, external_id=route.external_id, changed=changed)
    for rid, moved in sorted(leaving.items()):
        old = routes[rid]
        stops = tuple(
            msgspec.structs.replace(s, deliveries=tuple(d for d in s.deliveries if d not in moved))
            for s in old.stops
        )
        route = msgspec.structs.replace(old, stops=stops, updated=now)
        ch.routes[rid] = route
        ch.event(
            "route.updated", now, route, external_id=route.external_id, changed=["stops"],
            moved_out=sorted(moved),
        )  # fmt: skip
    return ch


def _current(ch: Changes, deliveries: Mapping[str, DeliveryRecord], did: str) -> str | None:
    d = ch.deliveries.get(did) or deliveries.get(did)
    return None if d is None else d.status


def _move_vehicle(
    ch: Changes, route: RouteRecord, old_vehicle: str, vehroutes: Mapping[str, str | None],
    field_name: str,
) -> None:  # fmt: skip
    other = vehroutes.get(route.vehicle)
    if other is not None and other != route.id:
        raise Conflict(field_name, f"vehicle {route.vehicle} is already on route {other}")
    if vehroutes.get(old_vehicle) == route.id:
        ch.vehroutes[old_vehicle] = None
    ch.vehroutes[route.vehicle] = route.id


def _merge_delivery(
    ch: Changes,
    new: DeliveryRecord,
    old: DeliveryRecord | None,
    route: RouteRecord,
    now: float,
    path: str,
) -> None:
    on_route = OUT_FOR_DELIVERY if route.status == STARTED else SCHEDULED
    if old is None:
        d = msgspec.structs.replace(new, status=on_route)
        ch.deliveries[d.id] = d
        ch.event(
            "delivery.created", now, route, stop=d.stop, delivery=d.id,
            external_id=d.external_id, status=d.status,
        )  # fmt: skip
        if on_route == OUT_FOR_DELIVERY:
            ch.event(event_type(on_route), now, route, stop=d.stop, delivery=d.id,
                     external_id=d.external_id, previous=None)  # fmt: skip
        return
    moved = bool(_changed(old, new, _STOP_FIELDS))
    if moved and old.status in CLOSED:
        raise Conflict(path, f"delivery {old.external_id} is {old.status}; its stop cannot change")
    d = msgspec.structs.replace(
        new,
        status=on_route if moved else old.status,
        reason=None if moved else old.reason,
        note=None if moved else old.note,
        created=old.created,
        updated=old.updated,
    )
    changed = _changed(old, d, _DELIVERY_FIELDS)
    if not changed:
        return
    d = msgspec.structs.replace(d, updated=now)
    ch.deliveries[d.id] = d
    ch.event(
        "delivery.updated", now, route, stop=d.stop, delivery=d.id, external_id=d.external_id,
        changed=changed, status=d.status, previous=old.status,
    )  # fmt: skip
    if d.status == OUT_FOR_DELIVERY != old.status:
        ch.event(event_type(d.status), now, route, stop=d.stop, delivery=d.id,
                 external_id=d.external_id, previous=old.status)  # fmt: skip


def _drop_delivery(ch: Changes, old: DeliveryRecord, route: RouteRecord, now: float) -> None:
    status = CANCELLED if old.status in ON_THE_ROAD else old.status
    d = msgspec.structs.replace(
        old,
        route=None,
        stop=None,
        status=status,
        reason=REMOVED_FROM_ROUTE if status != old.status else old.reason,
        updated=now,
    )
    ch.deliveries[d.id] = d
    if status != old.status:
        ch.event(
            event_type(status), now, route, stop=old.stop, delivery=d.id,
            external_id=d.external_id, previous=old.status, reason=REMOVED_FROM_ROUTE,
        )  # fmt: skip
    else:
        ch.event(
            "delivery.updated", now, route, stop=old.stop, delivery=d.id,
            external_id=d.external_id, changed=["route", "stop"], status=status,
            previous=old.status,
        )  # fmt: skip


# ----- route operations


def assign_route(
    route: RouteRecord,
    vehicle: str | None,
    driver: Driver | None,
    vehroutes: Mapping[str, str | None],
    now: float,
) -> Changes:
    """Give ``route`` another vehicle and/or driver. A started route moves its vehicle's
    active-route entry; a finished one cannot be reassigned."""
    if route.status == FINISHED:
        raise Conflict("id", f"route {route.external_id} is finished")
    ch = Changes()
    new = msgspec.structs.replace(
        route,
        vehicle=vehicle if vehicle is not None else route.vehicle,
        driver=driver if driver is not None else route.driver,
    )
    if route.status == STARTED and new.vehicle != route.vehicle:
        _move_vehicle(ch, new, route.vehicle, vehroutes, "vehicle")
    if new == route:
        return ch
    new = msgspec.structs.replace(new, updated=now)
    ch.routes[new.id] = new
    ch.event(
        "route.assigned", now, new, external_id=new.external_id, previous_vehicle=route.vehicle,
        driver=_builtins(new.driver),
    )  # fmt: skip
    return ch


def start_route(
    route: RouteRecord,
    deliveries: Mapping[str, DeliveryRecord],
    vehroutes: Mapping[str, str | None],
    now: float,
) -> Changes:
    """Start a planned route: it becomes its vehicle's active route and its scheduled (and
    rescheduled) deliveries go out for delivery."""
    if route.status != PLANNED:
        raise Conflict("id", f"route {route.external_id} is already {route.status}")
    other = vehroutes.get(route.vehicle)
    if other is not None and other != route.id:
        raise Conflict("vehicle", f"vehicle {route.vehicle} is still on route {other}")
    ch = Changes()
    started = msgspec.structs.replace(route, status=STARTED, started=now, updated=now)
    ch.routes[route.id] = started
    ch.vehroutes[route.vehicle] = route.id
    ch.event("route.started", now, started, external_id=route.external_id)
    for did in route.delivery_ids():
        d = deliveries.get(did)
        if d is None or d.status not in (SCHEDULED, RESCHEDULED):
            continue
        ch.deliveries[did] = msgspec.structs.replace(d, status=OUT_FOR_DELIVERY, updated=now)
        ch.event(
            event_type(OUT_FOR_DELIVERY), now, started, stop=d.stop, delivery=did,
            external_id=d.external_id, previous=d.status,
        )  # fmt: skip
    return ch


# ----- delivery status


def change_status(
    delivery: DeliveryRecord,
    route: RouteRecord | None,
    siblings: Mapping[str, DeliveryRecord],
    vehroute: str | None,
    status: str,
    now: float,
    *,
    reason: str | None = None,
    note: str | None = None,
    window: Window | None = None,
) -> Changes:
    """Move ``delivery`` to ``status`` (raises ``IllegalTransition`` or ``MissingReason``).

    ``rescheduled`` needs the new ``window``. When the last delivery of a started route
    leaves the road, the route finishes and its vehicle has no active route any more;
    ``siblings`` are the route's deliveries, ``vehroute`` the active route of its vehicle.
    """
    check_transition(delivery.status, status, reason)
    if status == RESCHEDULED and window is None:
        raise Conflict("window", "rescheduled needs the new window")
    d = msgspec.structs.replace(
        delivery,
        status=status,
        reason=reason if status == FAILED else None,
        note=note,
        window=window if status == RESCHEDULED and window is not None else delivery.window,
        updated=now,
    )
    ch = Changes()
    ch.deliveries[d.id] = d
    data: dict[str, Any] = {"external_id": d.external_id, "previous": delivery.status}
    if status == FAILED:
        data["reason"] = reason
    if note is not None:
        data["note"] = note
    if status == RESCHEDULED:
        data["window"] = _builtins(d.window)
    ch.event(event_type(status), now, route, stop=d.stop, delivery=d.id, **data)
    if route is not None and route.status == STARTED:
        others = [s for i, s in siblings.items() if i != d.id]
        if d.status not in ON_THE_ROAD and all(s.status not in ON_THE_ROAD for s in others):
            done = msgspec.structs.replace(route, status=FINISHED, updated=now)
            ch.routes[route.id] = done
            if vehroute == route.id:
                ch.vehroutes[route.vehicle] = None
            ch.event("route.finished", now, done, external_id=route.external_id)
    return ch
