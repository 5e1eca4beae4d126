"""Message templates: files under ``notify/templates/<brand>/<language>/``, rendered with Jinja2.

Each kind of message (``out_for_delivery``, ``arriving``, ``delayed``, ``delivered``,
``failed``, ``alert``, ``help``) has up to four files: ``<kind>.sms.txt``,
``<kind>.subject.txt``, ``<kind>.txt`` and ``<kind>.html``.

Fallback: the language is chosen first, for the whole message, so one email never mixes two
languages: the recipient's language if its ``<kind>.txt`` (email) or ``<kind>.sms.txt`` (SMS)
exists for the brand or for ``default``, else English. Within that language each file is
taken from the brand if it has it, else from ``default``. A missing HTML file gives a
text-only email.

Times are rendered in the recipient's time zone with the ``hm`` (time of day) and ``day``
filters, formatted per language. SMS text is cut to ``max_sms_segments`` segments, keeping a
trailing link whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from .errors import NotifyError
from .segments import truncate_sms

DEFAULT_ROOT: Final = Path(__file__).with_name("templates")
DEFAULT_BRAND: Final = "default"
DEFAULT_LANGUAGE: Final = "en"
DEFAULT_MAX_SMS_SEGMENTS: Final = 2
DEFAULT_BRAND_NAMES: Final = {"default": "Fleetgate"}

# (time of day, day) strftime formats per language; others use the "*" entry.
_FORMATS: Final = {
    "en": ("%-I:%M %p", "%A %-d %B"),
    "fr": ("%H:%M", "%d/%m/%Y"),
    "*": ("%H:%M", "%Y-%m-%d"),
}


class TemplateMissing(NotifyError, LookupError):
    """No template of this kind exists for the brand, its fallback or English."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str  # empty: text-only
    language: str


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name``, or UTC when it is missing or unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _local(ts: Any, ctx: Any) -> datetime | None:
    if ts is None or ts == "":
        return None
    return datetime.fromtimestamp(float(ts), zone(ctx.get("timezone")))


@jinja2.pass_context
def _hm(ctx: Any, ts: Any) -> str:
    when = _local(ts, ctx)
    if when is None:
        return ""
    fmt = _FORMATS.get(ctx.get("language", ""), _FORMATS["*"])[0]
    return when.strftime(fmt).lstrip("0") if fmt.startswith("%-I") else when.strftime(fmt)


@jinja2.pass_context
def _day(ctx: Any, ts: Any) -> str:
    when = _local(ts, ctx)
    if when is None:
        return ""
    return when.strftime(_FORMATS.get(ctx.get("language", ""), _FORMATS["*"])[1])


class Templates:
    """Renders messages from the template files under ``root``."""

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        max_sms_segments: int = DEFAULT_MAX_SMS_SEGMENTS,
        brand_names: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        self.max_sms_segments = max_sms_segments
        self.brand_names = {**DEFAULT_BRAND_NAMES, **(brand_names or {})}
        self._env = lru_cache(maxsize=64)(self._make_env)

    def _dirs(self, brand: str, language: str) -> list[Path]:
        brands = [brand, DEFAULT_BRAND] if brand != DEFAULT_BRAND else [DEFAULT_BRAND]
        return [self.root / b / language for b in brands]

    def _make_env(self, brand: str, language: str) -> jinja2.Environment:
        # Includes fall back like the templates themselves, then to English.
        search = self._dirs(brand, language)
        if language != DEFAULT_LANGUAGE:
            search += self._dirs(brand, DEFAULT_LANGUAGE)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(p) for p in search]),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
            undefined=jinja2.ChainableUndefined,
            keep_trailing_newline=False,
        )
        env.filters["hm"] = _hm
        env.filters["day"] = _day
        return env

    def _has(self, brand: str, language: str, filename: str) -> bool:
        return any((d / filename).is_file() for d in self._dirs(brand, language))

    def language_for(self, kind: str, brand: str, language: str, filename: str) -> str:
        """The language a message will be written in (see the module docstring)."""
        for candidate in (language, DEFAULT_LANGUAGE):
            if candidate and _safe(candidate) and self._has(brand, candidate, filename):
                return candidate
        raise TemplateMissing(f"no {filename} for brand {brand!r} in {language!r} or English")

    def _render(
        self, brand: str, language: str, filename: str, context: Mapping[str, Any]
    ) -> str | None:
        if not self._has(brand, language, filename):
            return None
        template = self._env(brand, language).get_template(filename)
        return template.render(context).strip()

    def _context(
        self, brand: str, language: str, timezone: str, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "brand_name": self.brand_names.get(brand) or self.brand_names[DEFAULT_BRAND],
            **context,
            "language": language,
            "timezone": zone(timezone).key,
        }

    def sms(
        self,
        kind: str,
        *,
        brand: str = DEFAULT_BRAND,
        language: str = DEFAULT_LANGUAGE,
        timezone: str = "UTC",
        context: Mapping[str, Any],
    ) -> str:
        """The SMS text of ``kind``, within ``max_sms_segments`` segments."""
        brand = brand if _safe(brand) else DEFAULT_BRAND
        filename = f"{kind}.sms.txt"
        lang = self.language_for(kind, brand, language, filename)
        text = self._render(brand, lang, filename, self._context(brand, lang, timezone, context))
        return truncate_sms(" ".join((text or "").split()), self.max_sms_segments)

    def email(
        self,
        kind: str,
        *,
        brand: str = DEFAULT_BRAND,
        language: str = DEFAULT_LANGUAGE,
        timezone: str = "UTC",
        context: Mapping[str, Any],
    ) -> RenderedEmail:
        """Subject, text and HTML of ``kind``, all in one language."""
        brand = brand if _safe(brand) else DEFAULT_BRAND
        lang = self.language_for(kind, brand, language, f"{kind}.txt")
        ctx = self._context(brand, lang, timezone, context)
        subject = self._render(brand, lang, f"{kind}.subject.txt", ctx) or kind
        return RenderedEmail(
            subject=" ".join(subject.split()),
            text=self._render(brand, lang, f"{kind}.txt", ctx) or "",
            html=self._render(brand, lang, f"{kind}.html", ctx) or "",
            language=lang,
        )


def _safe(name: str) -> bool:
    # Brand and language come from delivery records: never let them walk the file system.
    return bool(name) and name.replace("-", "").replace("_", "").isalnum()
