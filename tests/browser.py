"""Real headless Chromium (Debian's package) driven by Playwright, for page tests.

Playwright's sync API runs in a worker thread; ``trio.from_thread.run`` lets the page test
call back into the trio test (to send positions) while the browser waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import re
import shutil
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
DESKTOP: Final[ViewportSize] = {"width": 1280, "height": 800}
PHONE: Final[ViewportSize] = {"width": 390, "height": 844}  # a common phone's CSS pixels
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


def screenshot(page: Any, name: str) -> None:
    """``test-artifacts/<name>.png`` when ``SCREENSHOTS`` is set in the environment (to look at
    a page as its user sees it)."""
    if os.environ.get("SCREENSHOTS"):
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@contextmanager
def chromium_page(name: str, viewport: ViewportSize | None = None) -> Iterator[Any]:
    """A fresh browser profile and page; a screenshot lands in test-artifacts/ on failure, and
    at the end when ``SCREENSHOTS`` is set in the environment. An uncaught error in the
    page's scripts fails the test."""
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
            viewport=viewport or DESKTOP,
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield page
            assert not errors, f"errors in the page's scripts: {errors}"
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
            raise
        else:
            screenshot(page, name)
        finally:
            context.close()


def in_browser(
    name: str, fn: Callable[[Any], None], viewport: ViewportSize | None = None
) -> Callable[[], None]:
    def run() -> None:
        with chromium_page(name, viewport) as page:
            fn(page)

    return run


def tile_png() -> bytes:
    """A 256x256 map tile: a pale ground with a grey street along two edges, so the tiles
    show in a screenshot and a gap between them would too."""
    ground, street = b"\xf2\xef\xe9", b"\xb8\xbd\xc4"
    rows = []
    for y in range(256):
        row = street * 256 if y < 6 else (street * 6 + ground * 250)
        rows.append(b"\x00" + row)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


class TileServer:
    """A real HTTP server on a free port answering ``/{z}/{x}/{y}.png`` with :func:`tile_png`
    (anything else: 404); ``requested`` holds the tile paths asked for."""

    def __init__(self) -> None:
        png = tile_png()
        requested: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not re.fullmatch(r"/\d+/\d+/\d+\.png", self.path):
                    self.send_error(404)
                    return
                requested.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.requested = requested
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"

    def __enter__(self) -> TileServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
