"""The notifier's HTTP operations (``notify.api``: alerts, webhooks, notifications), for
/openapi.json. They are listed here, in the gateway, because ``notify`` knows nothing of the
gateway's description; the types are notify's own, the ones its handlers read."""

from __future__ import annotations

from typing import Final

from .api_spec import Op

# Still described by hand in openapi.py while this list is empty.
OPS: Final[list[Op]] = []
