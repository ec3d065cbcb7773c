"""Faults on demand: rules that make matching requests fail, stall, drop or lie.

A rule names the actions it applies to (submit, status, result, run, ...), optionally a
namespace, endpoint or request id, how many times it fires and with what probability. The
random draws come from one seeded generator, so a chaos run with a seed repeats exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.core.models import JSON, Failure

# "openai": a call on the OpenAI-compatible surface (chat completions, responses, embeddings).
ACTIONS = frozenset({"submit", "status", "status_stream", "result", "cancel", "run", "run_stream", "openai"})
HTTP_KINDS = frozenset({"http_error", "latency", "drop_stream", "truncated_body", "malformed_body", "reset"})
LIFECYCLE_KINDS = frozenset({"complete_with_error", "hold"})
KINDS = HTTP_KINDS | LIFECYCLE_KINDS

# Final errors a run can end with, as fal reports them.
KNOWN_ERRORS: dict[str, Failure] = {
    "runner_disconnected": Failure(503, "Runner disconnected", "runner_disconnected"),
    "runner_scheduling_failure": Failure(503, "Runner scheduling failure", "runner_scheduling_failure"),
    "runner_connection_timeout": Failure(503, "Runner connection timed out", "runner_connection_timeout"),
    "request_timeout": Failure(504, "Request timed out", "request_timeout"),
    "startup_timeout": Failure(504, "Startup timed out", "startup_timeout"),
    "client_cancelled": Failure(499, "Client cancelled the request", "client_cancelled"),
}

_HTTP_DETAILS = {
    401: "No user found for Key ID and Secret",
    403: "Forbidden: this key may not call this application",
    429: "Too many requests: concurrency limit reached",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class FaultError(ValueError):
    """A fault or rule description that cannot be used; the message says why."""


# JSON types of the fault fields ("detail" may be anything the app would answer).
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "status": ((int,), "an integer"),
    "error_type": ((str,), "a string"),
    "retry_after": ((int, float), "a number"),
    "with_request_id": ((bool,), "true or false"),
    "seconds": ((int, float), "a number"),
    "stage": ((str,), "a string"),
    "after_events": ((int,), "an integer"),
}


def _is(value: Any, wanted: tuple[tuple[type, ...], str]) -> bool:
    types = wanted[0]
    # JSON true/false are bools, which Python also counts as ints: only accept them as bools.
    if isinstance(value, bool):
        return bool in types
    # NaN and infinity are not numbers a header or a timer can carry (a JSON 1e400 parses as infinity).
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, types)


@dataclass(frozen=True, slots=True)
class Fault:
    """What happens to a request a rule matches."""

    kind: str
    status: int | None = None
    detail: Any = None
    error_type: str | None = None
    retry_after: float | None = None
    with_request_id: bool = True
    seconds: float = 0.0
    stage: str = "queue"
    after_events: int = 1

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Fault:
        """Build a fault from its JSON description, checking every field."""
        allowed = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - allowed
        if unknown:
            raise FaultError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            raise FaultError(f"fault kind must be one of {', '.join(sorted(KINDS))}, not {kind!r}")
        for name, value in raw.items():
            wanted = _FIELD_TYPES.get(name)
            if wanted is not None and value is not None and not _is(value, wanted):
                raise FaultError(f"fault field '{name}' must be {wanted[1]}, not {value!r}")
        fault = cls(**raw)
        if kind == "http_error" and (not isinstance(fault.status, int) or not 400 <= fault.status <= 599):
            raise FaultError("an http_error fault needs a status between 400 and 599")
        if kind == "complete_with_error":
            if fault.error_type not in KNOWN_ERRORS and not isinstance(fault.status, int):
                raise FaultError(
                    "a complete_with_error fault needs an error_type among "
                    f"{', '.join(sorted(KNOWN_ERRORS))}, or a status (e.g. 422)"
                )
            if fault.status is not None and not 400 <= fault.status <= 599:
                raise FaultError("a complete_with_error status must be between 400 and 599")
        if kind == "hold" and fault.stage not in ("queue", "progress"):
            raise FaultError("a hold fault's stage is 'queue' or 'progress'")
        if kind == "latency" and not (isinstance(fault.seconds, (int, float)) and fault.seconds >= 0):
            raise FaultError("a latency fault needs seconds >= 0")
        if kind == "drop_stream" and not (isinstance(fault.after_events, int) and fault.after_events >= 0):
            raise FaultError("a drop_stream fault needs after_events >= 0")
        return fault

    def failure(self) -> Failure:
        """The error a complete_with_error fault ends its request with."""
        known = KNOWN_ERRORS.get(self.error_type or "")
        if known is not None and self.status is None and self.detail is None:
            return known
        status = self.status if self.status is not None else (known.status_code if known else 500)
        detail = self.detail
        if detail is None:
            detail = known.detail if known else f"Request failed with status {status}"
        return Failure(status, detail, self.error_type)

    def http_body(self) -> tuple[str, bytes]:
        """Content type and body of an http_error answer.

        Without a request id, 502/503/504 look like an ingress (nginx) page, the only kind of
        5xx the official Python client retries.
        """
        status = self.status or 500
        if not self.with_request_id and status in (502, 503, 504):
            title = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}
            page = f"<html><head><title>{title[status]}</title></head><body><center><h1>{title[status]}</h1>"
            return "text/html", (page + "</center><hr><center>nginx</center></body></html>").encode()
        body: JSON = {"detail": self.detail if self.detail is not None else _HTTP_DETAILS.get(status, "Error")}
        if self.error_type is not None:
            body["error_type"] = self.error_type
        return "application/json", json.dumps(body).encode()

    def describe(self) -> JSON:
        return {k: v for k, v in asdict(self).items() if v is not None}


_rule_ids = itertools.count(1)


@dataclass(slots=True)
class Rule:
    """When a fault applies: actions, scope, how many more times, with what probability."""

    fault: Fault
    actions: frozenset[str]
    namespace: str | None = None
    endpoint: str | None = None
    request_id: str | None = None
    remaining: int | None = None
    probability: float = 1.0
    id: int = field(default_factory=lambda: next(_rule_ids))

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, namespace: str | None = None) -> Rule:
        """A rule from JSON: ``{"fault": {...}, "actions": [...], "times": N, "probability": p, ...}``."""
        if not isinstance(raw, Mapping):
            raise FaultError("a rule is a JSON object")
        unknown = set(raw) - {"fault", "actions", "namespace", "endpoint", "request_id", "times", "probability"}
        if unknown:
            raise FaultError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
        fault_raw = raw.get("fault")
        if not isinstance(fault_raw, Mapping):
            raise FaultError("a rule needs a 'fault' object")
        fault = Fault.parse(fault_raw)
        actions = parse_actions(raw.get("actions"), fault)
        times = raw.get("times")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise FaultError("'times' must be a positive integer (or absent for always)")
        probability = raw.get("probability", 1.0)
        if not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            raise FaultError("'probability' must be between 0 and 1")
        for key in ("namespace", "endpoint", "request_id"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise FaultError(f"'{key}' must be a string")
        return cls(
            fault=fault,
            actions=actions,
            namespace=raw.get("namespace", namespace),
            endpoint=raw.get("endpoint"),
            request_id=raw.get("request_id"),
            remaining=times,
            probability=float(probability),
        )

    def bound(self, namespace: str, request_id: str) -> Rule:
        """A copy of this rule for one request alone, with its own count of uses."""
        return dataclasses.replace(self, namespace=namespace, request_id=request_id, id=next(_rule_ids))

    def describe(self) -> JSON:
        return {
            "id": self.id,
            "fault": self.fault.describe(),
            "actions": sorted(self.actions),
            "namespace": self.namespace,
            "endpoint": self.endpoint,
            "request_id": self.request_id,
            "remaining": self.remaining,
            "probability": self.probability,
        }


def parse_actions(raw: Any, fault: Fault) -> frozenset[str]:
    """The actions a rule covers; lifecycle faults attach at submit or run by default."""
    if raw is None:
        if fault.kind in LIFECYCLE_KINDS:
            return frozenset({"submit", "run", "run_stream"})
        if fault.kind == "drop_stream":
            return frozenset({"status_stream", "run_stream"})
        return frozenset({"submit", "run", "run_stream"})
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or any(a not in ACTIONS for a in raw):
        raise FaultError(f"'actions' must be a list drawn from {', '.join(sorted(ACTIONS))}")
    return frozenset(raw)


class Faults:
    """The active rules, matched in the order they were added."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self.rules: list[Rule] = []

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def replace(self, rules: Iterable[Rule], namespace: str | None = None) -> None:
        """Swap the rules of a namespace (or the global ones) for new ones."""
        self.rules = [r for r in self.rules if r.namespace != namespace] + list(rules)

    def clear(self, namespace: str | None = None) -> None:
        self.rules = [] if namespace is None else [r for r in self.rules if r.namespace != namespace]

    def match(
        self,
        action: str,
        namespace: str,
        *,
        endpoint: str | None = None,
        request_id: str | None = None,
        kinds: frozenset[str] = KINDS,
        scoped: list[Rule] | None = None,
        scoped_only: bool = False,
    ) -> Fault | None:
        """The first rule that applies to this call, consuming one of its uses.

        The shared rules come first, then ``scoped``: the rules of the one request the call
        addresses (those a fixture attached to it), which live on its record. ``scoped_only``
        looks at those alone.
        """
        if self.rules and not scoped_only:
            fault = self._first(self.rules, action, namespace, endpoint, request_id, kinds)
            if fault is not None:
                return fault
        if scoped:
            return self._first(scoped, action, namespace, endpoint, request_id, kinds)
        return None

    def _first(
        self,
        rules: list[Rule],
        action: str,
        namespace: str,
        endpoint: str | None,
        request_id: str | None,
        kinds: frozenset[str],
    ) -> Fault | None:
        for rule in rules:
            if action not in rule.actions or rule.fault.kind not in kinds:
                continue
            if rule.namespace is not None and rule.namespace != namespace:
                continue
            if rule.endpoint is not None and endpoint is not None and not _same_app(rule.endpoint, endpoint):
                continue
            if rule.request_id is not None and rule.request_id != request_id:
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    rules.remove(rule)
            return rule.fault
        return None


def _same_app(rule_endpoint: str, endpoint: str) -> bool:
    return (
        endpoint == rule_endpoint
        or endpoint.startswith(rule_endpoint + "/")
        or rule_endpoint.startswith(endpoint + "/")
    )
