"""A local webhook receiver for the tests: records requests and checks their signatures."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from notify.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]
    signature_ok: bool


@dataclass
class WebhookReceiver:
    """POST /hook records the request; ``secret`` (when set) is used to verify it."""

    secret: str | None = None
    received: list[Received] = field(default_factory=list)
    answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    url: str = ""
    _changed: trio.Event = field(default_factory=trio.Event)

    def answer_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        for _ in range(count):
            self.answers.append((status, headers or {}))

    async def wait_for(self, count: int) -> list[Received]:
        while len(self.received) < count:
            await self._changed.wait()
        return self.received

    async def _hook(self) -> Response:
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)
        headers = {k.lower(): v for k, v in request.headers.items()}
        ok = self.secret is not None and verify_signature(
            self.secret,
            headers.get(TIMESTAMP_HEADER.lower(), ""),
            body,
            headers.get(SIGNATURE_HEADER.lower(), ""),
        )
        self.received.append(Received(body, headers, ok))
        self._changed.set()
        self._changed = trio.Event()
        status, extra = self.answers.popleft() if self.answers else (204, {})
        return Response("", status=status, headers=extra)

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        app = QuartTrio(__name__)
        app.add_url_rule("/hook", "hook", self._hook, methods=["POST"])
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.keep_alive_timeout = 3600
        config.accesslog = None
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, config))
            self.url = binds[0] + "/hook"
            task_status.started(self.url)
