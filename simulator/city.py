"""A synthetic street grid with a depot, delivery addresses and shortest-path routing.

The city is a slightly irregular grid: blocks of 100-200 m, every few rows and columns an
arterial road (50 km/h), local streets (30 km/h) in between, and a few local street segments
missing so that routes are not all straight L-shapes. Everything is deterministic from the seed.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .geo import LocalProjection
from .traffic import TrafficField

ARTERIAL_SPEED_MPS: Final = 50 / 3.6
LOCAL_SPEED_MPS: Final = 30 / 3.6
BLOCK_M: Final = (100.0, 200.0)  # spacing between parallel streets
NODE_JITTER_M: Final = 4.0  # intersections are not surveyed points
ARTERIAL_EVERY: Final = (4, 6)  # arterial every 4th to 6th street
MISSING_LOCAL_SHARE: Final = 0.08  # local segments removed (dead ends, pedestrian zones)

_STREET_NAMES: Final = (
    "Linden", "Maple", "Harbour", "Mill", "Church", "Station", "Garden", "Market", "Bridge",
    "Canal", "Orchard", "Willow", "Castle", "School", "Chapel", "Meadow", "Park", "River",
    "Baker", "Weaver", "Cooper", "Brewer", "Tanner", "Fisher", "Miller", "Hill", "Elm",
    "Ash", "Birch", "Cedar", "Oak", "Poplar", "Rose", "Tulip", "Violet", "Juniper",
)  # fmt: skip


class RoadClass(enum.Enum):
    """Kind of street, which sets its speed limit."""

    ARTERIAL = "arterial"
    LOCAL = "local"

    @property
    def speed_limit_mps(self) -> float:
        return ARTERIAL_SPEED_MPS if self is RoadClass.ARTERIAL else LOCAL_SPEED_MPS


@dataclass(frozen=True, slots=True)
class Node:
    """An intersection, in local metres and in degrees."""

    id: int
    x: float
    y: float
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Street:
    """A street segment between two neighbouring intersections (two-way)."""

    a: int
    b: int
    length_m: float
    road: RoadClass
    name: str

    @property
    def speed_limit_mps(self) -> float:
        return self.road.speed_limit_mps

    @property
    def travel_time_s(self) -> float:
        return self.length_m / self.speed_limit_mps

    def other(self, node: int) -> int:
        return self.b if node == self.a else self.a


@dataclass(frozen=True, slots=True)
class Address:
    """A delivery address at an intersection node."""

    node: int
    label: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Path:
    """A route through the grid.

    ``xy`` and ``points`` hold one entry per node; ``speed_limits`` one per segment.
    """

    nodes: tuple[int, ...]
    xy: tuple[tuple[float, float], ...]
    points: tuple[tuple[float, float], ...]  # (lat, lon)
    speed_limits: tuple[float, ...]
    length_m: float
    travel_time_s: float  # at the speed limits, without turns or traffic

    def join(self, other: Path) -> Path:
        """This path followed by ``other``, which must start where this one ends."""
        if self.nodes[-1] != other.nodes[0]:
            raise ValueError("paths do not meet")
        return Path(
            nodes=self.nodes + other.nodes[1:],
            xy=self.xy + other.xy[1:],
            points=self.points + other.points[1:],
            speed_limits=self.speed_limits + other.speed_limits,
            length_m=self.length_m + other.length_m,
            travel_time_s=self.travel_time_s + other.travel_time_s,
        )


class NoRoute(Exception):
    """There is no path between the two nodes."""


class City:
    """A street graph with a depot; build one with :meth:`generate` or from explicit parts."""

    def __init__(
        self,
        projection: LocalProjection,
        nodes: Sequence[Node],
        streets: Iterable[Street],
        depot: int,
        traffic: TrafficField | None = None,
    ) -> None:
        self.projection = projection
        # Congestion by district and time, the same for every van (seed 0 unless given).
        self.traffic = traffic if traffic is not None else TrafficField(0)
        self.nodes: tuple[Node, ...] = tuple(nodes)
        for i, node in enumerate(self.nodes):
            if node.id != i:
                raise ValueError("node ids must be 0..n-1 in order")
        self.streets: tuple[Street, ...] = tuple(streets)
        self.adjacency: tuple[list[Street], ...] = tuple([] for _ in self.nodes)
        for street in self.streets:
            self.adjacency[street.a].append(street)
            self.adjacency[street.b].append(street)
        if not 0 <= depot < len(self.nodes):
            raise ValueError("depot is not a node")
        self.depot = depot

    @classmethod
    def generate(
        cls,
        center: tuple[float, float],
        *,
        seed: int = 0,
        size_m: float = 4000.0,
    ) -> City:
        """A grid city roughly ``size_m`` across, centred on ``center`` (lat, lon)."""
        if size_m < 2 * BLOCK_M[1]:
            raise ValueError(f"a city needs to be at least {2 * BLOCK_M[1]:.0f} m across")
        rng = random.Random(seed)
        projection = LocalProjection(*center)
        xs = _street_lines(rng, size_m)
        ys = _street_lines(rng, size_m)
        col_arterial = _arterial_flags(rng, len(xs))
        row_arterial = _arterial_flags(rng, len(ys))
        col_names = _names(rng, col_arterial, "Boulevard", "Lane")
        row_names = _names(rng, row_arterial, "Avenue", "Street")

        nodes: list[Node] = []
        for j, y0 in enumerate(ys):
            for i, x0 in enumerate(xs):
                x = x0 + rng.uniform(-NODE_JITTER_M, NODE_JITTER_M)
                y = y0 + rng.uniform(-NODE_JITTER_M, NODE_JITTER_M)
                lat, lon = projection.to_latlon(x, y)
                nodes.append(Node(j * len(xs) + i, x, y, lat, lon))

        def street(a: int, b: int, arterial: bool, name: str) -> Street:
            na, nb = nodes[a], nodes[b]
            road = RoadClass.ARTERIAL if arterial else RoadClass.LOCAL
            return Street(a, b, math.hypot(nb.x - na.x, nb.y - na.y), road, name)

        streets: list[Street] = []
        for j in range(len(ys)):
            for i in range(len(xs)):
                n = j * len(xs) + i
                if i + 1 < len(xs):
                    streets.append(street(n, n + 1, row_arterial[j], row_names[j]))
                if j + 1 < len(ys):
                    streets.append(street(n, n + len(xs), col_arterial[i], col_names[i]))

        depot_x, depot_y = -0.3 * size_m, -0.3 * size_m
        depot = min(nodes, key=lambda nd: math.hypot(nd.x - depot_x, nd.y - depot_y)).id
        streets = _remove_some_local(rng, len(nodes), streets)
        return cls(projection, nodes, streets, depot, TrafficField(seed))

    def is_connected(self) -> bool:
        """Whether every node can be reached from the depot."""
        return len(_reachable(len(self.nodes), self.streets, self.depot)) == len(self.nodes)

    def nearest_node(self, x: float, y: float) -> int:
        """The node closest to the point ``x`` m east, ``y`` m north of the centre."""
        return min(self.nodes, key=lambda nd: (nd.x - x) ** 2 + (nd.y - y) ** 2).id

    def address(self, node: int, rng: random.Random) -> Address:
        """A street address at ``node`` with a random house number."""
        street = rng.choice(self.adjacency[node])
        nd = self.nodes[node]
        return Address(node, f"{rng.randint(1, 199)} {street.name}", nd.lat, nd.lon)

    def random_addresses(self, rng: random.Random, count: int) -> list[Address]:
        """``count`` addresses on distinct nodes other than the depot."""
        candidates = [n.id for n in self.nodes if n.id != self.depot and self.adjacency[n.id]]
        if count > len(candidates):
            raise ValueError(f"the city has only {len(candidates)} possible stops")
        return [self.address(n, rng) for n in rng.sample(candidates, count)]

    def shortest_path(
        self, source: int, target: int, *, by: Literal["time", "distance"] = "time"
    ) -> Path:
        """The fastest (or shortest) path from ``source`` to ``target``; Dijkstra's algorithm."""
        dist: dict[int, float] = {source: 0.0}
        prev: dict[int, Street] = {}
        heap: list[tuple[float, int]] = [(0.0, source)]
        done: set[int] = set()
        while heap:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            if u == target:
                break
            done.add(u)
            for street in self.adjacency[u]:
                v = street.other(u)
                nd = d + (street.travel_time_s if by == "time" else street.length_m)
                if nd < dist.get(v, math.inf):
                    dist[v] = nd
                    prev[v] = street
                    heapq.heappush(heap, (nd, v))
        if target not in dist:
            raise NoRoute(f"no route from node {source} to node {target}")
        segments: list[Street] = []
        node_ids = [target]
        while node_ids[-1] != source:
            street = prev[node_ids[-1]]
            segments.append(street)
            node_ids.append(street.other(node_ids[-1]))
        node_ids.reverse()
        segments.reverse()
        return self._path(node_ids, segments)

    def _path(self, node_ids: list[int], segments: list[Street]) -> Path:
        nodes = [self.nodes[n] for n in node_ids]
        return Path(
            nodes=tuple(node_ids),
            xy=tuple((n.x, n.y) for n in nodes),
            points=tuple((n.lat, n.lon) for n in nodes),
            speed_limits=tuple(s.speed_limit_mps for s in segments),
            length_m=sum(s.length_m for s in segments),
            travel_time_s=sum(s.travel_time_s for s in segments),
        )


