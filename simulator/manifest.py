"""A van's planned route as the shipper would send it to ``PUT /v1/routes``: pure, no I/O.

:func:`build_manifest` turns a :class:`~simulator.vehicle.RoutePlan` into the route's JSON
payload (driver, stops with location, window, planned arrival and service time, the planned
path, one or two deliveries per stop with their recipients) and remembers which deliveries
belong to which stop, so the driver app can report them later.

Times are converted from the van's simulated clock to wall-clock epoch seconds, so with a time
scale k windows and service times shrink k times, like everything else the gateway sees.
Contacts are fictitious: phone numbers come from ranges set aside for drama (``+447700900xxx``
in the UK, ``+3361xxxxxxx`` style French mobiles) and emails are at ``example.com``.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from .vehicle import PlannedStop, RoutePlan

WINDOW_S: Final = 3600.0  # promised delivery window, simulated seconds
# Where the window sits around the planned arrival: planned + this is its end. Traffic, long
# dwells and detours make about one stop in ten later than that on the default city.
WINDOW_END_AFTER_PLAN_S: Final = 900.0
MAX_PATH_POINTS: Final = 2_000
TWO_DELIVERIES_SHARE: Final = 0.2  # stops with two parcels for the same address
PICKUP_SHARE: Final = 0.1  # stops where a return is collected
FRENCH_SHARE: Final = 0.2  # recipients who read French
CHILLED_SHARE: Final = 0.7  # of the deliveries carried by a reefer van
CHILLED_RANGE_C: Final = (2.0, 8.0)
CHANNEL_CHOICES: Final = (
    (("sms", "email"), 0.7),
    (("sms",), 0.2),
    (("email",), 0.1),
)
BRAND: Final = "default"

_FIRST_EN: Final = (
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Emily", "Charlie", "Sophie",
    "Thomas", "Grace", "James", "Lily", "William", "Ella", "Noah", "Freya", "Daniel", "Chloe",
    "Samuel", "Ruby", "Joseph", "Evie", "Henry", "Hannah", "Lucas", "Anna", "Sanne", "Daan",
    "Lotte", "Bram", "Fleur", "Jeroen", "Femke", "Pieter", "Priya", "Omar", "Mei", "Tomasz",
)  # fmt: skip
_LAST_EN: Final = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Evans",
    "Thomas", "Roberts", "Walker", "Wright", "Robinson", "Thompson", "Hughes", "Green", "Hall",
    "de Vries", "Jansen", "van Dijk", "Bakker", "Visser", "Smit", "Meijer", "de Boer",
    "Mulder", "Bos", "Vos", "Peters", "Hendriks", "Dekker", "Khan", "Novak", "Kowalski",
)  # fmt: skip
_FIRST_FR: Final = (
    "Camille", "Léa", "Manon", "Chloé", "Inès", "Louise", "Zoé", "Jade", "Hugo", "Lucas",
    "Théo", "Louis", "Gabriel", "Arthur", "Jules", "Mathis", "Élodie", "Amélie", "Étienne",
    "François", "Céline", "Sébastien", "Margaux", "Clément",
)  # fmt: skip
_LAST_FR: Final = (
    "Martin", "Bernard", "Dubois", "Durand", "Lefèvre", "Moreau", "Laurent", "Simon", "Michel",
    "Garnier", "Faure", "Rousseau", "Blanc", "Guérin", "Muller", "Henry", "Roussel", "Girard",
    "Bonnet", "Dupont", "Lambert", "Fontaine", "Chevalier", "Robin",
)  # fmt: skip
_NOTES: Final = (
    "", "", "", "", "Leave with neighbour if out", "Ring twice", "Side door", "Fragile",
    "Dog in the garden", "Third floor, no lift", "Call on arrival",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StopManifest:
    """What the driver app knows about one stop: its kind, its deliveries' external ids and
    the recipient's name."""

    external_id: str
    kind: str  # "delivery" or "pickup"
    deliveries: tuple[str, ...]
    recipient: str = ""


