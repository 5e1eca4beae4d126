"""Proof of delivery: photos, a signature, who received it, where and when.

``check_image`` decides whether bytes are an image the gateway keeps. ``Proofs`` completes a
delivery with its proof: files end up under ``DATA_DIR/pod/<delivery>/`` named by their
SHA-256, the record in Redis at ``pod:{dispatch}:<delivery>``. A geo-stamp farther than
``POD_MAX_DISTANCE_M`` from the stop is accepted but flagged for agents
(``delivery.pod_flagged``). A refused or failed completion leaves nothing on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Final

import msgspec
import trio
from PIL import Image

from gateway.core.events import event
from gateway.core.keys import pod_key
from gateway.customer.pod_models import POD_MAX_DISTANCE_M, FileKind, ImageType, Pod, PodFile
from gateway.dispatch.lifecycle import DELIVERED
from gateway.dispatch.service import Dispatch
from gateway.dispatch.store import NotFound
from geofence import haversine_m
from notify.redis_client import RedisClient

# A phone photo is 12 megapixels; decoding 25 takes up to 100 MB (4 bytes a pixel).
MAX_IMAGE_PIXELS: Final = 25_000_000
STAGING_PREFIX: Final = ".upload-"
STAGED_KEPT_S: Final = 3600.0  # a staged file older than this is left from a killed process

# Pillow's format name -> the type stored and served. A JPEG with several pictures in it
# (phones' MPO) is a JPEG to any viewer.
IMAGE_TYPES: Final[dict[str, ImageType]] = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png"}
# What Pillow's decoders raise for bytes that are not a well-formed image of their format.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

_json: Final = msgspec.json.Encoder()


class BadImage(Exception):
    """Bytes that are not an image the gateway keeps; the message says why."""


class TooManyPixels(BadImage):
    """An image larger than the gateway decodes."""


def check_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageType:
    """``"jpeg"`` or ``"png"``: the type of ``data`` once all its pixels have decoded.

    BadImage if it is another format, is not an image at all, or does not decode to its end;
    TooManyPixels if it has more than ``max_pixels`` (known from its header, before any pixel
    is decoded)."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise TooManyPixels(f"has {width} x {height} pixels, more than {max_pixels}")
            im.load()
            return IMAGE_TYPES[im.format or ""]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bound (above ours), met while it reads the header; the warning is
        # raised only where warnings are errors.
        raise TooManyPixels(f"has more than {max_pixels} pixels") from None
    except _DECODE_ERRORS:
        raise BadImage("is not a complete JPEG or PNG image") from None


# ----- files on disk (blocking; run in worker threads)


def _stage(root: Path, contents: list[bytes], staged: list[Path]) -> None:
    """Write each of ``contents`` to a new temporary file in ``root``, appending its path to
    ``staged`` as soon as it exists (so a failure part-way leaves nothing unaccounted)."""
    root.mkdir(parents=True, exist_ok=True)
    for data in contents:
        fd, name = tempfile.mkstemp(dir=root, prefix=STAGING_PREFIX, suffix=".part")
        staged.append(Path(name))
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def _commit(moves: list[tuple[Path, Path]], placed: list[Path]) -> None:
    """Move each staged file to its final name, appending to ``placed`` each final file
    that did not exist before (the same content when one did: it is named by its hash)."""
    for staged, final in moves:
        final.parent.mkdir(parents=True, exist_ok=True)
        existed = final.exists()
        staged.replace(final)
        if not existed:
            placed.append(final)


def _sweep_staged(root: Path, older_than_s: float = STAGED_KEPT_S) -> None:
    """Delete staged files older than ``older_than_s`` (another process sharing the folder
    may be staging now)."""
    cutoff = time.time() - older_than_s
    for path in root.glob(STAGING_PREFIX + "*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _discard(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class Proofs:
    """Proofs of delivery: the records in Redis, the files under ``data_dir/pod``.

    ``complete`` is the one way a delivery is completed with a proof. Its files are written
    to temporary files, then moved into the delivery's folder (named by their hash); then
    one transaction marks the delivery delivered, stores the proof and appends the events
    (``delivery.delivered``, ``delivery.pod``, ``delivery.pod_flagged``). A process killed
    before that transaction leaves the delivery as it was and no proof: at most files no
    record names (staged ones are deleted at the next start, ``sweep``); killed after it,
    everything is there.
    """

    def __init__(self, data_dir: Path, redis: RedisClient[bytes], dispatch: Dispatch) -> None:
        self.root = data_dir / "pod"
        self.redis = redis
        self.dispatch = dispatch

    async def load(self, delivery_id: str) -> Pod | None:
        raw = await self.redis.get(pod_key(delivery_id))
        return None if raw is None else msgspec.json.decode(raw, type=Pod)

    def folder(self, delivery_id: str) -> Path:
        return self.root / delivery_id

    async def file(self, delivery_id: str, sha: str) -> tuple[Path, PodFile] | None:
        """Where the proof's file ``sha`` is, and what it is; None if it has no such file."""
        pod = await self.load(delivery_id)
        match = None if pod is None else next((f for f in pod.files if f.sha256 == sha), None)
        if match is None:
            return None
        return self.folder(delivery_id) / f"{match.sha256}.{match.type}", match

    async def sweep(self) -> None:
        """Delete the staged files a process killed during an upload left behind."""
        await trio.to_thread.run_sync(_sweep_staged, self.root)

    async def complete(
        self,
        delivery_id: str,
        by: str,
        uploads: list[tuple[FileKind, ImageType, bytes]],
        *,
        name: str,
        notes: str,
        position: tuple[float, float] | None,
        ts: float,
    ) -> Pod:
        """Complete ``delivery_id`` with this proof (``uploads``: checked images).
        IllegalTransition if its status does not allow it; NotFound if it is gone."""
        stored = [
            PodFile(hashlib.sha256(data).hexdigest(), kind, itype, len(data))
            for kind, itype, data in uploads
        ]
        d = await self.dispatch.store.get_delivery(delivery_id)
        if d is None:
            raise NotFound(delivery_id)
        distance = None
        if position is not None:
            distance = haversine_m(*position, d.location.lat, d.location.lon)
        flagged = distance is not None and distance > POD_MAX_DISTANCE_M
        lat, lon = (None, None) if position is None else position
        pod = Pod(delivery_id, stored, name, notes, lat, lon, ts, distance, flagged, by)
        data = {"files": len(stored), "distance_m": distance, "recipient_name": name, "by": by}
        where = {"route": d.route, "stop": d.stop, "delivery": delivery_id}
        events = [event("delivery.pod", ts, **where, data=data)]
        if flagged:
            limits = {"distance_m": distance, "limit_m": POD_MAX_DISTANCE_M}
            events.append(event("delivery.pod_flagged", ts, **where, data=limits))
        folder = self.folder(delivery_id)
        finals = [folder / f"{f.sha256}.{f.type}" for f in stored]
        staged: list[Path] = []
        placed: list[Path] = []
        done = False
        try:
            # Written before the delivery changes (a full disk refuses the proof), in place
            # before the transaction that names them.
            await trio.to_thread.run_sync(_stage, self.root, [u[2] for u in uploads], staged)
            moves = list(zip(staged, finals, strict=True))
            await trio.to_thread.run_sync(_commit, moves, placed)
            await self.dispatch.set_status(
                delivery_id,
                DELIVERED,
                note=notes or None,
                records={pod_key(delivery_id): _json.encode(pod)},
                events=events,
            )
            done = True
        finally:
            if not done:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_discard, staged + placed)
        return pod
