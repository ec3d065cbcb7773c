"""The body fal posts to a webhook: the request's outcome, serialised with sorted keys."""

from __future__ import annotations

import json

from emulator.core.models import JSON, RequestRecord

# fal's wording when an app's output is not valid JSON; the queue result still holds it.
PAYLOAD_ERROR = (
    "Response payload is not JSON serializable. Either return a JSON serializable object "
    "or use the queue endpoint to retrieve the response."
)


def webhook_payload(record: RequestRecord) -> JSON:
    """``request_id``, ``gateway_request_id``, ``status`` OK or ERROR, ``payload`` and ``error``."""
    body: JSON = {"request_id": record.id, "gateway_request_id": record.gateway_request_id or record.id}
    if record.failure is None:
        body.update(status="OK", payload=record.output, error=None)
    else:
        # fal reports every app failure by its status code; the body carries the detail.
        failure = record.failure
        body.update(status="ERROR", payload=failure.body(), error=f"Invalid status code: {failure.status_code}")
    return body


def serialise(body: JSON) -> bytes:
    """``json.dumps(sort_keys=True)`` as fal does; an unserialisable payload becomes ``payload_error``."""
    try:
        return json.dumps(body, sort_keys=True).encode()
    except (TypeError, ValueError):
        return json.dumps({**body, "payload": None, "payload_error": PAYLOAD_ERROR}, sort_keys=True).encode()


def webhook_body(record: RequestRecord) -> bytes:
    return serialise(webhook_payload(record))
