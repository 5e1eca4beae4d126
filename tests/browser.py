"""Real headless Chromium (Debian's package) driven by Playwright, for page tests.

Playwright's sync API runs in a worker thread; ``trio.from_thread.run`` lets the page test
call back into the trio test (to send positions) while the browser waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: ./dev.sh test installs Debian's chromium package")
    return path


@contextmanager
def chromium_page(name: str) -> Iterator[Any]:
    """A fresh browser profile and page; a screenshot lands in test-artifacts/ on failure, and
    at the end when ``SCREENSHOTS`` is set in the environment."""
    from playwright.sync_api import sync_playwright

    # trio-asyncio (used by the email channel) installs an event loop policy whose loops
    # cannot run in a plain thread; Playwright's own loop must be an ordinary one.
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        manager = sync_playwright()
        pw = manager.__enter__()
    finally:
        asyncio.set_event_loop_policy(policy)
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as profile:
        stack.callback(manager.__exit__, None, None, None)
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        page = context.new_page()
        try:
            yield page
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
            raise
        else:
            if os.environ.get("SCREENSHOTS"):  # to look at a page as its user sees it
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        finally:
            context.close()


def in_browser(name: str, fn: Callable[[Any], None]) -> Callable[[], None]:
    def run() -> None:
        with chromium_page(name) as page:
            fn(page)

    return run
