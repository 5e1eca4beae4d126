"""The PNG encoder writes files any decoder reads: signature, IHDR, CRCs, IDAT size."""

import struct
import zlib

import pytest

from simulator.png import SIGNATURE_SIZE, delivery_photo, encode_png, signature_image


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        out.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return out


def _decode(data: bytes) -> tuple[int, int, bytes]:
    chunks = _chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filt, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, colour, compression, filt, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    return width, height, raw


def test_encoded_pixels_come_back() -> None:
    pixels = [[(x * 40, y * 80, 7) for x in range(5)] for y in range(3)]
    width, height, raw = _decode(encode_png(5, 3, pixels))
    assert (width, height) == (5, 3)
    assert len(raw) == height * (1 + width * 3)
    rows = [raw[y * 16 : (y + 1) * 16] for y in range(3)]
    assert all(r[0] == 0 for r in rows)  # no filter
    assert rows[2][1 + 3 * 4 : 1 + 3 * 5] == bytes((160, 160, 7))


def test_photo_is_a_64_by_48_png_that_varies_per_delivery() -> None:
    photo = delivery_photo("van-001-r1-1-S01-1")
    width, height, raw = _decode(photo)
    assert (width, height) == (64, 48)
    assert len(raw) == 48 * (1 + 64 * 3)
    assert len(set(raw[1:])) > 4  # a picture, not a flat colour
    assert photo == delivery_photo("van-001-r1-1-S01-1")
    assert photo != delivery_photo("van-001-r1-1-S02-1")


def test_signature_is_a_line_of_ink_on_white() -> None:
    sig = signature_image("van-001-r1-1-S01-1")
    width, height, raw = _decode(sig)
    assert (width, height) == SIGNATURE_SIZE
    assert len(raw) == height * (1 + width * 3)
    stride = 1 + width * 3
    inked = {
        x
        for y in range(height)
        for x in range(width)
        if raw[y * stride + 1 + 3 * x] < 128  # red channel: ink is dark
    }
    # One unbroken stroke across the middle 80% of the pad, white margins either side.
    assert inked == set(range(width // 10, width - width // 10))
    assert sig != signature_image("another")


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_png(0, 1, [[]])
    with pytest.raises(ValueError):
        encode_png(2, 1, [[(0, 0, 0)]])