@dataclass(frozen=True, slots=True)
class RouteManifest:
    """A route ready to import: ``payload`` is one element of ``{"routes": [...]}``."""

    external_id: str
    vehicle: str
    number: int  # the van's route number (:attr:`RoutePlan.number`)
    payload: dict[str, Any]
    stops: tuple[StopManifest, ...]  # in the order of the plan's stops

    @property
    def delivery_ids(self) -> list[str]:
        return [d for s in self.stops for d in s.deliveries]


def default_timezone(center: tuple[float, float]) -> str:
    """An IANA zone for a city centre: Europe/Amsterdam near the default centre, else the
    fixed-offset ``Etc/GMT`` zone of its longitude (good enough for made-up customers)."""
    lat, lon = center
    if 50.5 <= lat <= 53.7 and 3.2 <= lon <= 7.3:
        return "Europe/Amsterdam"
    hours = round(lon / 15)
    # The Etc zones count the other way round: Etc/GMT-1 is UTC+1.
    return "Etc/GMT" if hours == 0 else f"Etc/GMT{-hours:+d}"


def route_external_id(vehicle: str, run_id: str, number: int) -> str:
    """The shipper's id of a van's ``number``-th route of a run: unique per run and van."""
    return f"{vehicle}-{run_id}-{number}"


def thin_path(
    points: Sequence[tuple[float, float]], max_points: int = MAX_PATH_POINTS
) -> list[tuple[float, float]]:
    """At most ``max_points`` of ``points``, evenly spread, first and last always kept."""
    if max_points < 2:
        raise ValueError("a path needs at least 2 points")
    n = len(points)
    if n <= max_points:
        return list(points)
    step = math.ceil((n - 1) / (max_points - 1))
    kept = list(points[: n - 1 : step])
    kept.append(points[-1])
    return kept


