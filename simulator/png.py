"""Tiny PNG images for proofs of delivery: an encoder on zlib and struct, and two pictures.

:func:`encode_png` writes 8-bit RGB pixels as a PNG (signature, IHDR, one IDAT, IEND, each
chunk with its CRC). :func:`delivery_photo` is a parcel on a doorstep, its colours and
placement derived from a seed (the delivery's id), so each delivery gets its own picture;
:func:`signature_image` is a dark scribble on white, also varying with the seed.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from collections.abc import Sequence
from typing import Final

SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
PHOTO_SIZE: Final = (64, 48)
SIGNATURE_SIZE: Final = (96, 32)

Pixel = tuple[int, int, int]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, pixels: Sequence[Sequence[Pixel]]) -> bytes:
    """A PNG of ``height`` rows of ``width`` RGB pixels (0-255 per channel)."""
    if width < 1 or height < 1:
        raise ValueError("a PNG needs at least one pixel")
    if len(pixels) != height or any(len(row) != width for row in pixels):
        raise ValueError(f"expected {height} rows of {width} pixels")
    raw = bytearray()
    for row in pixels:
        raw.append(0)  # filter type: none
        for r, g, b in row:
            raw += bytes((r, g, b))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + _chunk(b"IEND", b"")
    )


def _canvas(width: int, height: int, colour: Pixel) -> list[list[Pixel]]:
    return [[colour] * width for _ in range(height)]


def delivery_photo(seed: str, size: tuple[int, int] = PHOTO_SIZE) -> bytes:
    """A parcel in front of a door, different for each ``seed``."""
    width, height = size
    rng = random.Random(f"photo:{seed}")
    wall = (rng.randrange(150, 230), rng.randrange(120, 200), rng.randrange(90, 170))
    door = (rng.randrange(20, 120), rng.randrange(40, 140), rng.randrange(60, 180))
    ground = (110, 110, 105)
    parcel = (196, 150, 98)
    tape = (230, 210, 160)
    shade = (wall[0] - 18, wall[1] - 18, wall[2] - 18)
    img = _canvas(width, height, wall)
    floor = height * 3 // 4
    door_x = rng.randrange(width // 8, width // 2)
    door_w = max(4, width // 4)
    bx0 = rng.randrange(width // 2, max(width // 2 + 1, width - width // 4))
    bw, bh = max(4, width // 5), max(3, height // 5)
    for y in range(height):
        row = img[y]
        for x in range(width):
            if y >= floor:
                row[x] = ground
            elif door_x <= x < door_x + door_w and y >= height // 6:
                row[x] = door
            # a soft stripe pattern on the wall so no two photos compress alike
            elif (x + y + rng.randrange(3)) % 11 == 0:
                row[x] = shade
    top = floor - bh + bh // 3
    for y in range(max(0, top), min(height, top + bh)):
        for x in range(bx0, min(width, bx0 + bw)):
            img[y][x] = tape if x == bx0 + bw // 2 else parcel
    return encode_png(width, height, img)


def signature_image(seed: str, size: tuple[int, int] = SIGNATURE_SIZE) -> bytes:
    """A scribbled signature: one ink line across a white pad, different for each ``seed``."""
    width, height = size
    rng = random.Random(f"signature:{seed}")
    img = _canvas(width, height, (255, 255, 255))
    ink = (20, 30, rng.randrange(60, 140))
    waves = [(rng.uniform(0.1, 0.5), rng.uniform(0.15, 0.35), rng.uniform(0, math.tau))
             for _ in range(3)]  # fmt: skip
    margin = width // 10
    prev: tuple[int, int] | None = None
    for x in range(margin, width - margin):
        wobble = sum(a * math.sin(f * x + p) for f, a, p in waves)
        y = int(height / 2 + wobble * height / 2)
        y = min(height - 2, max(1, y))
        if prev is not None:
            lo, hi = sorted((prev[1], y))
            for yy in range(lo, hi + 1):  # join the samples into one unbroken stroke
                img[yy][x] = ink
        img[y][x] = ink
        img[y + 1][x] = ink
        prev = (x, y)
    return encode_png(width, height, img)
