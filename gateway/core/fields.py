"""Field types that the input Structs of several areas share: identifiers and epoch times."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
MAX_EPOCH_S: Final = 1e11  # about the year 5138: a later time is a mistake

Ident = Annotated[
    str,
    msgspec.Meta(
        pattern=ID_PATTERN,
        description="1-64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit",
    ),
]
EpochS = Annotated[float, msgspec.Meta(ge=0, le=MAX_EPOCH_S, description="epoch seconds")]
