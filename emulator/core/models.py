"""The request record and the values it is made of: data only, no behaviour."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple, overload

if TYPE_CHECKING:
    from emulator.core.faults import Rule

JSON = dict[str, Any]


class State(enum.Enum):
    """Where a request is in its life; the wire names are fal's."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


class Priority(enum.IntEnum):
    """Queue priority from ``x-fal-queue-priority``; lower values are served first."""

    NORMAL = 0
    LOW = 1


class LogLine(NamedTuple):
    """One log line as the status endpoint reports it (immutable: a tuple, the cheapest to build)."""

    message: str
    level: str
    timestamp: float
    source: str = "USER"


# A kept line as a LogLine: what ``LogLine._make`` does, without its length check (every kept line has four values).
_as_line = tuple.__new__


class LogLines(Sequence[LogLine]):
    """A record's log lines, read as ``LogLine``s, kept as one tuple of plain tuples.

    The garbage collector stops tracking a tuple of text and floats after its first pass over
    it, so the lines of a record cost one tracked object, this one, instead of one per line and
    their list: a full collection walks every record the store keeps (up to 100,000).
    """

    __slots__ = ("_lines",)

    def __init__(self, lines: Iterable[LogLine] = ()) -> None:
        # A new record's (the default) costs no generator.
        self._lines = tuple((line.message, line.level, line.timestamp, line.source) for line in lines) if lines else ()

    def add(self, message: str, level: str, timestamp: float) -> None:
        """Write one more line (from the run: the source is the user's app)."""
        self._lines = (*self._lines, (message, level, timestamp, "USER"))

    def clear(self) -> None:
        self._lines = ()

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> LogLine: ...

    @overload
    def __getitem__(self, index: slice) -> list[LogLine]: ...

    def __getitem__(self, index: int | slice) -> LogLine | list[LogLine]:
        if isinstance(index, slice):
            return list(map(_as_line, repeat(LogLine), self._lines[index]))
        return _as_line(LogLine, self._lines[index])

    def __iter__(self) -> Iterator[LogLine]:
        return map(_as_line, repeat(LogLine), self._lines)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LogLines):
            return self._lines == other._lines
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # lines are added while a run goes on

    def __repr__(self) -> str:
        return f"LogLines({list(self)!r})"


@dataclass(frozen=True, slots=True)
class Failure:
    """How a request ended when it did not succeed: the app's status code and body."""

    status_code: int
    detail: Any
    error_type: str | None = None

    @property
    def message(self) -> str:
        """The one-line error the status endpoint shows."""
        if isinstance(self.detail, str):
            return self.detail
        return f"Invalid status code: {self.status_code}"

    def body(self) -> JSON:
        body: JSON = {"detail": self.detail}
        if self.error_type is not None:
            body["error_type"] = self.error_type
        return body


CANCELLED = Failure(499, "Request cancelled by the client", "request_cancelled")
REQUEST_TIMEOUT = Failure(504, "Request timed out", "request_timeout")
# A request forgotten by a reset (the control API) before it completed: what its waiting callers get.
REMOVED = Failure(410, "The request was removed by a reset of the emulator before it completed", "request_removed")


@dataclass(frozen=True, slots=True)
class Plan:
    """The timeline of one run, decided when the request starts (seconds after start)."""

    # The stream tokens in order (a tuple; a completed record kept by the memory store holds its
    # text instead, split when read: ``emulator.core.outputs.SplitText``).
    tokens: Sequence[str]
    first_token_after: float
    seconds_per_token: float
    output: JSON
    failure: Failure | None = None
    logs: tuple[tuple[float, str, str], ...] = ()

    @property
    def duration(self) -> float:
        return self.first_token_after + self.seconds_per_token * len(self.tokens)

    def tokens_ready(self, elapsed: float) -> int:
        """How many tokens exist ``elapsed`` seconds after the start."""
        if elapsed < self.first_token_after:
            return 0
        if self.seconds_per_token <= 0:
            return len(self.tokens)
        # The epsilon keeps a token due exactly now from being lost to float rounding.
        done = int((elapsed - self.first_token_after) / self.seconds_per_token + 1e-9) + 1
        return min(len(self.tokens), done)


@dataclass(slots=True)
class RequestRecord:
    """One accepted request and everything that happens to it."""

    id: str
    namespace: str
    endpoint: str
    app_id: str
    input: JSON
    submitted_at: float
    seq: int
    priority: Priority = Priority.NORMAL
    deadline: float | None = None
    webhook_url: str | None = None
    billable_units: int = 1
    state: State = State.IN_QUEUE
    started_at: float | None = None
    completed_at: float | None = None
    logs: LogLines = field(default_factory=LogLines)
    plan: Plan | None = None
    output: JSON | None = None
    failure: Failure | None = None
    paused_at: float | None = None
    version: int = 0
    # Kept in this process only (a restart forgets them, as it forgets holds): the webhook's test
    # mode, and the fault rules a fixture attached to this request, which go when it goes.
    webhook_mode: str | None = None
    rules: list[Rule] | None = None
    # The queue's retries still allowed after a runner failure (0 for a sync run or x-fal-no-retry).
    retries_left: int = 0
    # fal gives each attempt its own gateway request id; None while it is the request id.
    gateway_request_id: str | None = None

    @property
    def done(self) -> bool:
        return self.state is State.COMPLETED

    @property
    def inference_time(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return round(self.completed_at - self.started_at, 6)
