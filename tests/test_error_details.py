"""Error answers as fal gives them today: pydantic's url, X-Fal-Retryable, a message for 499."""

from __future__ import annotations

import httpx
import pytest

from emulator import ManualClock
from emulator.core.spec import PYDANTIC_ERRORS_URL
from tests.helpers import drive

pytestmark = pytest.mark.anyio


async def test_schema_errors_link_pydantics_docs_and_say_nothing_of_retrying(client: httpx.AsyncClient) -> None:
    """A run refused by the schema: each item has pydantic's url, and no X-Fal-Retryable is sent."""
    response = await client.post("/run/fal-ai/any-llm", json={"temperature": 3})
    assert response.status_code == 422
    assert [(item["type"], item["url"]) for item in response.json()["detail"]] == [
        ("missing", PYDANTIC_ERRORS_URL + "missing"),
        ("less_than_equal", PYDANTIC_ERRORS_URL + "less_than_equal"),
    ]
    assert "x-fal-retryable" not in response.headers


async def test_an_image_that_does_not_load_is_not_retryable(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """The vision app's own 422 (fal's toolkit error) carries X-Fal-Retryable: false."""
    call = client.post(
        "/run/fal-ai/any-llm/vision", json={"prompt": "what?", "image_urls": ["https://example.com/cat.png"]}
    )
    response = await drive(clock, call)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "file_download_error"
    assert response.headers["x-fal-retryable"] == "false"


async def test_a_cancelled_requests_result_carries_a_message(client: httpx.AsyncClient) -> None:
    """499 has no reason phrase, so the body adds message (what the JS client's ApiError shows) beside detail."""
    queued = (await client.post("/fal-ai/any-llm", json={"prompt": "hi"})).json()
    await client.put(f"/fal-ai/any-llm/requests/{queued['request_id']}/cancel")
    result = await client.get(f"/fal-ai/any-llm/requests/{queued['request_id']}")
    assert result.status_code == 499
    assert result.json() == {
        "detail": "Request cancelled by the client",
        "error_type": "request_cancelled",
        "message": "Request cancelled by the client",
    }
