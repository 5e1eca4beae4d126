"""Real servers for the notification tests: Redis, the Twilio capture server, SMTP, webhooks."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import coredis
import pytest
import trio
from trio.testing import MockClock

from notify.capture.smtp_server import SmtpCaptureServer
from notify.capture.twilio_server import TwilioCaptureServer

from .receiver import WebhookReceiver

# Virtual time moves only after the whole run has been idle this long in real time, so
# local round trips to Redis and the capture servers never see the clock jump under them.
AUTOJUMP_THRESHOLD_S = 0.1


@pytest.fixture
def virtual_clock() -> MockClock:
    """Virtual time for exact timing assertions around real I/O."""
    return MockClock(autojump_threshold=AUTOJUMP_THRESHOLD_S)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def twilio_server(nursery: trio.Nursery) -> TwilioCaptureServer:
    server = TwilioCaptureServer()
    await nursery.start(server.run)
    return server


@pytest.fixture
async def smtp_server(nursery: trio.Nursery) -> SmtpCaptureServer:
    server = SmtpCaptureServer()
    await nursery.start(server.run)
    return server


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> WebhookReceiver:
    server = WebhookReceiver()
    await nursery.start(server.run)
    return server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl CLI."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def clock_from(now: Callable[[], float], epoch: float) -> Callable[[], float]:
    """Wall-clock epoch seconds that advance with trio's (virtual) clock."""
    start = now()
    return lambda: epoch + (now() - start)
