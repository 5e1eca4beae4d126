"""Completing a delivery with its proof is all or nothing: a process killed at any step
leaves either the delivery as it was with no proof, or the delivery delivered with its proof,
its events and its files. Each case runs ``Proofs.complete`` in a child process that exits
hard (``os._exit``, no cleanup) right after the step, then looks at Redis and the disk."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import coredis
import pytest

from gateway.core import keys
from gateway.core.events import EventLog
from gateway.customer.pod import STAGING_PREFIX, Proofs, _sweep_staged
from gateway.dispatch.records import delivery_id, route_id
from gateway.dispatch.service import Dispatch
from gateway.dispatch.store import DispatchStore
from tests.gateway.dispatch.test_validate import T0, batch, route_payload

ROOT = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent(
    """
    import os, sys
    import coredis, trio
    import gateway.customer.pod as pod
    from gateway.core.events import EventLog
    from gateway.dispatch.service import Dispatch
    from gateway.dispatch.store import DispatchStore

    url, data_dir, delivery, step = sys.argv[1:5]

    def die_after(fn):
        def wrapped(*args):
            fn(*args)
            os._exit(9)
        return wrapped

    if step == "staged":
        pod._stage = die_after(pod._stage)
    elif step == "placed":
        pod._commit = die_after(pod._commit)

    async def main():
        async with coredis.Redis.from_url(url) as redis:
            dispatch = Dispatch(DispatchStore(redis, EventLog(redis, 10_000)))
            if step == "stored":
                real = dispatch.set_status
                async def set_status(*args, **kwargs):
                    await real(*args, **kwargs)
                    os._exit(9)
                dispatch.set_status = set_status
            proofs = pod.Proofs(pod.Path(data_dir), redis, dispatch)
            photo = bytes.fromhex(
                "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a2bd7d82"
                "0000000049454e44ae426082"
            )
            await proofs.complete(
                delivery, "agent", [("photo", "png", photo)], name="Ada", notes="",
                position=None, ts=1.7e9,
            )
        os._exit(0)

    trio.run(main)
    """
)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(redis_url) as r:
        await r.sadd(keys.VEHICLES, ["van-1"])
        yield r


async def started_delivery(redis: coredis.Redis[bytes], ext: str) -> str:
    dispatch = Dispatch(DispatchStore(redis, EventLog(redis, 10_000)))
    await dispatch.import_routes(batch(route_payload(ext)), T0)
    await dispatch.start(route_id(ext), T0 + 1)
    return delivery_id(f"{ext}-D0")


def run_child(redis_url: str, data_dir: Path, delivery: str, step: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, redis_url, str(data_dir), delivery, step],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 9), done.stderr
    return done.returncode


@pytest.mark.parametrize("step", ["staged", "placed", "stored", "finished"])
async def test_a_proof_is_all_or_nothing_wherever_the_process_dies(
    redis: coredis.Redis[bytes], redis_url: str, tmp_path: Path, step: str
) -> None:
    delivery = await started_delivery(redis, f"K{step}")
    code = run_child(redis_url, tmp_path, delivery, step)
    assert code == (0 if step == "finished" else 9)

    dispatch = Dispatch(DispatchStore(redis, EventLog(redis, 10_000)))
    proofs = Proofs(tmp_path, redis, dispatch)
    record = await dispatch.store.get_delivery(delivery)
    assert record is not None
    proof = await proofs.load(delivery)
    events = [
        e["type"]
        for e in await EventLog(redis, 10_000).read("-", 1000)
        if e.get("delivery") == delivery
    ]
    if step in ("staged", "placed"):
        assert record.status == "out_for_delivery"
        assert proof is None
        assert "delivery.pod" not in events and "delivery.delivered" not in events
    else:
        assert record.status == "delivered"
        assert proof is not None and proof.recipient_name == "Ada"
        assert events[-2:] == ["delivery.delivered", "delivery.pod"]
        for f in proof.files:  # every file the proof names is there
            found = await proofs.file(delivery, f.sha256)
            assert found is not None and found[0].is_file()

    # What a killed upload staged is deleted at the next start (here: whatever its age).
    _sweep_staged(proofs.root, older_than_s=0.0)
    assert not list(proofs.root.glob(STAGING_PREFIX + "*"))


async def test_a_refused_completion_leaves_no_files(
    redis: coredis.Redis[bytes], tmp_path: Path
) -> None:
    delivery = await started_delivery(redis, "Kref")
    dispatch = Dispatch(DispatchStore(redis, EventLog(redis, 10_000)))
    await dispatch.set_status(delivery, "cancelled", now=T0 + 2)
    proofs = Proofs(tmp_path, redis, dispatch)
    with pytest.raises(Exception, match="cancelled"):
        await proofs.complete(
            delivery, "agent", [("photo", "png", b"\x89PNG-not-checked-here")],
            name="Ada", notes="", position=None, ts=T0 + 3,
        )  # fmt: skip
    assert await proofs.load(delivery) is None
    assert not files_under(tmp_path)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]
