"""What the route modules share: the agent key check, the static folder, and reading a
browser's WebSocket until it closes."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from quart import jsonify, request, websocket

from gateway.core.secrets import ApiKeys

STATIC_DIR: Final = Path(__file__).parent / "static"

Handler = Callable[..., Awaitable[Any]]


def agent_key() -> str | None:
    """The key of ``Authorization: Bearer <key>`` or, failing that, ``X-API-Key``."""
    auth = request.headers.get("Authorization", "")
    scheme, _, tok = auth.partition(" ")
    if scheme.lower() == "bearer" and tok:
        return tok.strip()
    return request.headers.get("X-API-Key")


class AgentAuth:
    """``@agent``: refuses requests without a valid agent API key (401)."""

    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys

    def check(self, candidate: str | None) -> bool:
        return self.keys.check(candidate)

    def __call__(self, fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.keys.check(agent_key()):
                return jsonify({"error": "missing or invalid API key"}), 401
            return await fn(*args, **kwargs)

        return wrapper


async def drain_browser() -> None:
    """Read a browser WebSocket until it closes: reading is how a closed browser is
    noticed; nothing it says is needed."""
    while True:
        await websocket.receive()
