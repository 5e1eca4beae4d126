"""SMS segment counting and truncation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notify.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    count_segments,
    segment_info,
    truncate_sms,
)


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("é" * 160, "GSM-7", 160, 1),  # in the GSM basic set
        ("ł" * 70, "UCS-2", 70, 1),
        ("ł" * 71, "UCS-2", 71, 2),
        ("ł" * 134, "UCS-2", 134, 2),
        ("ł" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # outside the BMP: a surrogate pair each
    ],
)
def test_segment_counts(text: str, encoding: str, units: int, segments: int) -> None:
    info = segment_info(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


def test_two_septet_character_is_not_split_across_segments() -> None:
    # 152 plain septets then "€": 154 septets would fit two segments by division, but the
    # escape pair can not straddle the 153-septet boundary.
    assert count_segments("a" * 152 + "€" + "a" * 152) == 3
    assert count_segments("a" * 151 + "€" + "a" * 153) == 2


def test_one_non_gsm_character_switches_the_whole_message_to_ucs2() -> None:
    assert count_segments("a" * 100) == 1
    assert count_segments("a" * 100 + "\u2019") == 2  # typographic apostrophe


def test_truncation_keeps_the_trailing_link_whole() -> None:
    link = "https://track.example/t/abcdefghijklmnopqrstuvwxyz0123456789"
    text = "Your parcel " + "is on its way " * 40 + link
    cut = truncate_sms(text, 1)
    assert count_segments(cut) == 1
    assert cut.endswith("... " + link)
    assert cut.startswith("Your parcel is on its way")
    assert " way..." in cut or " its..." in cut or " on..." in cut or " is..." in cut


def test_short_text_is_untouched() -> None:
    assert truncate_sms("Hello", 1) == "Hello"


@given(st.text(alphabet=[*sorted(GSM7_BASIC | GSM7_EXTENSION), "ł", "😀"], max_size=800),
       st.integers(min_value=1, max_value=4))  # fmt: skip
def test_truncation_always_fits(text: str, max_segments: int) -> None:
    cut = truncate_sms(text, max_segments)
    assert count_segments(cut) <= max_segments
    if count_segments(text) <= max_segments:
        assert cut == text
