"""What the client raises when the gateway refuses a request."""

from __future__ import annotations

from typing import Any


class ApiCallError(Exception):
    """The gateway answered with an error object: `code` is the API's error code (40001: a field is
    invalid, 40401: no such order, 42901: rate limited, ...), `details` what it names (the field, the
    retry delay, the request id)."""

    def __init__(self, error: dict[str, Any], status: int | None = None) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = int(error.get("code", 0))
        self.message = str(error.get("message", ""))
        self.details: dict[str, Any] = error.get("details") or {}
        self.status = status  # the HTTP status of a REST answer; None on the WebSocket
