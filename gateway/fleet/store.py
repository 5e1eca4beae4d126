"""Redis access for vehicles: state, device cursors, position history, what routes showed
for ETAs and the live stage's state (devices are ``devices.py``).

The hot path is ``write_batch``: one script call stores, for every vehicle of a batch, its
latest state, each device's cursor and one history entry holding all of its new positions.
One round trip per batch rather than per position is what lets ingest keep up (a coredis
pipeline costs about 30 us per command on this class of machine; the script about 13 us per
vehicle, most of it spent inside Redis).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, cast

import coredis
import msgspec
from coredis.commands.request import CommandRequest
from coredis.patterns.pipeline import ClusterPipeline, Pipeline

from gateway.core import keys
from gateway.fleet.position import Position
from notify.redis_client import RedisClient, is_cluster, refresh_cluster_map

_WRITE_LUA: Final = """
-- KEYS: per write, its vehicle's hash and track stream.
-- ARGV[1]: MINID for track trimming; then per write (one vehicle, one device): state,
-- device, cursor, positions (MessagePack), the first and the last position's seq (each
-- as 20 decimal digits).
-- The device's stored seq (field seq:<device>, 20 digits) is the last word on what is
-- already stored. Sequence numbers are unsigned 64-bit: they are compared as equal-length
-- digit strings, never as Lua numbers (doubles, exact only below 2^53).
-- A write whose first seq is not above the stored one (another process, or a retried
-- batch, wrote some of it already) is not made; its index and the stored seq are returned
-- for the caller to drop what is stored and write the rest.
local minid = ARGV[1]
local skipped = {}
for i = 1, #KEYS / 2 do
  local a = 2 + (i - 1) * 6
  local device = ARGV[a+1]
  local stored = redis.call('HGET', KEYS[2*i-1], 'seq:' .. device)
  if not stored then
    -- Stored before the seq field existed: its cursor (MessagePack) holds the seq.
    local cursor = redis.call('HGET', KEYS[2*i-1], 'cur:' .. device)
    if cursor then stored = string.format('%020.0f', cmsgpack.unpack(cursor)[1]) end
  end
  if stored and stored >= ARGV[a+4] then
    skipped[#skipped + 1] = i
    skipped[#skipped + 1] = stored
  else
    redis.call('HSET', KEYS[2*i-1], 'state', ARGV[a], 'cur:' .. device, ARGV[a+2],
               'seq:' .. device, ARGV[a+5])
    redis.call('XADD', KEYS[2*i], 'MINID', '~', minid, '*', 'd', device, 'p', ARGV[a+3])
  end
end
return skipped
"""


def seq_digits(seq: int) -> str:
    """A sequence number as the write script compares it: 20 decimal digits."""
    return f"{seq:020d}"


_mp_enc: Final = msgspec.msgpack.Encoder()
_mp_dec: Final = msgspec.msgpack.Decoder()
_json_enc: Final = msgspec.json.Encoder()
_positions_dec: Final = msgspec.msgpack.Decoder(list[Position])


DWELL: Final = "d"
LEG: Final = "l"


class EtaObservation(NamedTuple):
    """A finished dwell (``kind`` DWELL: at stop number ``stop``, with its location ``site``)
    or leg (LEG: driven straight to stop number ``stop`` from the stop before) of ``route``,
    planned at ``planned_s`` and taking ``actual_s``."""

    kind: str
    route: str
    stop: int
    planned_s: float
    actual_s: float
    site: str = ""


def text(value: str | bytes) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


def _raw(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


@dataclass(slots=True)  # not frozen: one is made per vehicle per write batch, and a frozen
class VehicleWrite:  # dataclass's __init__ costs about three times as much
    """Everything a batch changes for one vehicle, from one of its devices."""

    vehicle: str
    device: str
    state: bytes
    cursor: bytes
    positions: bytes
    first_seq: str  # seq_digits of the first position's seq
    last_seq: str  # and of the last one's
    source: list[Position]  # what ``positions`` encodes

    @classmethod
    def of(cls, vehicle: str, device: str, state: bytes, positions: list[Position]) -> VehicleWrite:
        """The write of ``positions`` (in seq order, at least one) and the vehicle's state."""
        last = positions[-1]
        return cls(
            vehicle,
            device,
            state,
            _mp_enc.encode((last.seq, last.ts, last.lat, last.lon)),
            _mp_enc.encode(positions),
            seq_digits(positions[0].seq),
            seq_digits(last.seq),
            positions,
        )

    def script_args(self) -> tuple[bytes, str, bytes, bytes, str, str]:
        """This write's arguments to the write script, in its order."""
        return (self.state, self.device, self.cursor, self.positions, self.first_seq,
                self.last_seq)  # fmt: skip

    def after(self, stored: int) -> VehicleWrite | None:
        """This write without the positions at or below ``stored`` (None: nothing left)."""
        kept = [p for p in self.source if p.seq > stored]
        return VehicleWrite.of(self.vehicle, self.device, self.state, kept) if kept else None


def _redo(
    writes: Sequence[VehicleWrite], skipped: Sequence[Any], offset: int = 0
) -> tuple[int, list[VehicleWrite]]:
    """From the script's answer (1-based write index, stored seq, ...): how many positions
    Redis already had, and the writes of the rest."""
    dropped = 0
    again: list[VehicleWrite] = []
    for j in range(0, len(skipped), 2):
        w = writes[int(skipped[j]) - 1 + offset]
        rest = w.after(int(skipped[j + 1]))
        dropped += len(w.source) - (len(rest.source) if rest else 0)
        if rest is not None:
            again.append(rest)
    return dropped, again


class Store:
    def __init__(
        self,
        redis: RedisClient[bytes],
        track_retention_s: float,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.track_retention_s = track_retention_s
        self._write_sha: str | None = None
        # On a Redis Cluster a transaction or a script call must stay in one slot.
        self.cluster = is_cluster(redis)
        # > 0: every write batch ends with WAIT for this many replicas (see write_and_wait)
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._unconfirmed: list[str] = []  # on a cluster: the vehicles of the last batch

    # ----- vehicle state and history

    async def load_cursor(self, vehicle: str, device: str) -> list[Any] | None:
        raw = await self.redis.hget(keys.vehicle(vehicle), f"cur:{device}")
        return None if raw is None else list(_mp_dec.decode(raw))

    async def load_session(
        self, vehicle: str, device: str
    ) -> tuple[list[Any] | None, tuple[float, float] | None]:
        """The device's cursor and its saved rate budget (tokens, wall-clock time)."""
        raw, budget = await self.redis.hmget(
            keys.vehicle(vehicle), [f"cur:{device}", f"rl:{device}"]
        )
        saved = None
        if budget is not None:
            tokens, _, at = budget.partition(b" ")
            saved = (float(tokens), float(at))
        return (None if raw is None else list(_mp_dec.decode(raw))), saved

    async def save_budget(self, vehicle: str, device: str, saved: tuple[float, float]) -> None:
        await self.redis.hset(keys.vehicle(vehicle), {f"rl:{device}": f"{saved[0]!r} {saved[1]!r}"})

    async def load_states(self) -> dict[str, bytes]:
        """Every vehicle's latest state blob, keyed by vehicle id."""
        ids = [m.decode() for m in await self.redis.smembers(keys.VEHICLES)]
        out: dict[str, bytes] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            async with self.redis.pipeline(transaction=False) as p:
                reqs = [p.hget(keys.vehicle(v), "state") for v in chunk]
            for v, r in zip(chunk, reqs, strict=True):
                blob = await r
                if blob is not None:
                    out[v] = blob
        return out

    async def save_state(self, vehicle: str, state: bytes) -> None:
        await self.redis.hset(keys.vehicle(vehicle), {"state": state})

    async def write_batch(self, writes: Sequence[VehicleWrite], now: float) -> int:
        """Write the batch; returns how many positions Redis already had (not written again:
        at or below their device's stored cursor)."""
        return (await self.write_and_wait(writes, now))[0]

    async def write_and_wait(self, writes: Sequence[VehicleWrite], now: float) -> tuple[int, bool]:
        """``write_batch``, and whether ``wait_replicas`` replicas have the batch (always
        True when ``wait_replicas`` is 0). False: the data is written on the primary but
        WAIT timed out short; ``wait_for_replicas`` asks again."""
        minid = str(int((now - self.track_retention_s) * 1000))
        dropped = 0
        replicated = True
        # A write some of whose positions Redis already has comes back without them, to be
        # written again (rare: a retried batch, a device moving between processes).
        while writes:
            if self.cluster:
                try:
                    d, writes, rep = await self._write_per_vehicle(writes, minid)
                except (coredis.exceptions.ConnectionError, coredis.exceptions.ClusterDownError):
                    # A master died: let the caller's retry find the replica promoted for it.
                    await refresh_cluster_map(self.redis)
                    raise
            else:
                d, writes, rep = await self._write_once(writes, minid)
            dropped += d
            replicated = replicated and rep
        return dropped, replicated

    async def _write_once(
        self, writes: Sequence[VehicleWrite], minid: str
    ) -> tuple[int, list[VehicleWrite], bool]:
        ks: list[str] = []
        args: list[str | bytes] = [minid]
        for w in writes:
            ks.append(keys.vehicle(w.vehicle))
            ks.append(keys.track(w.vehicle))
            args.extend(w.script_args())
        if self.wait_replicas:
            skipped, replicated = await self._write_and_wait(ks, args)
            return (*_redo(writes, skipped), replicated)
        try:
            reply = await self.redis.evalsha(await self._sha(), ks, args)
        except coredis.exceptions.NoScriptError:
            # Redis restarted and lost its script cache.
            self._write_sha = None
            reply = await self.redis.evalsha(await self._sha(), ks, args)
        return (*_redo(writes, cast("list[Any]", reply)), True)

    async def _sha(self) -> str:
        """The write script's SHA, loading the script once (again after ``_write_sha`` was
        reset: Redis restarted and lost its script cache)."""
        if self._write_sha is None:
            self._write_sha = (await self.redis.script_load(_WRITE_LUA)).decode()
        return self._write_sha

    async def _write_and_wait(
        self, ks: list[str], args: list[str | bytes]
    ) -> tuple[list[Any], bool]:
        """The script call and WAIT in one non-transactional pipeline: one round trip, and
        WAIT runs on the connection that made the writes, as it must (it only counts the
        writes of its own connection)."""
        for _ in range(2):
            sha = await self._sha()
            async with self.redis.pipeline(transaction=False, raise_on_error=False) as p:
                call = p.evalsha(sha, ks, args)
                waits = self._queue_waits(p)
            try:
                skipped = await call
            except coredis.exceptions.NoScriptError:
                self._write_sha = None  # Redis restarted and lost its script cache
                continue
            return list(skipped), await self._replicated(waits)  # type: ignore[arg-type]
        raise coredis.exceptions.NoScriptError("the write script could not be loaded")

    def _queue_waits(
        self, p: Pipeline[bytes] | ClusterPipeline[bytes], vehicles: Sequence[str] = ()
    ) -> list[CommandRequest[int]]:
        """Queue, on pipeline ``p``, writes of a WAIT mark and the WAITs; returns the WAITs.

        The mark makes a WAIT cover every write the server had taken, not only this
        connection's own: a batch whose positions the script found already stored (an
        earlier try that failed after its write, another process) writes nothing, and a
        WAIT after it would count replicas for an older write of this connection.

        On one server: one mark and one WAIT. On a cluster: a mark in the hash of each of
        ``vehicles``, then one WAIT routed to each vehicle's slot. The pipeline sends a
        node's commands in order on one connection, so the first WAIT on each node covers
        that node's writes and marks; the node's other WAITs find nothing left to wait for.
        (A write coredis redirects elsewhere, a slot migrating meanwhile, is not covered.)"""
        if not self.cluster:
            p.incr(keys.WAIT_MARK)
            return [p.wait(self.wait_replicas, self.wait_timeout_ms)]
        for v in vehicles:
            p.hincrby(keys.vehicle(v), "wait_mark", 1)
        with warnings.catch_warnings():
            # coredis warns that WAIT on a cluster pipeline is not tied to one connection;
            # routed by slot, each of these is (see above).
            warnings.filterwarnings("ignore", "Use the :meth:`Redis.ensure_replication`")
            return [
                p.wait(self.wait_replicas, self.wait_timeout_ms).route(keys.vehicle(v))
                for v in vehicles
            ]

    async def wait_for_replicas(self) -> bool:
        """WAIT again after ``write_and_wait`` came back short: whether ``wait_replicas``
        replicas now have every write made so far (the batch's included)."""
        # One server: an error is raised, for the caller's retry; on a cluster it counts as
        # short, as in the batch's own pipeline.
        async with self.redis.pipeline(transaction=False, raise_on_error=not self.cluster) as p:
            waits = self._queue_waits(p, self._unconfirmed)
        return await self._replicated(waits)

    async def _replicated(self, waits: list[CommandRequest[int]]) -> bool:
        """Whether every WAIT of a pipeline counted ``wait_replicas`` replicas (a WAIT that
        failed on a cluster node did not)."""
        for wait in waits:
            try:
                if int(await wait) < self.wait_replicas:
                    return False
            except coredis.exceptions.RedisError:
                return False
        return True

    async def _write_per_vehicle(
        self, writes: Sequence[VehicleWrite], minid: str
    ) -> tuple[int, list[VehicleWrite], bool]:
        """The cluster form of ``write_and_wait``: a script call may only touch one slot, so
        one call per vehicle (its keys share the ``{vehicle}`` tag), pipelined: one round trip
        per cluster node, ended by the WAITs when ``wait_replicas`` is set. A call that fails
        only for want of the script (a node restarted) is made again once the script is
        loaded; the others are not repeated."""
        pending = list(writes)
        dropped = 0
        again: list[VehicleWrite] = []
        replicated = True
        self._unconfirmed = [w.vehicle for w in writes]
        for _ in range(2):
            sha = await self._sha()
            async with self.redis.pipeline(transaction=False, raise_on_error=False) as p:
                calls = [
                    p.evalsha(
                        sha,
                        [keys.vehicle(w.vehicle), keys.track(w.vehicle)],
                        [minid, *w.script_args()],
                    )
                    for w in pending
                ]
                waits = (
                    self._queue_waits(p, [w.vehicle for w in pending]) if self.wait_replicas else []
                )
            missing = []
            for w, call in zip(pending, calls, strict=True):
                try:
                    d, rest = _redo([w], await call)  # type: ignore[arg-type]
                except coredis.exceptions.NoScriptError:
                    missing.append(w)
                else:
                    dropped += d
                    again += rest
            replicated = replicated and await self._replicated(waits)
            if not missing:
                return dropped, again, replicated
            pending, self._write_sha = missing, None
        raise coredis.exceptions.NoScriptError("the write script could not be loaded")

    async def read_track(
        self, vehicle: str, since: float, until: float, limit: int, skew_s: float
    ) -> list[tuple[str, Position]]:
        """Positions of ``vehicle`` with fix time in [since, until], oldest first.

        Entries are keyed by ingest time; a fix can be up to ``skew_s`` newer than its
        ingest time, so the scan starts that much earlier and filters on fix time. A
        position stored twice (a batch written again after a failure that came after its
        write) is returned once.
        """
        start = str(max(0, int((since - skew_s) * 1000)))
        out: list[tuple[str, Position]] = []
        seen: set[tuple[str, int]] = set()
        cursor = start
        while len(out) < limit:
            entries = await self.redis.xrange(keys.track(vehicle), cursor, "+", count=200)
            if not entries:
                break
            for e in entries:
                device = text(e.field_values[b"d"])
                for p in _positions_dec.decode(_raw(e.field_values[b"p"])):
                    if since <= p.ts <= until and (device, p.seq) not in seen:
                        seen.add((device, p.seq))
                        out.append((device, p))
            last = text(entries[-1].identifier)
            ms, sq = last.split("-")
            cursor = f"{ms}-{int(sq) + 1}"
            if len(entries) < 200:
                break
        return out[:limit]

    async def _append(
        self, stream: str, entries: Sequence[dict[str, str | bytes]], max_len: int
    ) -> None:
        """Add ``entries`` to ``stream`` in one round trip, trimming it to about ``max_len``."""
        if not entries:
            return
        async with self.redis.pipeline(transaction=False) as p:
            for fields in entries:
                p.xadd(
                    stream,
                    fields,
                    trim_strategy=coredis.PureToken.MAXLEN,
                    threshold=max_len,
                    trim_operator=coredis.PureToken.APPROXIMATELY,
                )

    # ----- what routes showed for ETAs (learnt by every process, kept across restarts)

    async def append_eta_observations(
        self, observed: Sequence[EtaObservation], max_len: int
    ) -> None:
        entries: list[dict[str, str | bytes]] = []
        for o in observed:
            fields: dict[str, str | bytes] = {"k": o.kind, "r": o.route, "i": str(o.stop)}
            fields |= {"p": f"{o.planned_s:.1f}", "a": f"{o.actual_s:.1f}"}
            if o.site:
                fields["s"] = o.site
            entries.append(fields)
        await self._append(keys.ETA_OBSERVED, entries, max_len)

    async def read_eta_observations(
        self, after_id: str, count: int, block_ms: int | None
    ) -> tuple[str, list[EtaObservation]]:
        """Observations added after ``after_id`` (``"0-0"``: from the oldest kept), at most
        ``count``, waiting up to ``block_ms`` for the first (None: not at all); with the id to
        read on from. An entry that does not decode is skipped."""
        found = await self.redis.xread({keys.ETA_OBSERVED: after_id}, count=count, block=block_ms)
        out: list[EtaObservation] = []
        last = after_id
        for entries in (found or {}).values():
            for e in entries:
                last = text(e.identifier)
                f = {text(k): text(v) for k, v in e.field_values.items()}
                try:
                    o = EtaObservation(
                        f["k"], f["r"], int(f["i"]), float(f["p"]), float(f["a"]), f.get("s", "")
                    )
                except (KeyError, ValueError):
                    continue
                if o.kind in (DWELL, LEG):
                    out.append(o)
        return last, out

    # ----- the live stage's state of each vehicle (fields of its hash, JSON; see gateway.live)

    @staticmethod
    def _live_fields(fields: Iterable[str]) -> None:
        """Refuse any field of a vehicle's hash but the live stage's: ``geo`` (its zone
        memberships), ``trk`` (its route tracker) and ``next`` (the stop it drives to)."""
        other = set(fields) - {"geo", "trk", "next"}
        if other:
            raise ValueError(f"not a live state field: {sorted(other)}")

    async def save_live_state(self, states: dict[str, dict[str, bytes]]) -> None:
        """Set the live stage's fields of each vehicle's hash (``{vehicle: {field: value}}``),
        in one round trip."""
        for fields in states.values():
            self._live_fields(fields)
        if not any(states.values()):
            return
        async with self.redis.pipeline(transaction=False) as p:
            for vehicle, fields in states.items():
                if fields:
                    p.hset(keys.vehicle(vehicle), dict(fields))

    async def load_live_state(self, vehicles: Sequence[str], field: str) -> dict[str, bytes]:
        """The live stage's field ``field`` of each of ``vehicles``' hashes, by vehicle (those
        that have it)."""
        self._live_fields([field])
        out: dict[str, bytes] = {}
        for i in range(0, len(vehicles), 500):
            chunk = vehicles[i : i + 500]
            async with self.redis.pipeline(transaction=False) as p:
                reqs = [p.hget(keys.vehicle(v), field) for v in chunk]
            for v, r in zip(chunk, reqs, strict=True):
                raw = await r
                if raw is not None:
                    out[v] = raw
        return out

    async def load_live_fields(self, vehicle: str, fields: Sequence[str]) -> dict[str, bytes]:
        """The live stage's ``fields`` of ``vehicle``'s hash, by field (those it has), in one
        round trip."""
        self._live_fields(fields)
        values = await self.redis.hmget(keys.vehicle(vehicle), list(fields))
        return {f: v for f, v in zip(fields, values, strict=True) if v is not None}
