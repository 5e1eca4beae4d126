"""The shapes of the proof-of-delivery endpoints: the upload's text fields (``PodForm``, read
by the handler and described from the same Struct), the whole multipart upload as described
in ``/openapi.json`` (``UPLOAD_SCHEMA``), and the proof as kept and answered (``Pod``).

What the schema states is what the handler refuses with a 400: the ranges, the lengths,
latitude and longitude given together, a proof with something in it. Left to the handler:
the images themselves (415 when they do not decode as JPEG or PNG, 413 when too large) and
a ``ts`` ahead of the gateway's clock (422), which no static schema can state.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from gateway.core.fields import MAX_EPOCH_S

MAX_PHOTOS: Final = 5
MAX_TEXT: Final = 500  # characters, for recipient_name and notes
EARLIEST_TS: Final = 946_684_800.0  # 2000-01-01T00:00:00Z
POD_MAX_DISTANCE_M: Final = 150.0  # a geo-stamp farther from the stop is flagged
# What is trimmed from recipient_name and notes. The same set in the schema's pattern and in
# Python: Python's and JSON Schema's ``\s`` differ outside ASCII.
BLANKS: Final = " \t\n\r\f\v"
NON_BLANK_PATTERN: Final = r"[^ \t\n\r\f\v]"

FileKind = Literal["photo", "signature"]
ImageType = Literal["jpeg", "png"]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT, description="blanks around it are dropped")]
# An empty number field (a form's empty input) is the same as no field.
NoValue = Literal[""]
Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0, description="degrees; with lon")]
Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0, description="degrees; with lat")]
ProofTs = Annotated[
    float,
    msgspec.Meta(
        ge=EARLIEST_TS,
        le=MAX_EPOCH_S,
        description="epoch seconds the proof was taken, from 2000-01-01 and at most "
        "FUTURE_TOLERANCE_S ahead of the gateway's clock (422 otherwise); default: when "
        "it arrives",
    ),
]


class UnpairedCoordinate(ValueError):
    """A latitude without a longitude or the other way round; ``missing`` names the one not
    given."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"{missing} is missing")
        self.missing = missing


class PodForm(msgspec.Struct, kw_only=True, frozen=True):
    """The text fields of a proof-of-delivery upload. Other fields are ignored."""

    recipient_name: Text = ""
    notes: Text = ""
    lat: Lat | NoValue | msgspec.UnsetType = msgspec.UNSET
    lon: Lon | NoValue | msgspec.UnsetType = msgspec.UNSET
    ts: ProofTs | NoValue | msgspec.UnsetType = msgspec.UNSET

    def name(self) -> str:
        return self.recipient_name.strip(BLANKS)

    def note(self) -> str:
        return self.notes.strip(BLANKS)

    def position(self) -> tuple[float, float] | None:
        """``(lat, lon)``, or None when neither is given; UnpairedCoordinate when only one
        is."""
        lat, lon = _number(self.lat), _number(self.lon)
        if lat is None and lon is None:
            return None
        if lat is None:
            raise UnpairedCoordinate("lat")
        if lon is None:
            raise UnpairedCoordinate("lon")
        return lat, lon

    def when(self) -> float | None:
        return _number(self.ts)


def _number(value: float | str | msgspec.UnsetType) -> float | None:
    return value if isinstance(value, float) else None


def _upload_schema() -> dict[str, Any]:
    """``PodForm``'s schema with the image parts, and the rules between the fields."""
    (_,), components = msgspec.json.schema_components([PodForm])
    text = components[PodForm.__name__]
    image = {"type": "string", "format": "binary",
             "description": "a JPEG or PNG image (told by decoding it, whatever its name or "
                            "Content-Type say)"}  # fmt: skip
    properties = {
        **text["properties"],
        "photo": {
            "type": "array",
            "items": image,
            "maxItems": MAX_PHOTOS,
            "description": f"up to {MAX_PHOTOS} photos, one part each",
        },
        "signature": {**image, "description": "the recipient's signature: a JPEG or PNG image"},
    }
    # No parts at all is how an empty list of photos goes on the wire.
    something = [
        {"required": ["photo"], "properties": {"photo": {"minItems": 1}}},
        {"required": ["signature"]},
        {"required": ["recipient_name"],
         "properties": {"recipient_name": {"pattern": NON_BLANK_PATTERN}}},
    ]  # fmt: skip
    both_or_neither = [
        {"required": ["lat", "lon"],
         "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}},
        {"properties": {"lat": {"const": ""}, "lon": {"const": ""}}},
    ]  # fmt: skip
    return {
        "type": "object",
        "description": "A proof needs a photo, a signature or the recipient's name; lat and "
        "lon come together. " + (PodForm.__doc__ or ""),
        "properties": properties,
        "allOf": [{"anyOf": something}, {"anyOf": both_or_neither}],
    }


UPLOAD_SCHEMA: Final = _upload_schema()


class PodFile(msgspec.Struct, frozen=True):
    """One image of a proof, kept under its SHA-256."""

    sha256: Annotated[str, msgspec.Meta(description="hex; the file's name in GET .../pod/{sha}")]
    kind: FileKind
    type: Annotated[ImageType, msgspec.Meta(description="as decoded")]
    size: Annotated[int, msgspec.Meta(description="bytes")]


class Pod(msgspec.Struct, frozen=True):
    """The proof of delivery, as kept."""

    delivery: Annotated[str, msgspec.Meta(description="the delivery's internal id")]
    files: list[PodFile]
    recipient_name: str
    notes: str
    lat: float | None
    lon: float | None
    ts: Annotated[float, msgspec.Meta(description="epoch seconds the proof was taken")]
    distance_m: Annotated[
        float | None, msgspec.Meta(description="metres from the geo-stamp to the stop")
    ]
    flagged: Annotated[
        bool,
        msgspec.Meta(description=f"the geo-stamp is over {POD_MAX_DISTANCE_M:g} m from the stop"),
    ]
    by: Annotated[str, msgspec.Meta(description='the driver app\'s device id, or "agent"')]
