"""Devices that behave like the phone apps fleets run over HTTP: every fix kept, the oldest
sent to the gateway's device HTTP server until it is answered with a success, then the next.
A refused fix answered with an error would be sent again for ever; the gateway answers a
success to anything it can read (stored or filtered), so the queue drains.

``OsmAndClient`` is the Traccar Client (its JSON body, the app's own template; -1 for
"unknown" where the van has no value); ``OwnTracksClient`` is OwnTracks in HTTP mode (a
``_type: location`` message, the token as a bearer token, an array in reply). Both have the
surface of ``device.DeviceClient`` (``submit``, ``run``, ``stop``, ``stats``), so a fleet
mixes them.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import trio

from .device import TokenRefresher
from .stats import DeviceStats
from .vehicle import Fix

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
REQUEST_TIMEOUT_S: Final = 15.0


def traccar_body(device_id: str, fix: Fix) -> dict[str, Any]:
    """The Traccar Client's JSON location body for ``fix`` (its ``locationTemplate``)."""
    ts = datetime.fromtimestamp(fix.ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "location": {
            "timestamp": ts,
            "coords": {
                "latitude": fix.lat,
                "longitude": fix.lon,
                "accuracy": fix.accuracy,
                "speed": fix.speed,
                "heading": fix.heading if fix.speed > 0.5 else -1,
                "altitude": fix.alt,
            },
            "is_moving": fix.speed > 0.5,
            "odometer": fix.odometer,
            "event": "",
            "battery": {"level": fix.battery / 100.0, "is_charging": False},
            "activity": {"type": "in_vehicle" if fix.speed > 0.5 else "still"},
            "extras": {} if fix.temp_c is None else {"temp": round(fix.temp_c, 2)},
        },
        "device_id": device_id,
    }


def owntracks_body(fix: Fix) -> dict[str, Any]:
    """An OwnTracks ``location`` message for ``fix`` (vel in km/h, numbers as the app sends
    them: integers where it has no decimals)."""
    return {
        "_type": "location",
        "tid": "sm",
        "tst": int(fix.ts),
        "lat": round(fix.lat, 7),
        "lon": round(fix.lon, 7),
        "acc": round(fix.accuracy),
        "vel": round(fix.speed * 3.6),
        "cog": round(fix.heading) if fix.speed > 0.5 else -1,
        "alt": round(fix.alt),
        "batt": round(fix.battery),
        "bs": 1,
        "conn": "m",
        "t": "u" if fix.speed > 0.5 else "t",
    }


class OsmAndClient:
    """One device on the OsmAnd protocol (the Traccar Client's JSON body)."""

    def __init__(
        self,
        device_id: str,
        token: str,
        url: str,
        *,
        max_backlog: int = 10_000,
        seed: int = 0,
        refresh_token: TokenRefresher | None = None,
        drain_s: float = 3.0,
    ) -> None:
        self.device_id = device_id
        self.token = token
        self.url = url.rstrip("/") + "/"
        self.max_backlog = max_backlog
        self.drain_s = drain_s
        self.stats = DeviceStats()
        self._rng = random.Random(seed)
        self._refresh_token = refresh_token
        self._queue: deque[Fix] = deque()
        self._next_seq = 1
        self._wakeup = trio.Event()
        self._stop = trio.Event()

    def submit(self, fix: Fix) -> int:
        """Keep a fix for sending; its number (the gateway's seq is its fix time)."""
        seq = self._next_seq
        self._next_seq += 1
        self._queue.append(fix)
        self.stats.submitted += 1
        if len(self._queue) > self.max_backlog:
            self._queue.popleft()
            self.stats.dropped += 1
        self.stats.unacked = len(self._queue)
        self._wakeup.set()
        return seq

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send the oldest fix until a success, then the next, until :meth:`stop` (then
        for up to ``drain_s`` more)."""
        task_status.started()
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
            self.stats.connects += 1
            failures = 0
            deadline = float("inf")
            while True:
                if self._stop.is_set():
                    deadline = min(deadline, trio.current_time() + self.drain_s)
                    if not self._queue or trio.current_time() >= deadline:
                        return
                if not self._queue:
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                    continue
                delay = await self._send_oldest(http)
                if delay is None:
                    failures = 0
                    continue
                failures += 1
                wait = max(delay, self._backoff(failures))
                with trio.move_on_after(wait):
                    await self._stop.wait()

    async def _send_oldest(self, http: httpx.AsyncClient) -> float | None:
        """Send the oldest fix; None once it is answered with a success, else how long to
        wait before trying again."""
        try:
            r = await self._post(http, self._queue[0])
        except httpx.HTTPError as exc:
            self.stats.handshake_failures += 1
            log.debug("%s: cannot send: %r", self.device_id, exc)
            return 0.0
        self.stats.frames += 1
        if r.status_code == 200:
            self._queue.popleft()
            self.stats.unacked = len(self._queue)
            self.stats.sent += 1
            # Counted as the WebSocket client counts: a duplicate is acknowledged (stored
            # before), any other refusal is a rejection.
            answer = r.json() if r.content else None
            found = answer.get("rejected", []) if isinstance(answer, dict) else []
            reasons = [str(x.get("reason")) for x in found]
            if not reasons or reasons == ["duplicate"]:
                self.stats.acked += 1
                self.stats.duplicates += bool(reasons)
            else:
                self.stats.rejected[reasons[0]] += 1
            return None
        self.stats.resent += 1
        self.stats.errors[str(r.status_code)] += 1
        if r.status_code == 401 and self._refresh_token is not None:
            self.stats.auth_failures += 1
            self.token = await self._refresh_token(self.device_id)
            return 0.0
        if r.status_code == 429:
            return float(r.headers.get("Retry-After", "1"))
        return 0.0

    async def _post(self, http: httpx.AsyncClient, fix: Fix) -> httpx.Response:
        return await http.post(self.url, json=traccar_body(self.token, fix))

    def _backoff(self, failures: int) -> float:
        base = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** (failures - 1))
        return base * self._rng.uniform(0.5, 1.0)


class OwnTracksClient(OsmAndClient):
    """One device on OwnTracks' HTTP mode. OwnTracks answers nothing about a fix it sent
    (the reply is a list of commands), so every success counts as acknowledged."""

    async def _post(self, http: httpx.AsyncClient, fix: Fix) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "X-Limit-D": self.device_id}
        return await http.post(self.url + "v1/owntracks", json=owntracks_body(fix), headers=headers)
