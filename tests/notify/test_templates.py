"""Template rendering: fallbacks, time zones, SMS length."""

from __future__ import annotations

from pathlib import Path

import pytest

from notify.segments import count_segments
from notify.templates import TemplateMissing, Templates

# 2025-06-15 16:00 UTC: 18:00 in Paris, 12:00 in New York.
TS = 1_750_003_200.0
CTX = {
    "recipient_name": "Ana",
    "tracking_url": "https://t.example/abc",
    "window_start": TS,
    "window_end": TS + 7200,
    "eta": TS,
    "ts": TS,
    "minutes": 5,
    "pod_url": "https://pod.example/1",
    "reason": "nobody_home",
}


def test_times_are_in_the_recipient_time_zone() -> None:
    t = Templates()
    paris = t.sms("out_for_delivery", language="fr", timezone="Europe/Paris", context=CTX)
    assert "entre 18:00 et 20:00" in paris
    ny = t.sms("out_for_delivery", language="en", timezone="America/New_York", context=CTX)
    assert "between 12:00 PM and 2:00 PM" in ny
    assert ny.endswith("https://t.example/abc")


def test_unknown_language_falls_back_to_english_for_the_whole_email() -> None:
    email = Templates().email("delivered", language="de", timezone="UTC", context=CTX)
    assert email.language == "en"
    assert email.subject == "Your Fleetgate parcel was delivered"
    assert "https://pod.example/1" in email.text
    assert 'href="https://pod.example/1"' in email.html


def test_language_without_html_gives_a_text_only_email_in_that_language() -> None:
    email = Templates().email("out_for_delivery", language="fr", timezone="UTC", context=CTX)
    assert email.language == "fr"
    assert email.text.startswith("Bonjour Ana")
    assert email.html == ""


def test_brand_overrides_only_what_it_has(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    default_en = Path(__file__).parents[2] / "notify" / "templates" / "default" / "en"
    (root / "default").mkdir(parents=True)
    (root / "default" / "en").symlink_to(default_en)
    (root / "acme" / "en").mkdir(parents=True)
    (root / "acme" / "en" / "arriving.sms.txt").write_text("ACME van in {{ minutes }} min")
    t = Templates(root, brand_names={"acme": "Acme"})
    assert t.sms("arriving", brand="acme", context=CTX) == "ACME van in 5 min"
    # Not overridden: the default template, with the brand's display name.
    assert t.sms("delivered", brand="acme", context=CTX).startswith("Acme: your parcel")
    # Unknown brand: default.
    assert t.sms("arriving", brand="nobody", context=CTX).startswith("Fleetgate:")


def test_html_is_escaped_and_text_is_not() -> None:
    ctx = {**CTX, "recipient_name": "<b>Ana & Bo</b>"}
    email = Templates().email("arriving", context=ctx)
    assert "&lt;b&gt;Ana &amp; Bo&lt;/b&gt;" in email.html
    assert "<b>Ana & Bo</b>" in email.text


def test_failed_message_names_the_reason_and_next_step() -> None:
    t = Templates()
    text = t.sms("failed", context=CTX)
    assert "nobody was home" in text and text.endswith("https://t.example/abc")
    refused = t.sms("failed", context={**CTX, "reason": "refused"})
    assert "refused" in refused and "contact you" in refused


def test_sms_is_kept_within_the_segment_limit() -> None:
    t = Templates(max_sms_segments=1)
    long_name = {**CTX, "tracking_url": "https://t.example/" + "x" * 60}
    text = t.sms("delayed", context={**long_name, "eta": TS})
    assert count_segments(text) == 1
    assert text.endswith(str(long_name["tracking_url"]))


def test_missing_kind_and_path_tricks_are_refused() -> None:
    t = Templates()
    with pytest.raises(TemplateMissing):
        t.sms("no_such_kind", context=CTX)
    assert t.sms("arriving", brand="../../etc", language="../x", context=CTX).startswith(
        "Fleetgate"
    )
