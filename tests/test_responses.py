"""The hot path's JSON responses: laid out exactly as Starlette's ``Response`` lays them out."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import Response

from emulator.core.faults import Fault
from emulator.core.wire import dumps_record
from emulator.http.common import EncodedJSON, record_response, with_fault

BODY = {"status": "COMPLETED", "request_id": "abc", "logs": None, "metrics": {"inference_time": 0.5}, "text": "é"}


@pytest.mark.parametrize("status", [200, 202, 400, 404, 204, 304, 101])
@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"x-fal-request-id": "abc"},
        {"X-Fal-Request-Id": "abc", "Retry-After": "1"},
        {"content-type": "application/problem+json"},
        {"Content-Length": "99", "allow": "GET"},
    ],
)
def test_a_record_response_is_the_response_starlette_would_build(status: int, headers: Any) -> None:
    """Status, header list (names, values, order) and body are those of ``Response`` with the same arguments."""
    ours = record_response(BODY, status, headers)
    theirs = Response(dumps_record(BODY), status, headers, media_type="application/json")
    assert (ours.status_code, ours.raw_headers, ours.body) == (theirs.status_code, theirs.raw_headers, theirs.body)
    assert dict(ours.headers) == dict(theirs.headers)


def test_the_common_reply_takes_the_direct_layout() -> None:
    """A 200 or 202 with the request id header is built without Starlette's header pass."""
    assert isinstance(record_response(BODY, 202, {"x-fal-request-id": "abc"}), EncodedJSON)


@pytest.mark.parametrize("kind", ["truncated_body", "malformed_body"])
def test_a_body_fault_spoils_a_direct_response_as_any_other(kind: str) -> None:
    """A body fault reads the direct response's body and headers as it reads ``Response``'s."""
    fault = Fault(kind=kind)
    spoiled = with_fault(record_response(BODY, 200, {"x-fal-request-id": "abc"}), fault)
    reference = with_fault(
        Response(dumps_record(BODY), 200, {"x-fal-request-id": "abc"}, media_type="application/json"), fault
    )
    assert (spoiled.status_code, spoiled.raw_headers, spoiled.body) == (
        reference.status_code,
        reference.raw_headers,
        reference.body,
    )
