"""A refused request's answer waits for the rest of its body, so the connection goes on.

Quart stops reading a body it refuses (over ``MAX_CONTENT_LENGTH``, a text field over
``MAX_FORM_MEMORY_SIZE``, a malformed multipart), and a handler may refuse a request
before reading its body at all. Hypercorn then answers the request but neither reuses the
connection (the request is not over) nor closes it (quart-trio cancels the close when it
hears the request is done), and the client's next request on it waits for ever. Quart's
ASGI task does go on receiving the body, and marks it complete (``_complete``) when its last
part has come; except that a body over the limit with no declared length is marked complete
on the spot (``_must_raise`` set, and nothing says where it ends).

``body_finished`` waits for that (for at most ``DRAIN_TIMEOUT_S`` and ``DRAIN_MAX_BYTES``)
and says whether it came; the HTTP app (``http_errors``) calls it after every request and
has the answer close the connection when the end cannot be known or comes too late.

Quart has no public way to wait for the end of a body, so this reads two internals of its
request ``Body``; Quart is pinned to the version they were read from and ``_check`` fails at
import if they are not there.
"""

from __future__ import annotations

from typing import Final

import quart
import trio
from quart import has_request_context, request
from quart_trio.wrappers.request import TrioBody

DRAIN_MAX_BYTES: Final = 64 * 2**20  # 64 MiB
DRAIN_TIMEOUT_S: Final = 30.0


def _check() -> None:
    body = TrioBody(None, None)
    complete = getattr(body, "_complete", None)
    if not hasattr(body, "_must_raise") or not callable(getattr(complete, "wait", None)):
        raise ImportError(
            f"quart {getattr(quart, '__version__', '?')}'s request Body has no _complete "
            "event or no _must_raise, which gateway.http.body reads to know when a refused "
            "body has arrived; install the pinned version"
        )


_check()


async def body_finished() -> bool:
    """Wait until the rest of the current request's body has arrived (it is dropped as it
    comes); False when that cannot be known or takes too long (the connection must then be
    closed). At once True for a body already read, and outside a request."""
    if not has_request_context():
        return True
    body = request.body
    declared = request.content_length
    if not body._complete.is_set() and (declared is None or declared <= DRAIN_MAX_BYTES):
        with trio.move_on_after(DRAIN_TIMEOUT_S):
            await body._complete.wait()
    return body._complete.is_set() and (declared is not None or body._must_raise is None)
