"""Phone and email validation."""

from __future__ import annotations

import pytest

from notify.errors import InvalidAddress
from notify.validation import validate_email, validate_phone


@pytest.mark.parametrize("number", ["+447700900123", "+15005550006", "+3361234567"])
def test_valid_phones(number: str) -> None:
    assert validate_phone(number) == number


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("", "empty"),
        ("447700900123", "starting with '+'"),
        ("+44 7700 900123", "only digits"),
        ("+0447700900", "cannot start with 0"),
        ("+1234567", "8 to 15 digits"),
        ("+1234567890123456", "8 to 15 digits"),
        ("+٤٤٧٧٠٠٩٠٠١٢٣", "only digits"),
    ],
)
def test_invalid_phones(number: str, why: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        validate_phone(number)
    assert why in info.value.reason


def test_valid_email_domain_is_lowercased() -> None:
    assert validate_email("Ana.B+parcels@Example.COM") == "Ana.B+parcels@example.com"
    assert validate_email("x@bücher.example") == "x@bücher.example"


@pytest.mark.parametrize(
    "address",
    ["", "ana", "ana@", "@example.com", "ana@localhost", "ana b@example.com", "a..b@example.com",
     "Ana <ana@example.com>", "ana@-bad.example", "ana@example.123", "a" * 65 + "@example.com"],
)  # fmt: skip
def test_invalid_emails(address: str) -> None:
    with pytest.raises(InvalidAddress):
        validate_email(address)
