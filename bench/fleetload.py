"""The load generator of ``bench/fleet.py``: devices at one fix a second, and pages watching.

One plain process (no async framework: one ``epoll`` loop over non-blocking sockets, so it
costs a small share of what the gateway spends on the same traffic). It speaks just enough
of RFC 6455: client frames masked with an all-zero key (which the RFC allows and which
leaves the payload as is), server frames read whole, pings answered.

Two roles, one per process (``bench/fleet.py`` starts as many as it wants):

* ``devices``: every device has its own WebSocket to the ingest port of its gateway process
  and sends one position a second, the devices spread evenly over the second, each fix
  stamped with the time it is sent and driving a straight line at 10 m/s. Acks are read;
  the ack latency of each position is the time from its send to the first ack covering it.
* ``pages``: customer tracking streams (``/v1/track/<token>/live``, each following its own
  van) and ops streams (``/v1/ops/live``, the whole fleet). For every vehicle position a page
  receives, the page latency is the receive time minus the fix time; for ops pages also the
  gap between two updates.

Figures are taken between ``start_at + warmup`` and ``start_at + duration``; the process then
writes one JSON object to ``out`` (counts, CPU seconds) and the raw latencies beside it as
float32 arrays (``<out>.<name>.f32``), which ``bench/fleet.py`` merges.

Usage: python bench/fleetload.py <config.json>
"""

from __future__ import annotations

import errno
import json
import math
import resource
import select
import socket
import struct
import sys
import time
from array import array
from collections import deque
from typing import Any

import msgspec
from wsload import upgrade_request, ws_frame  # this folder: the script's own

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
SPEED_MPS = 10.0
DEG_PER_M = 1 / 111_320.0


class Frag(msgspec.Struct):
    id: str = ""
    ts: float = 0.0


class OpsMessage(msgspec.Struct):
    type: str
    vehicles: list[Frag] = []


class ViewVehicle(msgspec.Struct):
    ts: float = 0.0


class View(msgspec.Struct):
    vehicle: ViewVehicle | None = None


class ViewMessage(msgspec.Struct):
    type: str
    view: View | None = None


_ops_dec = msgspec.json.Decoder(OpsMessage)
_view_dec = msgspec.json.Decoder(ViewMessage)


class Conn:
    """One WebSocket: its socket, what is left to send, what was received and not parsed."""

    __slots__ = ("closed", "fd", "handshaken", "inbuf", "index", "kind", "out", "sock")

    def __init__(self, kind: str, sock: socket.socket, index: int) -> None:
        self.kind = kind
        self.sock = sock
        self.fd = sock.fileno()
        self.out = b""
        self.inbuf = bytearray()
        self.closed = False
        self.index = index
        self.handshaken = False

    def frames(self) -> list[tuple[int, bytes]]:
        """Whole server frames in ``inbuf`` (opcode, payload), taken out of it."""
        out = []
        buf = self.inbuf
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = struct.unpack_from("!H", buf, pos + 2)[0]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if end - pos < head + n:
                break
            out.append((b0 & 0x0F, bytes(buf[pos + head : pos + head + n])))
            pos += head + n
        if pos:
            del buf[:pos]
        return out


