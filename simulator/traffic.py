"""Congestion as a property of place and time, shared by every van in the city.

A van is not jammed on its own: when a district is congested every van driving through it is
slowed, for as long as the congestion lasts. :class:`TrafficField` gives the share of the
free-flow speed that traffic allows at a point and a time. The city is cut into square cells
of ``cell_m``; every ``knot_s`` each cell draws a level (mostly free flow, sometimes busy,
now and then jammed), and the field in between is interpolated linearly in both space (between
cell centres) and time (between knots). So congestion covers districts of about a kilometre,
builds up and clears over a quarter of an hour or so, and every van in the district meets the
same level at the same moment.

The levels are a pure function of the seed, the cell and the knot: the same city sees the same
traffic on every run, whichever vans drive through it and in whatever order they ask. Time is
simulated seconds on a clock every van shares (wall-clock seconds times the time scale), so
different days get different traffic.

What is left to each van on its own is short: traffic lights and stop-and-go, drawn in the van
(:mod:`simulator.vehicle`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

_CACHE_LIMIT: Final = 100_000  # knot levels remembered; beyond it the cache starts afresh


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    """How congestion is drawn: cell size, how often levels change and how they are spread."""

    cell_m: float = 800.0
    knot_s: float = 900.0
    # (share of knots, lowest and highest share of the free-flow speed): free flow, busy, jammed
    levels: tuple[tuple[float, float, float], ...] = (
        (0.65, 0.85, 1.0),
        (0.25, 0.55, 0.85),
        (0.10, 0.30, 0.55),
    )

    def __post_init__(self) -> None:
        if self.cell_m <= 0 or self.knot_s <= 0:
            raise ValueError("cell_m and knot_s must be positive")
        if not self.levels or abs(sum(s for s, _, _ in self.levels) - 1.0) > 1e-9:
            raise ValueError("the shares of the traffic levels must add up to 1")
        for _, lo, hi in self.levels:
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError("traffic levels must be within (0, 1], lowest first")


FREE_FLOW: Final = TrafficConfig(levels=((1.0, 1.0, 1.0),))


class TrafficField:
    """The share of the free-flow speed that traffic allows, by place and time."""

    __slots__ = ("_cache", "config", "seed")

    def __init__(self, seed: int, config: TrafficConfig | None = None) -> None:
        self.seed = seed
        self.config = config if config is not None else TrafficConfig()
        self._cache: dict[tuple[int, int, int], float] = {}

    def level(self, i: int, j: int, k: int) -> float:
        """The level drawn for cell ``(i, j)`` at knot ``k``."""
        key = (i, j, k)
        value = self._cache.get(key)
        if value is None:
            rng = random.Random(f"traffic:{self.seed}:{i}:{j}:{k}")
            r = rng.random()
            lo, hi = self.config.levels[-1][1:]
            for share, low, high in self.config.levels:
                if r < share:
                    lo, hi = low, high
                    break
                r -= share
            value = rng.uniform(lo, hi)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = value
        return value

    def factor(self, x: float, y: float, t: float) -> float:
        """Share of the free-flow speed at ``x`` m east, ``y`` m north of the city's centre at
        simulated time ``t`` (seconds on the clock every van shares)."""
        cfg = self.config
        # Cell centres sit at (i + 0.5) * cell_m; knots at k * knot_s.
        u, v, w = x / cfg.cell_m - 0.5, y / cfg.cell_m - 0.5, t / cfg.knot_s
        i, j, k = math.floor(u), math.floor(v), math.floor(w)
        fu, fv, fw = u - i, v - j, w - k
        total = 0.0
        for dk, wk in ((0, 1.0 - fw), (1, fw)):
            if wk == 0.0:
                continue
            for dj, wj in ((0, 1.0 - fv), (1, fv)):
                if wj == 0.0:
                    continue
                for di, wi in ((0, 1.0 - fu), (1, fu)):
                    if wi == 0.0:
                        continue
                    total += wi * wj * wk * self.level(i + di, j + dj, k + dk)
        return total
