"""Small HTTP helpers shared by the channels that speak HTTP."""

from __future__ import annotations

import email.utils
import time
from typing import Final

# A provider asking us to wait longer than this is treated as asking for this long: a
# message held for a day because of one header is worse than one more refusal.
MAX_RETRY_AFTER_S: Final = 3600.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
