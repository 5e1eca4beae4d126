"""Checks of recipient addresses, run when a delivery is created so bad ones are refused early.

Both functions return the normalised form to store and raise ``InvalidAddress`` with a reason.
They check syntax only: whether a number can receive SMS or a mailbox exists is learnt from
the provider at send time.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import InvalidAddress

# E.164: a "+", a country code not starting with 0, at most 15 digits in all. The shortest
# numbers in service (some small countries) have 8 digits with the country code.
E164_MIN_DIGITS: Final = 8
E164_MAX_DIGITS: Final = 15
EMAIL_MAX_LEN: Final = 254  # RFC 5321 path limit minus the angle brackets
EMAIL_LOCAL_MAX_LEN: Final = 64
DOMAIN_LABEL_MAX_LEN: Final = 63

_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_RE: Final = re.compile(rf"^{_ATOM}(\.{_ATOM})*$")
_LABEL_RE: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")


def validate_phone(number: str) -> str:
    """Return ``number`` if it is an E.164 phone number (``+`` and 8 to 15 digits).

    Spaces, dashes, dots and brackets people type are not accepted: the number must be
    stored in the one form the SMS provider and the inbound-message index use.
    """
    if not isinstance(number, str) or not number:
        raise InvalidAddress(str(number), "phone number is empty")
    if not number.startswith("+"):
        raise InvalidAddress(number, "phone number must be in E.164 form, starting with '+'")
    digits = number[1:]
    if not digits.isascii() or not digits.isdigit():
        raise InvalidAddress(number, "phone number may contain only digits after '+'")
    if digits.startswith("0"):
        raise InvalidAddress(number, "country code cannot start with 0")
    if not E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS:
        raise InvalidAddress(
            number, f"phone number must have {E164_MIN_DIGITS} to {E164_MAX_DIGITS} digits"
        )
    return number


def validate_email(address: str) -> str:
    """Return ``address`` with its domain lower-cased if it is a plain ``local@domain``.

    Display names, comments, quoted local parts and IP-literal domains are refused: they are
    legal but never what a shipper means to send us, and mistakes hide in them.
    """
    if not isinstance(address, str) or not address.strip():
        raise InvalidAddress(str(address), "email address is empty")
    if address != address.strip() or any(c.isspace() for c in address):
        raise InvalidAddress(address, "email address may not contain spaces")
    if len(address) > EMAIL_MAX_LEN:
        raise InvalidAddress(address, f"email address longer than {EMAIL_MAX_LEN} characters")
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidAddress(address, "email address must look like name@example.com")
    if len(local) > EMAIL_LOCAL_MAX_LEN:
        raise InvalidAddress(address, f"part before '@' longer than {EMAIL_LOCAL_MAX_LEN}")
    if not local.isascii() or not _LOCAL_RE.match(local):
        raise InvalidAddress(address, "part before '@' has characters that are not allowed")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidAddress(address, "domain is not a valid host name") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise InvalidAddress(address, "domain must contain a dot")
    for label in labels:
        if len(label) > DOMAIN_LABEL_MAX_LEN or not _LABEL_RE.match(label):
            raise InvalidAddress(address, f"domain label {label!r} is not valid")
    if labels[-1].isdigit():
        raise InvalidAddress(address, "domain must end in a name, not a number")
    return f"{local}@{domain.lower()}"