class People:
    """Makes up drivers and recipients with fictitious contacts; repeatable from the seed."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def name(self, *, french: bool = False) -> str:
        rng = self._rng
        first, last = (_FIRST_FR, _LAST_FR) if french else (_FIRST_EN, _LAST_EN)
        return f"{rng.choice(first)} {rng.choice(last)}"

    def phone(self, *, french: bool = False) -> str:
        rng = self._rng
        if french:
            return f"+3361{rng.randrange(10_000_000):07d}"
        return f"+447700900{rng.randrange(1_000):03d}"

    def email(self, name: str) -> str:
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
        local = ".".join(part for part in ascii_name.replace("-", " ").split() if part)
        return f"{local}{self._rng.randrange(1, 1000)}@example.com"

    def recipient(self, timezone: str) -> dict[str, Any]:
        rng = self._rng
        french = rng.random() < FRENCH_SHARE
        name = self.name(french=french)
        channels = rng.choices(
            [c for c, _ in CHANNEL_CHOICES], weights=[w for _, w in CHANNEL_CHOICES]
        )[0]
        return {
            "name": name,
            "phone": self.phone(french=french),
            "email": self.email(name),
            "language": "fr" if french else "en",
            "timezone": timezone,
            "channels": list(channels),
        }

    def chance(self, share: float) -> bool:
        """True with probability ``share``."""
        return self._rng.random() < share

    def note(self) -> str:
        return self._rng.choice(_NOTES)


def build_manifest(
    plan: RoutePlan,
    *,
    vehicle: str,
    run_id: str,
    wall_time: Callable[[float], float],
    time_scale: float,
    timezone: str,
    seed: int,
    reefer: bool = False,
    max_path_points: int = MAX_PATH_POINTS,
) -> RouteManifest:
    """The import payload of ``plan`` for ``vehicle``.

    ``wall_time`` maps simulated seconds to wall-clock epoch seconds (``Van.wall_time``);
    ``time_scale`` shrinks windows and service times to match. The same arguments give the
    same manifest.
    """
    people = People(seed * 7_919 + plan.number)
    ext = route_external_id(vehicle, run_id, plan.number)
    stops: list[dict[str, Any]] = []
    manifests: list[StopManifest] = []
    for stop in plan.stops:
        payload, manifest = _stop(stop, ext, people, wall_time, time_scale, timezone, reefer)
        stops.append(payload)
        manifests.append(manifest)
    depart = datetime.fromtimestamp(wall_time(plan.depart_s), UTC)
    payload = {
        "external_id": ext,
        "vehicle": vehicle,
        "driver": {"name": people.name(), "phone": people.phone()},
        "date": depart.astimezone(ZoneInfo(timezone)).date().isoformat(),
        "stops": stops,
        "path": [[round(lat, 7), round(lon, 7)] for lat, lon in thin_path(plan.path,
                                                                          max_path_points)],
    }  # fmt: skip
    return RouteManifest(ext, vehicle, plan.number, payload, tuple(manifests))


def _stop(
    stop: PlannedStop,
    route_ext: str,
    people: People,
    wall_time: Callable[[float], float],
    time_scale: float,
    timezone: str,
    reefer: bool,
) -> tuple[dict[str, Any], StopManifest]:
    planned = wall_time(stop.planned_arrival_s)
    end = wall_time(stop.planned_arrival_s + WINDOW_END_AFTER_PLAN_S)
    start = wall_time(stop.planned_arrival_s + WINDOW_END_AFTER_PLAN_S - WINDOW_S)
    kind = "pickup" if people.chance(PICKUP_SHARE) else "delivery"
    count = 2 if kind == "delivery" and people.chance(TWO_DELIVERIES_SHARE) else 1
    stop_ext = f"S{stop.index + 1:02d}"
    recipient = people.recipient(timezone)
    deliveries = []
    for k in range(count):
        delivery: dict[str, Any] = {
            "external_id": f"{route_ext}-{stop_ext}-{k + 1}",
            "recipient": recipient,
            "brand": BRAND,
        }
        note = people.note()
        if note:
            delivery["notes"] = note
        if reefer and kind == "delivery" and people.chance(CHILLED_SHARE):
            delivery["temp_min_c"], delivery["temp_max_c"] = CHILLED_RANGE_C
        deliveries.append(delivery)
    payload = {
        "external_id": stop_ext,
        "kind": kind,
        "location": {"lat": round(stop.address.lat, 7), "lon": round(stop.address.lon, 7)},
        "address": stop.address.label,
        "window": {"start": round(start, 3), "end": round(end, 3)},
        "planned_arrival": round(planned, 3),
        "service_s": round(stop.service_s / time_scale, 3),
        "deliveries": deliveries,
    }
    manifest = StopManifest(
        stop_ext, kind, tuple(d["external_id"] for d in deliveries), recipient["name"]
    )
    return payload, manifest


FAILURE_REASONS: Final = (
    ("nobody_home", 0.55, "Nobody home, card left"),
    ("no_access", 0.15, "No access to the building"),
    ("address_not_found", 0.1, "Could not find the address"),
    ("refused", 0.1, "Refused by the recipient"),
    ("damaged", 0.05, "Parcel damaged in transit"),
    ("other", 0.05, "Van could not stop safely"),
)
PICKUP_FAILURE_NOTE: Final = "Nothing to collect"


def stop_outcome(
    rng: random.Random, fail_rate: float, kind: str = "delivery"
) -> tuple[str, str | None, str | None]:
    """What the driver reports for a stop: ``("delivered", None, None)`` or ``("failed",
    reason, note)`` with probability ``fail_rate``; the reason is a gateway reason code."""
    if rng.random() >= fail_rate:
        return "delivered", None, None
    reason, _, note = rng.choices(FAILURE_REASONS, weights=[w for _, w, _ in FAILURE_REASONS])[0]
    if kind == "pickup" and reason == "refused":
        note = PICKUP_FAILURE_NOTE
    return "failed", reason, note
