"""The answers other than success that the core gives, as fal's wire has them: a status and a body.

The core raises ``Problem``; the HTTP side renders it. ``FaultTriggered`` is raised inside a
response on purpose, so the server drops the connection (a fault rule asked for it).
"""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    """An answer other than success: status code, JSON body (or raw bytes), headers."""

    def __init__(
        self,
        status_code: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        raw: tuple[str, bytes] | None = None,
    ) -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}
        self.raw = raw


class FaultTriggered(ConnectionResetError):
    """Raised inside a response on purpose, so the server drops the connection."""


def not_found(what: str) -> Problem:
    return Problem(404, {"detail": what})


def validation_problem(errors: list[dict[str, Any]], request_id: str | None = None) -> Problem:
    """fal's (FastAPI's) 422: a list of error items; nothing is billed."""
    headers = {"x-fal-billable-units": "0"}
    if request_id is not None:
        headers["x-fal-request-id"] = request_id
    return Problem(422, {"detail": errors}, headers)
