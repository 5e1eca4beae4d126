"""Import validation: every error names the field; records and geofence routes come out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import geofence
from gateway.dispatch.records import delivery_id, route_id, stop_id, to_geofence_route
from gateway.dispatch.validate import InvalidImport, Unprocessable, parse_import

T0 = 1_767_000_000.0  # a fixed "now"


def delivery_payload(ext: str, **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "external_id": ext,
        "recipient": {
            "name": f"Customer {ext}",
            "phone": "+33612345678",
            "email": "ada@example.com",
            "language": "fr",
            "timezone": "Europe/Paris",
            "channels": ["sms", "email"],
        },
        "brand": "acme",
        "notes": "ring twice",
    }
    d.update(over)
    return d


def stop_payload(ext: str, deliveries: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "external_id": ext,
        "location": {"lat": 48.85, "lon": 2.35},
        "address": f"{ext} rue de Rivoli, Paris",
        "window": {"start": T0 + 3600, "end": T0 + 7200},
        "service_s": 120,
        "kind": "delivery",
        "deliveries": deliveries,
    }
    s.update(over)
    return s


def route_payload(
    ext: str, vehicle: str = "van-1", n_stops: int = 2, **over: Any
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "external_id": ext,
        "vehicle": vehicle,
        "driver": {"name": "Marie Curie", "phone": "+33 6 00 00 00 01"},
        "date": "2026-01-05",
        "stops": [
            stop_payload(f"{ext}-S{i}", [delivery_payload(f"{ext}-D{i}")]) for i in range(n_stops)
        ],
    }
    r.update(over)
    return r


def batch(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"routes": list(routes)}


def error_field(body: Any) -> str:
    with pytest.raises(InvalidImport) as info:
        parse_import(body, T0)
    return info.value.field


def test_a_valid_batch_becomes_records_with_stable_ids() -> None:
    [imp] = parse_import(batch(route_payload("R1", path=[[48.8, 2.3], [48.9, 2.4]])), T0)
    r = imp.route
    assert r.id == route_id("R1") and r.id.startswith("r_")
    assert r.status == "planned" and r.vehicle == "van-1" and r.date == "2026-01-05"
    assert r.driver.phone == "+33600000001" and r.driver.first_name == "Marie"
    assert [s.id for s in r.stops] == [stop_id("R1", "R1-S0"), stop_id("R1", "R1-S1")]
    assert [d.id for d in imp.deliveries] == [delivery_id("R1-D0"), delivery_id("R1-D1")]
    d = imp.deliveries[0]
    assert d.route == r.id and d.stop == r.stops[0].id and d.status == "scheduled"
    assert d.recipient.channels == ("sms", "email") and d.recipient.timezone == "Europe/Paris"
    assert d.address == "R1-S0 rue de Rivoli, Paris" and d.window.end == T0 + 7200
    assert r.stops[0].deliveries == (d.id,)
    # Same external ids, same internal ids: what makes re-import update in place.
    [again] = parse_import(batch(route_payload("R1")), T0 + 5)
    assert again.route.id == r.id and [x.id for x in again.deliveries] == [
        x.id for x in imp.deliveries
    ]


def test_iso_windows_with_offsets_and_default_channels() -> None:
    p = route_payload("R1", n_stops=1)
    p["stops"][0]["window"] = {"start": "2026-01-05T09:00:00+01:00", "end": "2026-01-05T10:00:00Z"}
    del p["stops"][0]["deliveries"][0]["recipient"]["channels"]
    del p["stops"][0]["deliveries"][0]["recipient"]["email"]
    [imp] = parse_import(batch(p), T0)
    assert imp.route.stops[0].window.start == 1_767_600_000.0
    assert imp.route.stops[0].window.end == 1_767_607_200.0
    assert imp.deliveries[0].recipient.channels == ("sms",)


def _with(path: list[Any], value: Any, *, delete: bool = False) -> dict[str, Any]:
    body = batch(route_payload("R1"), route_payload("R2", vehicle="van-2", n_stops=3))
    target: Any = body
    for p in path[:-1]:
        target = target[p]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


S2 = ["routes", 1, "stops", 2]
D = [*S2, "deliveries", 0]
R = [*D, "recipient"]

CASES = [
    (_with(["routes", 1, "vehicle"], "no spaces allowed"), "routes[1].vehicle"),
    (_with(["routes", 1, "date"], "2026-02-30"), "routes[1].date"),
    (_with(["routes", 1, "driver"], {"phone": "+33600000001"}), "routes[1].driver.name"),
    (_with(["routes", 1, "driver", "phone"], "0600000001"), "routes[1].driver.phone"),
    (_with(["routes", 1, "stops"], []), "routes[1].stops"),
    (_with(["routes", 1, "path"], [[48.8, 2.3]]), "routes[1].path"),
    (_with(["routes", 1, "path"], [[48.8, 2.3], [95, 2.4]]), "routes[1].path[1][0]"),
    (_with(["routes", 1, "colour"], "red"), "routes[1].colour"),
    (_with([*S2, "location"], None, delete=True), "routes[1].stops[2].location"),
    (_with([*S2, "location"], {"lat": 48.8}), "routes[1].stops[2].location.lon"),
    (_with([*S2, "location"], {"lat": 91, "lon": 2}), "routes[1].stops[2].location.lat"),
    (_with([*S2, "location"], {"lat": True, "lon": 2}), "routes[1].stops[2].location.lat"),
    (_with([*S2, "window"], {"start": "2026-01-05T09:00", "end": T0}),
     "routes[1].stops[2].window.start"),
    (_with([*S2, "window"], {"start": "tomorrow", "end": T0}), "routes[1].stops[2].window.start"),
    (_with([*S2, "window"], {"start": T0}), "routes[1].stops[2].window.end"),
    (_with([*S2, "address"], "  "), "routes[1].stops[2].address"),
    (_with([*S2, "kind"], "dropoff"), "routes[1].stops[2].kind"),
    (_with([*S2, "service_s"], -1), "routes[1].stops[2].service_s"),
    (_with([*S2, "planned_arrival"], "noon"), "routes[1].stops[2].planned_arrival"),
    (_with([*S2, "deliveries"], []), "routes[1].stops[2].deliveries"),
    (_with([*D, "brand"], "a b"), "routes[1].stops[2].deliveries[0].brand"),
    (_with([*D, "temp_min_c"], "cold"), "routes[1].stops[2].deliveries[0].temp_min_c"),
    (_with([*D, "recipient"], None, delete=True), "routes[1].stops[2].deliveries[0].recipient"),
    (_with([*R, "phone"], "+1 555 12"), "routes[1].stops[2].deliveries[0].recipient.phone"),
    (_with([*R, "phone"], "+0612345678"), "routes[1].stops[2].deliveries[0].recipient.phone"),
    (_with([*R, "phone"], 33612345678), "routes[1].stops[2].deliveries[0].recipient.phone"),
    (_with([*R, "email"], "ada@localhost"), "routes[1].stops[2].deliveries[0].recipient.email"),
    (_with([*R, "email"], "ada@@x.com"), "routes[1].stops[2].deliveries[0].recipient.email"),
    (_with([*R, "email"], "a b@x.com"), "routes[1].stops[2].deliveries[0].recipient.email"),
    (_with([*R, "email"], ".ada@x.com"), "routes[1].stops[2].deliveries[0].recipient.email"),
    (_with([*R, "timezone"], "Europe/Parus"),
     "routes[1].stops[2].deliveries[0].recipient.timezone"),
    (_with([*R, "timezone"], "../etc/passwd"),
     "routes[1].stops[2].deliveries[0].recipient.timezone"),
    (_with([*R, "language"], "French"), "routes[1].stops[2].deliveries[0].recipient.language"),
    (_with([*R, "channels"], ["sms", "pigeon"]),
     "routes[1].stops[2].deliveries[0].recipient.channels[1]"),
    (_with([*R, "channels"], ["sms", "sms"]),
     "routes[1].stops[2].deliveries[0].recipient.channels"),
    (_with([*R, "name"], ""), "routes[1].stops[2].deliveries[0].recipient.name"),
]  # fmt: skip


# Input of the described type that breaks a rule a JSON schema cannot state: 422, not 400.
UNPROCESSABLE = [
    (_with([*S2, "window"], {"start": T0 + 10, "end": T0}), "routes[1].stops[2].window"),
    (_with([*R, "phone"], None, delete=True), "routes[1].stops[2].deliveries[0].recipient.phone"),
    (_with([*R, "email"], "a" * 65 + "@example.com"),
     "routes[1].stops[2].deliveries[0].recipient.email"),
    (_with([*D, "external_id"], "R1-D0"), "routes[1].stops[2].deliveries[0].external_id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [(b, f, 400) for b, f in CASES] + [(b, f, 422) for b, f in UNPROCESSABLE],
    ids=[c[1] for c in CASES] + [c[1] for c in UNPROCESSABLE],
)
def test_each_invalid_value_names_its_field(body: dict[str, Any], field: str, status: int) -> None:
    with pytest.raises(InvalidImport) as info:
        parse_import(body, T0)
    assert (info.value.field, info.value.status) == (field, status)


def test_a_listed_channel_needs_its_contact() -> None:
    no_email = _with([*R, "email"], None, delete=True)
    with pytest.raises(Unprocessable) as info:
        parse_import(no_email, T0)
    assert info.value.field == "routes[1].stops[2].deliveries[0].recipient.email"
    assert "email channel" in info.value.message


def test_phone_separators_and_trimmed_text() -> None:
    p = route_payload("R1", n_stops=1)
    p["external_id"] = "  R1 "
    p["stops"][0]["address"] = " 1 rue de Rivoli "
    p["stops"][0]["deliveries"][0]["recipient"]["phone"] = " +33 (0)6.12-34 56 78"
    p["stops"][0]["deliveries"][0]["recipient"]["email"] = " ada@example.com "
    [imp] = parse_import(batch(p), T0)
    assert imp.route.external_id == "R1" and imp.route.id == route_id("R1")
    d = imp.deliveries[0]
    assert d.address == "1 rue de Rivoli" and d.recipient.email == "ada@example.com"
    assert d.recipient.phone == "+330612345678"


def test_reefer_range_must_be_ordered() -> None:
    body = _with([*D, "temp_min_c"], 8.0)
    body["routes"][1]["stops"][2]["deliveries"][0]["temp_max_c"] = 2.0
    assert error_field(body) == "routes[1].stops[2].deliveries[0].temp_max_c"
    body["routes"][1]["stops"][2]["deliveries"][0]["temp_max_c"] = 8.0
    [_, imp] = parse_import(body, T0)
    assert (imp.deliveries[-1].temp_min_c, imp.deliveries[-1].temp_max_c) == (8.0, 8.0)


def test_the_batch_shape_itself() -> None:
    assert error_field([]) == ""
    assert error_field({}) == "routes"
    assert error_field({"routes": []}) == "routes"
    assert error_field({"routes": [route_payload("R1")], "extra": 1}) == "extra"


def test_duplicate_external_ids_in_one_batch_are_refused() -> None:
    assert error_field(batch(route_payload("R1"), route_payload("R1"))) == "routes[1].external_id"
    r = route_payload("R1")
    r["stops"][1]["external_id"] = "R1-S0"
    assert error_field(batch(r)) == "routes[0].stops[1].external_id"
    r2 = route_payload("R2")
    r2["stops"][1]["deliveries"].append(delivery_payload("R1-D0"))
    with pytest.raises(InvalidImport) as info:
        parse_import(batch(route_payload("R1"), r2), T0)
    assert info.value.field == "routes[1].stops[1].deliveries[1].external_id"
    assert "routes[0].stops[0].deliveries[0].external_id" in info.value.message


def test_stop_ids_are_scoped_to_their_route() -> None:
    a = route_payload("R1")
    b = route_payload("R2")
    b["stops"][0]["external_id"] = "R1-S0"  # the same stop reference on another route
    [ra, rb] = parse_import(batch(a, b), T0)
    assert ra.route.stops[0].id != rb.route.stops[0].id


def test_records_become_geofence_routes() -> None:
    p = route_payload("R1", path=[[48.8, 2.3], [48.9, 2.4]])
    p["stops"][1]["planned_arrival"] = "2026-01-05T09:30:00Z"
    [imp] = parse_import(batch(p), T0)
    g = to_geofence_route(imp.route, arrival_radius_m=60)
    assert isinstance(g, geofence.Route)
    assert g.id == imp.route.id and g.vehicle_id == "van-1"
    assert [s.id for s in g.stops] == [s.id for s in imp.route.stops]
    s = g.stops[1]
    assert (s.lat, s.lon, s.window_start, s.window_end) == (48.85, 2.35, T0 + 3600, T0 + 7200)
    assert s.service_s == 120 and s.planned_arrival == 1_767_605_400.0
    assert s.arrival_radius_m == 60 and g.path == ((48.8, 2.3), (48.9, 2.4))


def test_inputs_are_not_mutated() -> None:
    body = batch(route_payload("R1"))
    before = copy.deepcopy(body)
    parse_import(body, T0)
    assert body == before
