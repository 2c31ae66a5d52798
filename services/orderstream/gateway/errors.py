"""The gateway's error shape: `{"code", "message", "details"}`, the same on REST and WebSocket."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        details: dict[str, Any] | None = None,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.details, self.status = code, message, details or {}, status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


def validation_error(exc: ValidationError) -> ApiError:
    """40001 naming the first field at fault and its issue (all of them in `errors`)."""
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "issue": e["msg"]} for e in exc.errors()
    ]
    first = errors[0]
    return ApiError(
        40001,
        f"invalid {first['field']}: {first['issue']}",
        {"field": first["field"], "issue": first["issue"], "errors": errors},
    )
