"""Worst-case cost of decoding one device frame, against valid frames in the same run.

Every frame here is at most ``MAX_FRAME_BYTES`` (1 MiB) and goes through
``gateway.ingest.wire.decode_frame`` with the default batch limit (10,000 positions), as the
WebSocket, HTTP and MQTT ingest call it. The baselines are valid batches of 10,000
positions; the hostile frames are the most expensive shapes found: items that fail the
strict decode and need the loose one and a look at their ``seq``, deep nesting, a header
claiming a huge array, a million tiny items, long escaped strings, long numbers.

Prints, for each frame, its size, the time to decode it (best of ``--repeat``) and the cost
per byte, and each one's cost per byte as a ratio to the valid JSON batch's; the last line
is one JSON object with the figures.
Run: ``.venv/bin/python bench/decode.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import msgspec  # noqa: E402

from gateway.ingest.wire import MalformedFrame, decode_frame  # noqa: E402

MAX_FRAME_BYTES = 2**20
N = 10_000


def pos(i: int, **kw: object) -> dict[str, object]:
    return {"seq": i + 1, "ts": 1.7e9 + i, "lat": 52.37 + i * 1e-6, "lon": 4.89, "speed": 8.5,
            **kw}  # fmt: skip


def frames() -> dict[str, bytes | str]:
    mp = msgspec.msgpack.encode
    out: dict[str, bytes | str] = {
        "valid json batch": json.dumps([pos(i) for i in range(N)]),
        "valid msgpack batch": mp([pos(i) for i in range(N)]),
        "json out of range (strict+loose)": json.dumps([pos(i, lat=91.0) for i in range(N)]),
        "json bad type (3 decodes)": json.dumps([pos(i, ts="noon") for i in range(N)]),
        "msgpack bad type (3 decodes)": mp([pos(i, ts="noon") for i in range(N)]),
        "json minimal bad items": "[" + ",".join(['{"seq":"x"}'] * N) + "]",
        "json zeros (500k items)": "[" + ",".join(["0"] * 500_000) + "]",
        "msgpack nils (1M items)": b"\xdd" + (2**20 - 5).to_bytes(4, "big") + b"\xc0" * (2**20 - 5),
        "msgpack huge header": b"\xdd\xff\xff\xff\xff" + b"\xc0" * 1000,
        "json nested 1000": "[" * 1000 + "]" * 1000,
        "json nested 500k": "[" * 500_000 + "]" * 500_000,
        "msgpack nested 1M": b"\x91" * (2**20 - 1) + b"\xc0",
        "json escaped string": json.dumps(pos(0, note="\u0001" * 170_000)),
        "json long numbers": json.dumps([pos(i) for i in range(N)]).replace(
            "4.89", "4.890000000000000000001"
        ),
        "json unknown deep fields": "["
        + ",".join(json.dumps(pos(i))[:-1] + ',"x":' + "[" * 8 + "]" * 8 + "}" for i in range(N))
        + "]",
    }
    for name, data in out.items():
        size = len(data.encode() if isinstance(data, str) else data)
        assert size <= MAX_FRAME_BYTES, (name, size)
    return out


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for name, data in frames().items():

        def run(data: bytes | str = data) -> str:
            try:
                good, bad = decode_frame(data)
            except MalformedFrame as exc:
                return exc.reason
            return f"{len(good)} ok, {len(bad)} rejected"

        outcome = run()
        seconds = best(run, args.repeat)
        size = len(data.encode() if isinstance(data, str) else data)
        rows.append((name, size, seconds, outcome))
    base = rows[0][2] / rows[0][1]
    print(f"{'frame':36} {'bytes':>9} {'ms':>8} {'ns/byte':>8} {'x valid':>8}  outcome")
    for name, size, seconds, outcome in rows:
        per_byte = seconds / size
        print(f"{name:36} {size:9,} {seconds * 1e3:8.2f} {per_byte * 1e9:8.1f} "
              f"{per_byte / base:8.2f}  {outcome}")  # fmt: skip
    worst = max(rows, key=lambda r: r[2] / r[1])
    slowest = max(rows, key=lambda r: r[2])
    print(
        json.dumps(
            {
                "valid_json_ns_per_byte": round(base * 1e9, 2),
                "valid_msgpack_ns_per_byte": round(rows[1][2] / rows[1][1] * 1e9, 2),
                "worst_frame": worst[0],
                "worst_us_per_byte": round(worst[2] / worst[1] * 1e6, 4),
                "worst_over_valid_json": round(worst[2] / worst[1] / base, 2),
                "slowest_frame": slowest[0],
                "slowest_frame_ms": round(slowest[2] * 1e3, 2),
                "frames": {r[0]: round(r[2] * 1e3, 3) for r in rows},
            }
        )
    )


if __name__ == "__main__":
    main()