class Loop:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.t_from = cfg["start_at"] + cfg["warmup"]
        self.t_to = cfg["start_at"] + cfg["duration"]
        self.lat: dict[str, array[float]] = {}
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []

    def add(self, kind: str, host: str, port: int, path: str, token: str | None, i: int) -> Conn:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        c = Conn(kind, s, i)
        c.out = upgrade_request(host, port, path, token)
        self.conns[c.fd] = c
        self.ep.register(c.fd, EPOLLIN | EPOLLOUT)
        return c

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def record(self, name: str, value: float, now: float) -> None:
        if self.t_from <= now < self.t_to:
            a = self.lat.get(name)
            if a is None:
                a = self.lat[name] = array("f")
            a.append(value)

    def send(self, c: Conn, data: bytes) -> None:
        if c.closed:
            return
        if c.out:
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.lost(c, exc)
            return
        if n < len(data):
            c.out = data[n:]
            self.ep.modify(c.fd, EPOLLIN | EPOLLOUT)

    def flush(self, c: Conn) -> None:
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lost(c, exc)
            return
        c.out = c.out[n:]
        if not c.out:
            self.ep.modify(c.fd, EPOLLIN)

    def lost(self, c: Conn, why: object) -> None:
        if c.closed:
            return
        c.closed = True
        self.count(f"{c.kind}_closed")
        if len(self.errors) < 20:
            self.errors.append(f"{c.kind} {c.index}: {why}")
        try:
            self.ep.unregister(c.fd)
        except OSError:
            pass
        c.sock.close()

    def readable(self, c: Conn, now: float) -> None:
        try:
            data = c.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lost(c, exc)
            return
        if not data:
            self.lost(c, "closed by the gateway")
            return
        c.inbuf += data
        if not c.handshaken:
            end = c.inbuf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not c.inbuf.startswith(b"HTTP/1.1 101"):
                self.lost(c, bytes(c.inbuf[:200]))
                return
            c.handshaken = True
            self.count(f"{c.kind}_connected")
            del c.inbuf[: end + 4]
        for opcode, payload in c.frames():
            if opcode == 0x9:
                self.send(c, ws_frame(payload, False, 0xA))
            elif opcode == 0x8:
                self.lost(c, f"close frame {payload[:2].hex()} {payload[2:80]!r}")
                return
            elif opcode in (0x1, 0x2):
                self.message(c, payload, now)

    def message(self, c: Conn, payload: bytes, now: float) -> None:
        raise NotImplementedError

    def run(self) -> dict[str, Any]:
        raise NotImplementedError

    def poll(self, timeout: float) -> None:
        now = 0.0
        for fd, ev in self.ep.poll(timeout, 4096):
            c = self.conns.get(fd)
            if c is None or c.closed:
                continue
            if ev & EPOLLOUT and c.out:
                self.flush(c)
            if ev & (EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                now = time.time()
                self.readable(c, now)

    def result(self) -> dict[str, Any]:
        out = self.cfg["out"]
        for name, a in self.lat.items():
            with open(f"{out}.{name}.f32", "wb") as f:
                a.tofile(f)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "counts": self.counts,
            "series": sorted(self.lat),
            "cpu_s": ru.ru_utime + ru.ru_stime,
            "errors": self.errors,
        }


