"""Generated secrets: never one a command line would read as an option."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core import secrets
from gateway.core.secrets import SECRET_BYTES, persistent_secret


def test_a_generated_key_never_starts_with_a_dash(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One token in 64 starts with "-"; this one comes first, the next one is kept.
    drawn: Iterator[str] = iter(["-starts-with-a-dash", "Fine-key_123"])
    asked: list[int] = []

    def token_urlsafe(nbytes: int) -> str:
        asked.append(nbytes)
        return next(drawn)

    monkeypatch.setattr(secrets.secrets, "token_urlsafe", token_urlsafe)
    assert persistent_secret(data_dir, "api_key") == "Fine-key_123"
    assert (data_dir / "api_key").read_text() == "Fine-key_123\n"
    assert asked == [SECRET_BYTES, SECRET_BYTES]


def test_generated_keys_are_random_and_url_safe() -> None:
    keys = {secrets.new_secret() for _ in range(2000)}
    assert len(keys) == 2000
    assert not any(k.startswith("-") for k in keys)  # 2000 tokens: 31 would, on average
    assert all(len(k) == 32 and k.replace("-", "").replace("_", "").isalnum() for k in keys)


def test_a_kept_key_starting_with_a_dash_is_still_used(data_dir: Path) -> None:
    (data_dir / "api_key").write_text("-kept-from-an-earlier-run\n")
    assert persistent_secret(data_dir, "api_key") == "-kept-from-an-earlier-run"
