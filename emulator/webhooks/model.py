"""What delivery is made of: modes, outcomes, the retry policy, a delivery and one recorded attempt."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from emulator.core.errors import Problem
from emulator.core.models import JSON

# Gaps between fal's 10 attempts, "in the span of 2 hours": each about double the last,
# 7,125 s (1 h 58 min) from the first attempt to the last.
FAL_DELAYS = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3000.0)
# How far back the stale_timestamp mode dates a call: well past any receiver's tolerance.
STALE_BY = 3600.0
# The first path segment of the emulator's own control API, which no webhook may target.
CONTROL_SEGMENT = "_emulator"
# How long out_of_order holds a delivery when no later one comes to overtake it.
HOLD_SECONDS = 30.0


class Mode(enum.StrEnum):
    """How a delivery misbehaves on purpose, so receivers can prove they cope."""

    NORMAL = "normal"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"


def parse_mode(value: Any, loc: list[str]) -> Mode:
    """A mode by name; a 422 naming the modes otherwise."""
    try:
        return Mode(value)
    except ValueError:
        modes = ", ".join(mode.value for mode in Mode)
        item = {"loc": loc, "msg": f"Input should be one of: {modes}", "type": "value_error", "input": value}
        raise Problem(422, {"detail": [item]}) from None


def refuse_control_target(url: str | None) -> None:
    """422 for a webhook URL under a control prefix (``/_emulator``), however its path is spelled.

    The emulator cannot know every name it is reached by, so the path alone decides, on any
    host: a webhook must not be able to drive an emulator (this one or another).
    """
    if url is None:
        return
    try:
        path = urlsplit(url).path
    except ValueError:
        return  # not a URL at all: its delivery fails and is recorded, as any unreachable target
    segments: list[str] = []
    for segment in unquote(path).split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    if any(segment.lower() == CONTROL_SEGMENT for segment in segments):
        message = "A webhook cannot target the emulator's control API (a path under /_emulator)"
        item = {"loc": ["query", "fal_webhook"], "msg": message, "type": "value_error", "input": url}
        raise Problem(422, {"detail": [item]})


class Outcome(enum.StrEnum):
    """What an attempt left the delivery as."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    GAVE_UP = "gave_up"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """fal's schedule: ``len(delays) + 1`` attempts, each with its own timeout (clock seconds)."""

    delays: tuple[float, ...] = FAL_DELAYS
    timeout: float = 15.0
    # A scaled timeout never drops below this, so a busy CI machine does not turn a slow 200 into a retry.
    min_timeout: float = 1.0

    @property
    def attempts(self) -> int:
        return len(self.delays) + 1

    def timeout_for(self, scale: float) -> float:
        return max(self.timeout * scale, min(self.min_timeout, self.timeout))


@dataclass(eq=False)
class Delivery:
    """One webhook body on its way to one URL (a duplicate is a second delivery, ``copy`` 2)."""

    request_id: str
    user_id: str
    url: str
    body: bytes
    mode: Mode = Mode.NORMAL
    copy: int = 1
    attempts: int = 0
    # Held out_of_order deliveries that go out right after this one's first attempt.
    release: list[Delivery] = field(default_factory=list)
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST as it was sent and answered."""

    request_id: str
    user_id: str
    url: str
    attempt: int
    copy: int
    mode: Mode
    at: float
    status_code: int | None
    error: str | None
    latency: float
    body: str
    headers: dict[str, str]
    outcome: Outcome
    next_attempt_at: float | None

    def to_json(self) -> JSON:
        return {
            "request_id": self.request_id,
            "user_id": self.user_id,
            "url": self.url,
            "attempt": self.attempt,
            "copy": self.copy,
            "mode": self.mode.value,
            "at": self.at,
            "status_code": self.status_code,
            "error": self.error,
            "latency": self.latency,
            "body": self.body,
            "headers": self.headers,
            "outcome": self.outcome.value,
            "next_attempt_at": self.next_attempt_at,
        }
