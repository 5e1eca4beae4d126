"""Counters kept by each simulated device, and the fleet-wide report built from them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec


@dataclass(slots=True)
class DeviceStats:
    """What one device has done on the wire. Positions are counted once each."""

    submitted: int = 0  # positions handed to the device
    sent: int = 0  # positions sent for the first time
    resent: int = 0  # positions sent again after a reconnect
    frames: int = 0
    acked: int = 0  # includes positions reported as duplicates of ones already stored
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by reason
    errors: Counter[str] = field(default_factory=Counter)  # error replies by reason
    bad_replies: int = 0
    dropped: int = 0  # backlog overflow: oldest unacked positions given up
    connects: int = 0
    reconnects: int = 0
    simulated_disconnects: int = 0
    closes: Counter[int] = field(default_factory=Counter)  # by close code
    handshake_failures: int = 0
    auth_failures: int = 0
    resyncs: int = 0  # the gateway knew later seqs from an earlier run
    crashes: int = 0  # unexpected errors, survived
    connected: bool = False
    unacked: int = 0


class FleetReport(msgspec.Struct, frozen=True):
    """Fleet totals; also the ``--report-json`` line."""

    devices: int
    connected: int  # at the time of the report
    connects: int  # successful handshakes, first connections included
    duration_s: float
    submitted: int
    sent: int
    resent: int
    frames: int
    acked: int
    duplicates: int
    rejected: dict[str, int]
    errors: dict[str, int]
    reconnects: int
    simulated_disconnects: int
    closes: dict[str, int]
    handshake_failures: int
    auth_failures: int
    backlog_dropped: int
    unacked: int
    crashes: int
    positions_per_s: float
    # Routes imported and started, stops reported (see simulator.dispatch.DispatchStats);
    # empty when the run imports no routes.
    dispatch: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @classmethod
    def collect(cls, stats: Iterable[DeviceStats], duration_s: float) -> FleetReport:
        """Sum the counters of every device."""
        items = list(stats)
        rejected: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        closes: Counter[str] = Counter()
        for s in items:
            rejected.update(s.rejected)
            errors.update(s.errors)
            closes.update({str(code): n for code, n in s.closes.items()})
        sent = sum(s.sent for s in items)
        return cls(
            devices=len(items),
            connected=sum(s.connected for s in items),
            connects=sum(s.connects for s in items),
            duration_s=round(duration_s, 3),
            submitted=sum(s.submitted for s in items),
            sent=sent,
            resent=sum(s.resent for s in items),
            frames=sum(s.frames for s in items),
            acked=sum(s.acked for s in items),
            duplicates=sum(s.duplicates for s in items),
            rejected=dict(sorted(rejected.items())),
            errors=dict(sorted(errors.items())),
            reconnects=sum(s.reconnects for s in items),
            simulated_disconnects=sum(s.simulated_disconnects for s in items),
            closes=dict(sorted(closes.items())),
            handshake_failures=sum(s.handshake_failures for s in items),
            auth_failures=sum(s.auth_failures for s in items),
            backlog_dropped=sum(s.dropped for s in items),
            unacked=sum(s.unacked for s in items),
            crashes=sum(s.crashes for s in items),
            positions_per_s=round(sent / duration_s, 1) if duration_s > 0 else 0.0,
        )

    def summary(self) -> str:
        """A few human-readable lines."""
        reasons = ", ".join(f"{k} {v}" for k, v in self.rejected.items()) or "none"
        lines = [
            f"devices {self.devices}, ran {self.duration_s:.1f} s",
            f"sent {self.sent} positions ({self.resent} resent, {self.frames} frames), "
            f"{self.positions_per_s:.1f} positions/s",
            f"acked {self.acked} (of which {self.duplicates} duplicates), "
            f"unacked at exit {self.unacked}",
            f"rejected {self.rejected_total}: {reasons}",
            f"reconnects {self.reconnects} ({self.simulated_disconnects} simulated), "
            f"handshake failures {self.handshake_failures} ({self.auth_failures} auth), "
            f"backlog dropped {self.backlog_dropped}",
        ]
        if self.errors:
            lines.append("error replies: " + ", ".join(f"{k} {v}" for k, v in self.errors.items()))
        if self.closes:
            codes = ", ".join(f"{k} x{v}" for k, v in self.closes.items())
            lines.append(f"closed by gateway: {codes}")
        if self.crashes:
            lines.append(f"device crashes survived: {self.crashes}")
        if self.dispatch:
            d = self.dispatch
            lines.append(
                f"routes imported {d.get('routes_imported', 0)}, started "
                f"{d.get('routes_started', 0)} (not imported {d.get('import_failures', 0)}, "
                f"not started {d.get('start_failures', 0)}, earlier runs' routes closed "
                f"{d.get('stale_routes_closed', 0)})"
            )
            lines.append(
                f"deliveries reported: delivered {d.get('delivered', 0)}, "
                f"failed {d.get('failed', 0)}; "
                f"reports lost {d.get('status_errors', 0) + d.get('dropped', 0)}, "
                f"retries {d.get('retries', 0)}"
            )
        return "\n".join(lines)
