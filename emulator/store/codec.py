"""Request records to JSON and back, for the backends that keep them outside this process."""

from __future__ import annotations

import json
from typing import Any

from emulator.core.models import JSON, Failure, LogLine, LogLines, Plan, Priority, RequestRecord, State


def _failure_json(failure: Failure | None) -> JSON | None:
    if failure is None:
        return None
    return {"status_code": failure.status_code, "detail": failure.detail, "error_type": failure.error_type}


def _failure(data: JSON | None) -> Failure | None:
    if data is None:
        return None
    return Failure(data["status_code"], data["detail"], data["error_type"])


def _plan_json(plan: Plan | None) -> JSON | None:
    if plan is None:
        return None
    return {
        "tokens": list(plan.tokens),
        "first_token_after": plan.first_token_after,
        "seconds_per_token": plan.seconds_per_token,
        "output": plan.output,
        "failure": _failure_json(plan.failure),
        "logs": [list(line) for line in plan.logs],
    }


def _plan(data: JSON | None) -> Plan | None:
    if data is None:
        return None
    return Plan(
        tokens=tuple(data["tokens"]),
        first_token_after=data["first_token_after"],
        seconds_per_token=data["seconds_per_token"],
        output=data["output"],
        failure=_failure(data["failure"]),
        logs=tuple((offset, level, message) for offset, level, message in data["logs"]),
    )


def encode(record: RequestRecord) -> str:
    """The whole record as one JSON text."""
    data: dict[str, Any] = {
        "id": record.id,
        "namespace": record.namespace,
        "endpoint": record.endpoint,
        "app_id": record.app_id,
        "input": record.input,
        "submitted_at": record.submitted_at,
        "seq": record.seq,
        "priority": int(record.priority),
        "deadline": record.deadline,
        "webhook_url": record.webhook_url,
        "billable_units": record.billable_units,
        "state": record.state.value,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "logs": [[line.message, line.level, line.timestamp, line.source] for line in record.logs],
        "plan": _plan_json(record.plan),
        "output": record.output,
        "failure": _failure_json(record.failure),
        "paused_at": record.paused_at,
        "version": record.version,
        "gateway_request_id": record.gateway_request_id,
        "retries_left": record.retries_left,
    }
    # ASCII with escapes: any Python text encodes, even a lone surrogate UTF-8 cannot carry,
    # so no record can stop a writer that hands the text to SQLite or Redis.
    return json.dumps(data, separators=(",", ":"))


def decode(text: str | bytes) -> RequestRecord:
    """A record from the JSON ``encode`` wrote."""
    data = json.loads(text)
    return RequestRecord(
        id=data["id"],
        namespace=data["namespace"],
        endpoint=data["endpoint"],
        app_id=data["app_id"],
        input=data["input"],
        submitted_at=data["submitted_at"],
        seq=data["seq"],
        priority=Priority(data["priority"]),
        deadline=data["deadline"],
        webhook_url=data["webhook_url"],
        billable_units=data["billable_units"],
        state=State(data["state"]),
        started_at=data["started_at"],
        completed_at=data["completed_at"],
        logs=LogLines(LogLine(message, level, timestamp, source) for message, level, timestamp, source in data["logs"]),
        plan=_plan(data["plan"]),
        output=data["output"],
        failure=_failure(data["failure"]),
        paused_at=data["paused_at"],
        version=data["version"],
        gateway_request_id=data.get("gateway_request_id"),
        retries_left=data.get("retries_left", 0),
    )
