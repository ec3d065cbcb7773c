"""The openrouter/router family on the queue and run surfaces, in-process with a manual clock."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest

from emulator import ManualClock
from emulator.core.usage import DEFAULT_PRICE, count_tokens, price_of, usage
from tests.helpers import drive

pytestmark = pytest.mark.anyio

CLAUDE = "anthropic/claude-sonnet-4.5"
PNG_DATA = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_tokens_are_word_runs_and_punctuation() -> None:
    """Each word-character run and each other non-space character counts one token."""
    assert count_tokens("Hello, world! It's 2025.") == 9  # Hello , world ! It ' s 2025 .
    assert count_tokens("") == 0


def test_cost_prices_both_sides_at_the_models_rate() -> None:
    """cost is prompt and completion tokens at the table's per-million prices; unknown models take the default."""
    counted = usage(CLAUDE, "one two", "three")
    assert counted == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3, "cost": 0.000021}
    assert price_of("someone/unlisted") == DEFAULT_PRICE


async def test_a_run_answers_with_usage_that_adds_up(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """POST /run/openrouter/router answers the output with usage; total is prompt plus completion."""
    body = {"model": CLAUDE, "prompt": "echo: counted", "system_prompt": "Be terse."}
    response = await drive(clock, client.post("/run/openrouter/router", json=body))
    assert response.status_code == 200, response.text
    output = response.json()
    assert output["output"] == "echo: counted"
    assert output["usage"] == usage(CLAUDE, "Be terse.\necho: counted", "echo: counted")


async def test_model_is_required_and_free_form(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """Without a model the run is refused with a 422 at body.model; any provider/name runs."""
    missing = await drive(clock, client.post("/run/openrouter/router", json={"prompt": "hi"}))
    assert missing.status_code == 422
    assert [item["loc"] for item in missing.json()["detail"]] == [["body", "model"]]
    fresh = await drive(clock, client.post("/run/openrouter/router", json={"prompt": "hi", "model": "new/model-9"}))
    assert fresh.status_code == 200


async def test_the_stream_is_cumulative_and_the_last_event_has_usage(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Streamed outputs grow with partial true; the final one has partial false and usage."""
    body = {"model": CLAUDE, "prompt": "What is the meaning of life?"}
    response = await drive(clock, client.post("/run/openrouter/router/stream", json=body))
    events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    outputs = [event["output"] for event in events]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(outputs))
    assert [event["partial"] for event in events] == [True] * (len(events) - 1) + [False]
    assert "usage" not in events[0] and events[-1]["usage"]["completion_tokens"] == count_tokens(outputs[-1])


async def test_a_queued_request_keeps_usage_in_its_result(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """The queue's result of an openrouter/router/enterprise request carries usage."""
    submitted = await client.post("/openrouter/router/enterprise", json={"model": CLAUDE, "prompt": "echo: q"})
    assert submitted.status_code == 200
    request_id = submitted.json()["request_id"]
    clock.advance(30)
    result = await client.get(f"/openrouter/router/requests/{request_id}")
    assert result.status_code == 200
    assert result.json()["usage"]["total_tokens"] == count_tokens("echo: q") * 2


@pytest.mark.parametrize(
    ("endpoint", "media"),
    [
        ("openrouter/router/vision", {"image_urls": [PNG_DATA], "pdf_urls": ["https://example.com/a.pdf"]}),
        ("openrouter/router/audio", {"audio_url": "https://v3.fal.media/files/a/talk.mp3"}),
        ("openrouter/router/video", {"video_url": "https://v3.fal.media/files/a/clip.mp4"}),
        ("openrouter/router/video/enterprise", {"video_url": "https://v3.fal.media/files/a/clip.mp4"}),
    ],
)
async def test_media_endpoints_take_their_urls(
    client: httpx.AsyncClient, clock: ManualClock, endpoint: str, media: dict[str, object]
) -> None:
    """Vision, audio and video run with their media URLs and report usage."""
    body = {"model": "google/gemini-2.5-flash", "prompt": "echo: media", **media}
    response = await drive(clock, client.post(f"/run/{endpoint}", json=body))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("endpoint", ["openrouter/router/video", "openrouter/router/video/enterprise"])
async def test_video_takes_one_url_or_a_list_but_not_both(
    client: httpx.AsyncClient, clock: ManualClock, endpoint: str
) -> None:
    """``video_urls`` is the alternative to ``video_url``: exactly one is given, else a 422 at the body says so."""
    body = {"model": CLAUDE, "prompt": "echo: clips"}
    clip = "https://v3.fal.media/files/a/clip.mp4"
    listed = await drive(clock, client.post(f"/run/{endpoint}", json={**body, "video_urls": [clip, clip]}))
    assert listed.status_code == 200, listed.text
    for wrong in ({}, {"video_url": clip, "video_urls": [clip]}):
        refused = await drive(clock, client.post(f"/run/{endpoint}", json={**body, **wrong}))
        assert refused.status_code == 422
        (item,) = refused.json()["detail"]
        assert (item["loc"], item["type"]) == (["body"], "value_error")
        assert item["msg"] == "Value error, exactly one of video_url or video_urls must be given"


async def test_audio_without_its_url_is_refused(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """openrouter/router/audio needs audio_url: a 422 names it."""
    response = await drive(clock, client.post("/run/openrouter/router/audio", json={"model": CLAUDE, "prompt": "x"}))
    assert response.status_code == 422
    assert ["body", "audio_url"] in [item["loc"] for item in response.json()["detail"]]


async def test_any_llm_output_stays_without_usage(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """The any-llm endpoints answer as before: no usage field."""
    response = await drive(clock, client.post("/run/fal-ai/any-llm", json={"prompt": "echo: old"}))
    assert "usage" not in response.json()


async def test_the_openai_surface_takes_the_profiles_time(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A chat completion on the realistic profile answers after simulated time has passed."""
    started = clock.now()
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": "echo: paced"}]}
    response = await drive(clock, client.post("/run/openrouter/router/openai/v1/chat/completions", json=body))
    assert response.json()["choices"][0]["message"]["content"] == "echo: paced"
    assert clock.now() > started
