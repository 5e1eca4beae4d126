"""What a msgspec validation error blames, for answers that name the input at fault."""

from __future__ import annotations

from typing import Final

import msgspec

_BOUNDS: Final = (" >= ", " <= ", " > ", " < ")  # in a message: a value out of its range


def field_of(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    """A validation error's message and the input to blame: ``"routes[0].stops"`` for
    ``"... - at `$.routes[0].stops`"``; for a missing or unknown key, the key itself
    (``"routes[0].stops[2].location"``), not only the object holding it."""
    text = str(exc)
    message, sep, where = text.rpartition(" - at `$")
    if not sep:
        message, where = text, ""
    path = where.rstrip("`").lstrip(".")
    if message.startswith(("Object missing required field `", "Object contains unknown field `")):
        key = message.split("`")[1]
        path = f"{path}.{key}" if path else key
    return message, path or None


def out_of_range(message: str) -> bool:
    """Whether a validation error's message is about a value outside its range (not a
    value of the wrong type or shape)."""
    return message.startswith("Expected `") and any(op in message for op in _BOUNDS)