def _street_lines(rng: random.Random, size_m: float) -> list[float]:
    lines = [-size_m / 2]
    while lines[-1] < size_m / 2:
        lines.append(lines[-1] + rng.uniform(*BLOCK_M))
    return lines


def _arterial_flags(rng: random.Random, count: int) -> list[bool]:
    flags = [False] * count
    i = rng.randint(1, ARTERIAL_EVERY[0])
    while i < count:
        flags[i] = True
        i += rng.randint(*ARTERIAL_EVERY)
    return flags


def _names(rng: random.Random, arterial: list[bool], major: str, minor: str) -> list[str]:
    base = list(_STREET_NAMES)
    rng.shuffle(base)
    return [f"{base[k % len(base)]} {major if art else minor}" for k, art in enumerate(arterial)]


def _reachable(n_nodes: int, streets: Iterable[Street], start: int) -> set[int]:
    adjacency: list[list[int]] = [[] for _ in range(n_nodes)]
    for s in streets:
        adjacency[s.a].append(s.b)
        adjacency[s.b].append(s.a)
    seen = {start}
    queue = deque([start])
    while queue:
        for v in adjacency[queue.popleft()]:
            if v not in seen:
                seen.add(v)
                queue.append(v)
    return seen


def _remove_some_local(rng: random.Random, n_nodes: int, streets: list[Street]) -> list[Street]:
    """Drop a share of local segments, keeping every node reachable."""
    kept = list(streets)
    local = [s for s in streets if s.road is RoadClass.LOCAL]
    for victim in rng.sample(local, int(len(local) * MISSING_LOCAL_SHARE)):
        trial = [s for s in kept if s is not victim]
        if len(_reachable(n_nodes, trial, victim.a)) == n_nodes:
            kept = trial
    return kept
