"""SMS length in segments, and truncation to a number of segments.

An SMS body is sent in GSM-7 when every character is in the GSM 03.38 alphabet, otherwise
in UCS-2. One segment holds 160 GSM-7 septets or 70 UCS-2 units; a concatenated message
loses room to its header, 153 and 67 per segment. Characters of the GSM extension table take
two septets, characters outside the Basic Multilingual Plane two UCS-2 units, and neither
is split across segments, which is why counting is done by packing, not by division.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

GSM7_SINGLE: Final = 160  # septets in a one-segment message
GSM7_MULTI: Final = 153  # septets per segment of a concatenated message
UCS2_SINGLE: Final = 70  # UTF-16 units in a one-segment message
UCS2_MULTI: Final = 67
ELLIPSIS: Final = "..."  # GSM-7 safe; "…" would force UCS-2

GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION: Final = frozenset("^{}\\[~]|€\f")

Encoding = Literal["GSM-7", "UCS-2"]

_TRAILING_URL: Final = re.compile(r"\s*(https?://\S+)\s*$")


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _unit_sizes(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def segment_info(text: str) -> SegmentInfo:
    """Encoding, length in units and number of segments of ``text`` (0 for empty)."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    sizes = _unit_sizes(text, encoding)
    units = sum(sizes)
    single, multi = (GSM7_SINGLE, GSM7_MULTI) if encoding == "GSM-7" else (UCS2_SINGLE, UCS2_MULTI)
    if units == 0:
        return SegmentInfo(encoding, 0, 0)
    if units <= single:
        return SegmentInfo(encoding, units, 1)
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments += 1
            used = 0
        used += size
    return SegmentInfo(encoding, units, segments)


def count_segments(text: str) -> int:
    return segment_info(text).segments


def truncate_sms(text: str, max_segments: int) -> str:
    """``text`` shortened to fit ``max_segments``, keeping a trailing link whole.

    The cut falls on a word boundary when one is near and is marked with "...". A link at
    the very end (the tracking link) is kept intact because a cut link is worse than none.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    if count_segments(text) <= max_segments:
        return text
    match = _TRAILING_URL.search(text)
    if match is not None and match.start() > 0:
        head, tail = text[: match.start()], " " + match.group(1)
        if count_segments(ELLIPSIS + tail) > max_segments:
            head, tail = text, ""
    else:
        head, tail = text, ""

    def fits(n: int) -> bool:
        return count_segments(head[:n].rstrip() + ELLIPSIS + tail) <= max_segments

    lo, hi = 0, len(head)  # fits(lo) holds (or nothing fits); find the largest n that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    cut = lo
    # Prefer ending on a whole word, unless that throws away more than a fifth of the text.
    space = head.rfind(" ", 0, cut + 1)
    if cut < len(head) and space > cut * 4 // 5:
        cut = space
    result = head[:cut].rstrip() + ELLIPSIS + tail
    while count_segments(result) > max_segments:
        # Only reached when nothing but a hard cut fits.
        result = result[:-1]
    return result
