"""The OpenAPI 3.1 description served at ``/openapi.json``, generated from the operations the
route modules list (``api_spec.Op``): the Structs their handlers read and answer with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.http.spec import Op
from gateway.http.spec import openapi_spec as generated_spec


def openapi_spec(server_url: str, ops: Iterable[Op]) -> dict[str, Any]:
    return generated_spec(
        server_url,
        ops,
        title="Fleet tracking and notification gateway",
        version="0.1.0",
        description=(
            "Devices push positions over WebSocket (see docs/device-protocols.md) or the HTTP "
            "device protocols below; agents and shippers' systems use this API with an API key."
        ),
    )