class Devices(Loop):
    """Devices at one fix a second over their own WebSockets."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.devs: list[Conn] = []
        self.sent: list[deque[tuple[int, float]]] = []
        self.seq: list[int] = []
        self.acked: list[int] = []
        self.pos: list[tuple[float, float, float, float]] = []

    def message(self, c: Conn, payload: bytes, now: float) -> None:
        at = payload.find(b'"seq":')
        if at < 0 or not payload.startswith(b'{"type":"ack"'):
            self.count("device_other_messages")
            return
        end = at + 6
        while payload[end] in b"0123456789":
            end += 1
        seq = int(payload[at + 6 : end])
        if payload.find(b'"rejected":[]') < 0:
            self.count("device_rejections")
        i = c.index
        if seq > self.acked[i]:
            self.acked[i] = seq
        q = self.sent[i]
        while q and q[0][0] <= seq:
            _, t = q.popleft()
            self.record("ack_ms", (now - t) * 1000.0, now)
            self.count("acked")

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        for i, (_vehicle, token, target, lat, lon, heading) in enumerate(cfg["devices"]):
            t = cfg["targets"][target]
            self.devs.append(
                self.add("device", t["host"], t["ingest_port"], "/v1/ingest", token, i)
            )
            self.sent.append(deque())
            self.seq.append(0)
            self.acked.append(0)
            self.pos.append((lat, lon, heading, 0.0))
            if i % 200 == 199:  # pace the handshakes: a listen backlog is finite
                self.poll(0.02)
        n = len(self.devs)
        start = cfg["start_at"]
        while time.time() < start:
            self.poll(min(0.05, max(0.0, start - time.time())))
        period = 1.0 / cfg.get("rate_hz", 1.0)
        nxt = 0  # devices sent in the current second, in index order
        second = start
        end = self.t_to
        while True:
            now = time.time()
            if now >= end:
                break
            # Device i sends at second + i / n * period.
            due = min(n, int((now - second) / period * n) + 1)
            while nxt < due:
                self.fix(nxt, now)
                nxt += 1
            if nxt >= n:
                nxt = 0
                second += period
            wait = second + (nxt / n) * period - time.time()
            self.poll(max(0.0, min(wait, 0.01)))
        # A moment for the last acks.
        deadline = time.time() + cfg.get("drain_s", 3.0)
        while time.time() < deadline and any(self.sent):
            self.poll(0.05)
        out = self.result()
        out["sent_in_window"] = self.counts.get("sent_in_window", 0)
        out["acked_seq"] = self.acked
        out["unacked"] = sum(len(q) for q in self.sent)
        return out

    def fix(self, i: int, now: float) -> None:
        c = self.devs[i]
        if c.closed or not c.handshaken:
            self.count("sends_skipped")
            return
        lat, lon, heading, _ = self.pos[i]
        seq = self.seq[i] = self.seq[i] + 1
        rad = heading * 0.017453292519943295
        lat += math.cos(rad) * SPEED_MPS * DEG_PER_M
        lon += math.sin(rad) * SPEED_MPS * DEG_PER_M / max(0.2, math.cos(lat * 0.0174533))
        self.pos[i] = (lat, lon, heading, now)
        frame = (
            b'{"seq":%d,"ts":%.3f,"lat":%.6f,"lon":%.6f,"speed":10.0,"heading":%.1f,'
            b'"accuracy":5.0}' % (seq, now, lat, lon, heading)
        )
        self.sent[i].append((seq, now))
        self.send(c, ws_frame(frame, False))
        self.count("sent")
        if self.t_from <= now < self.t_to:
            self.count("sent_in_window")


class Pages(Loop):
    """Customer tracking streams and ops streams."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.last_update: dict[int, float] = {}
        self.seen: dict[int, int] = {}

    def message(self, c: Conn, payload: bytes, now: float) -> None:
        if c.kind == "ops":
            try:
                m = _ops_dec.decode(payload)
            except msgspec.DecodeError:
                self.count("ops_undecodable")
                return
            if m.type == "snapshot":
                self.count("ops_snapshots")
            if not m.vehicles:
                return
            prev = self.last_update.get(c.fd)
            if prev is not None:
                self.record("ops_gap_ms", (now - prev) * 1000.0, now)
            self.last_update[c.fd] = now
            if m.type == "snapshot" and prev is None:
                return  # the first picture: ages of whatever the fleet last sent
            for f in m.vehicles:
                if f.ts > 0:
                    self.record("ops_ms", (now - f.ts) * 1000.0, now)
            if self.t_from <= now < self.t_to:
                self.count("ops_positions", len(m.vehicles))
        else:
            try:
                v = _view_dec.decode(payload)
            except msgspec.DecodeError:
                self.count("customer_undecodable")
                return
            vehicle = v.view.vehicle if v.view is not None else None
            if vehicle is None:
                self.count("customer_views_without_vehicle")
                return
            self.record("customer_ms", (now - vehicle.ts) * 1000.0, now)
            if self.t_from <= now < self.t_to:
                self.count("customer_positions")

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        for i, (token, target) in enumerate(cfg["customers"]):
            t = cfg["targets"][target]
            self.add("customer", t["host"], t["http_port"], f"/v1/track/{token}/live", None, i)
            if i % 100 == 99:
                self.poll(0.02)
        for i, target in enumerate(cfg["ops"]):
            t = cfg["targets"][target]
            self.add("ops", t["host"], t["http_port"], f"/v1/ops/live?key={cfg['key']}", None, i)
            self.poll(0.02)  # each ops page starts with a snapshot of the whole fleet
        end = self.t_to
        while time.time() < end:
            self.poll(0.05)
        return self.result()


def main() -> None:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop: Loop = Devices(cfg) if cfg["role"] == "devices" else Pages(cfg)
    try:
        out = loop.run()
    except OSError as exc:
        if exc.errno == errno.EMFILE:
            raise SystemExit(
                f"out of file descriptors at {len(loop.conns)}: raise ulimit -n"
            ) from exc
        raise
    with open(cfg["out"], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
