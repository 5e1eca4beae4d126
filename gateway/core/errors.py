"""A request answered with an error status: ``{"error", "field"}`` (and headers such as
``Retry-After``), whichever server answers it (the Quart app, the device HTTP server)."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers
