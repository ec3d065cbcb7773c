"""Endpoints loaded from fal documents, on the queue, run, CDN, document and control surfaces, in-process."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from PIL import Image

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.endpoints.documents import builtin_documents, load_document
from emulator.endpoints.inputs import example_input
from emulator.webhooks import verify
from tests.conftest import AUTH
from tests.receivers import wait_until
from tests.test_endpoint_outputs import FILES, file_objects, output_validator

pytestmark = pytest.mark.anyio

T = TypeVar("T")
DATA = Path(__file__).parent / "data" / "fal-openapi"
BASE = "http://emulator.test"
DOCUMENTS = {load_document(path).endpoint_id: load_document(path) for path in FILES}
BUILTIN = {document.endpoint_id for document in builtin_documents()}


@pytest.fixture
def core(tmp_path: Path, clock: ManualClock) -> Emulator:
    settings = Settings(profile="realistic", seed=7, endpoints=(DATA,), data_dir=tmp_path)
    return Emulator.build(settings, clock=clock)


@pytest.fixture
async def client(core: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        yield http


async def completed(client: httpx.AsyncClient, clock: ManualClock, endpoint_id: str, body: Any) -> httpx.Response:
    """Submit, let the manual clock run the request to its end, and read its result."""
    submitted = await client.post("/" + endpoint_id, json=body)
    assert submitted.status_code == 200, submitted.text
    status_url = submitted.json()["status_url"].removeprefix(BASE)

    async def done() -> None:
        while (await client.get(status_url)).status_code != 200:
            clock.advance(1.0)

    await driven(clock, done())
    return await client.get(submitted.json()["response_url"].removeprefix(BASE))


async def driven(clock: ManualClock, call: Awaitable[T], deadline_seconds: float = 30.0) -> T:
    """Run ``call`` while moving the manual clock on; renders run in a worker thread, so wait on the
    call itself (bounded by a real deadline) between steps instead of only yielding to the loop."""
    task = asyncio.ensure_future(call)
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        done, _ = await asyncio.wait({task}, timeout=0.01)
        if done:
            return task.result()
        clock.advance(0.5)
    task.cancel()
    raise AssertionError(f"call did not finish within {deadline_seconds} s")


def test_every_document_in_the_folder_is_loaded(core: Emulator) -> None:
    """``--endpoints`` with a folder loads each of its 22 documents as a routed endpoint."""
    assert len(DOCUMENTS) == 22
    assert {endpoint.endpoint_id for endpoint in core.endpoints} == set(DOCUMENTS) | BUILTIN
    assert set(DOCUMENTS) <= core.spec.endpoints
    assert "fal-ai/any-llm" in core.spec.endpoints


@pytest.mark.parametrize("endpoint_id", sorted(DOCUMENTS))
async def test_a_queued_example_completes_with_a_valid_output_and_downloadable_files(
    client: httpx.AsyncClient, clock: ManualClock, endpoint_id: str
) -> None:
    """The example input completes; the result fits the Output schema and each file downloads as advertised."""
    document = DOCUMENTS[endpoint_id]
    result = await completed(client, clock, endpoint_id, example_input(document))
    assert result.status_code == 200, result.text
    output = result.json()
    assert list(output_validator(document).iter_errors(output)) == []
    assert int(result.headers["x-fal-billable-units"]) >= 1
    files = list(file_objects(output))
    assert files
    for item in files:
        assert item["url"].startswith(f"{BASE}/cdn/files/")
        download = await client.get(item["url"].removeprefix(BASE))
        assert download.status_code == 200
        if "content_type" in item:
            assert download.headers["content-type"].split(";")[0] == item["content_type"]
        if "file_size" in item:
            assert len(download.content) == item["file_size"]
        if download.headers["content-type"] in ("image/png", "image/jpeg"):
            picture = Image.open(io.BytesIO(download.content))
            assert picture.format == ("PNG" if download.headers["content-type"] == "image/png" else "JPEG")
            if "width" in item:
                assert picture.size == (item["width"], item["height"])


async def test_a_run_takes_the_categorys_time_with_progress_logs(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """In the realistic profile an image is still in progress after a second, with its progress logs."""
    submitted = await client.post("/fal-ai/flux/schnell", json={"prompt": "a lighthouse", "num_images": 2})
    status_url = submitted.json()["status_url"].removeprefix(BASE)
    clock.advance(1.0)
    running = await client.get(status_url, params={"logs": "1"})
    assert running.json()["status"] == "IN_PROGRESS"
    assert running.json()["logs"][0]["message"] == "Running fal-ai/flux/schnell (text-to-image)"
    clock.advance(60.0)
    done = await client.get(status_url, params={"logs": "1"})
    assert done.json()["status"] == "COMPLETED"
    assert done.json()["logs"][-1]["message"].startswith("Generated 2 images (1024x768)")


async def test_a_body_that_breaks_the_input_schema_fails_with_the_apps_422(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A queued body without the required prompt is accepted and its result is the FastAPI-style 422."""
    result = await completed(client, clock, "fal-ai/flux/schnell", {"num_images": 1})
    assert result.status_code == 422
    assert result.json()["detail"][0]["loc"] == ["body", "prompt"]


async def test_a_run_answers_the_generated_output(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """The run surface answers a loaded endpoint's output with a downloadable image."""
    response = await driven(clock, client.post("/run/fal-ai/esrgan", json={"image_url": "https://example.com/a.png"}))
    assert response.status_code == 200, response.text
    image = response.json()["image"]
    assert (await client.get(image["url"].removeprefix(BASE))).headers["content-type"] == "image/png"


async def test_an_uploaded_input_image_is_accepted_and_a_missing_upload_is_refused(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """An image uploaded to the emulator is a good input; an unknown file on its own host fails with a 422."""
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(picture, "PNG")
    uploaded = await client.post(
        "/cdn/files/upload",
        content=picture.getvalue(),
        headers={"content-type": "image/png", "x-fal-file-name": "a.png"},
    )
    assert uploaded.status_code == 200, uploaded.text
    url = uploaded.json()["access_url"]
    good = await completed(client, clock, "fal-ai/esrgan", {"image_url": url})
    assert good.status_code == 200
    bad = await completed(
        client, clock, "fal-ai/esrgan", {"image_url": "http://127.0.0.1:8000/cdn/files/koala/nothing.png"}
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "image_url"]


async def test_sync_mode_answers_data_uris(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """``sync_mode: true`` puts the image in the output as a data URI instead of a CDN URL."""
    result = await completed(client, clock, "fal-ai/flux/schnell", {"prompt": "a fox", "sync_mode": True})
    assert result.json()["images"][0]["url"].startswith("data:image/")


async def test_the_document_of_each_endpoint_is_served_where_fal_serves_it(client: httpx.AsyncClient) -> None:
    """fal's document path answers the loaded document, on this host and under fal.ai; unknown ids get 404."""
    own = await client.get("/api/openapi/queue/openapi.json", params={"endpoint_id": "fal-ai/flux/schnell"})
    assert own.status_code == 200
    assert own.json()["paths"] == DOCUMENTS["fal-ai/flux/schnell"].raw["paths"]
    assert own.json()["servers"] == [{"url": BASE}]
    fal = await client.get("https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/esrgan")
    assert fal.status_code == 200
    assert fal.json()["info"]["x-fal-metadata"]["endpointId"] == "fal-ai/esrgan"
    unknown = await client.get("/api/openapi/queue/openapi.json", params={"endpoint_id": "fal-ai/unknown"})
    assert unknown.status_code == 404
    assert "fal-ai/unknown" in unknown.json()["detail"]
    missing = await client.get("/api/openapi/queue/openapi.json")
    assert missing.status_code == 422


async def test_the_combined_document_covers_every_loaded_endpoint(client: httpx.AsyncClient) -> None:
    """``/openapi.json`` has any-llm's paths and every loaded endpoint's."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/fal-ai/any-llm" in paths
    assert all("/" + endpoint_id in paths for endpoint_id in DOCUMENTS)


async def test_a_document_put_at_run_time_answers_at_once(tmp_path: Path) -> None:
    """An endpoint loaded by the control call is listed, routed and served without a restart."""
    core = Emulator.build(Settings(profile="instant", seed=1, data_dir=tmp_path), clock=ManualClock())
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        assert (await http.post("/fal-ai/recraft-v3", json={"prompt": "x"})).status_code == 404
        text = (DATA / "fal-ai__recraft-v3.json").read_text()
        put = await http.put("/_emulator/endpoints", content=text)
        assert put.status_code == 200
        assert put.json() == {
            "endpoint_id": "fal-ai/recraft-v3",
            "category": "text-to-image",
            "source": "<PUT /_emulator/endpoints>",
            "replaced": False,
        }
        assert (await http.post("/fal-ai/recraft-v3", json={"prompt": "x"})).status_code == 200
        listed = (await http.get("/_emulator/endpoints")).json()["endpoints"]
        assert [item["endpoint_id"] for item in listed] == [*sorted(BUILTIN), "fal-ai/recraft-v3"]
        served = await http.get("/api/openapi/queue/openapi.json", params={"endpoint_id": "fal-ai/recraft-v3"})
        assert served.status_code == 200
        again = await http.put("/_emulator/endpoints", content=text)
        assert again.json()["replaced"] is True


async def test_a_bad_document_put_at_run_time_is_refused_with_what_is_missing(client: httpx.AsyncClient) -> None:
    """A document that is not fal's shape answers 422 with the one-line reason; a non-document 400."""
    bad = await client.put("/_emulator/endpoints", content=json.dumps({"openapi": "3.0.4", "paths": {}}))
    assert bad.status_code == 422
    assert "not a fal endpoint document" in bad.json()["detail"]
    garbage = await client.put("/_emulator/endpoints", content=b"{not json")
    assert garbage.status_code == 400


async def test_a_fixture_gives_any_json_output_to_a_loaded_endpoint(tmp_path: Path) -> None:
    """A fixture matched by endpoint answers its JSON object as the whole output."""
    fixture = tmp_path / "images.yaml"
    fixture.write_text(
        "fixtures:\n"
        "  - name: fixed-image\n"
        "    match: {endpoint: fal-ai/flux/schnell}\n"
        "    output: {images: [{url: 'https://example.com/cat.png', width: 1, height: 1}], seed: 3}\n"
    )
    settings = Settings(profile="instant", seed=1, endpoints=(DATA,), fixtures=(fixture,), data_dir=tmp_path)
    clock = ManualClock()
    core = Emulator.build(settings, clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        result = await completed(http, clock, "fal-ai/flux/schnell", {"prompt": "anything"})
        assert result.json() == {"images": [{"url": "https://example.com/cat.png", "width": 1, "height": 1}], "seed": 3}
        other = await completed(http, clock, "fal-ai/flux/dev", {"prompt": "anything"})
        assert other.json()["images"][0]["url"].startswith(f"{BASE}/cdn/files/")


async def test_a_fault_rule_applies_to_a_loaded_endpoint(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A fault rule scoped to a loaded endpoint answers its error on submit."""
    rule = {"endpoint": "fal-ai/flux/schnell", "actions": ["submit"], "fault": {"kind": "http_error", "status": 503}}
    added = await client.post("/_emulator/faults", json=rule)
    assert added.status_code in (200, 201), added.text
    refused = await client.post("/fal-ai/flux/schnell", json={"prompt": "x"})
    assert refused.status_code == 503
    other = await client.post("/fal-ai/flux/dev", json={"prompt": "x"})
    assert other.status_code == 200


async def test_a_loaded_endpoint_delivers_its_output_by_signed_webhook(tmp_path: Path) -> None:
    """A submit with fal_webhook gets an OK webhook whose payload is the generated output, signed."""
    hooked: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        hooked.append(request)
        return httpx.Response(200)

    clock = ManualClock()
    settings = Settings(profile="instant", seed=3, endpoints=(DATA,), data_dir=tmp_path)
    webhook_client = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    core = Emulator.build(settings, clock=clock, http_client=webhook_client)
    app = create_app(emulator=core)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, headers=AUTH) as http,
    ):
        params = {"fal_webhook": "http://hooks.test/fal"}
        submitted = await http.post("/fal-ai/flux/schnell", json={"prompt": "a kite"}, params=params)
        assert submitted.status_code == 200
        result = await completed_by_id(http, clock, "fal-ai/flux", submitted.json()["request_id"])
        await wait_until(core.webhooks.dispatcher, lambda: len(hooked) == 1)
        payload = json.loads(hooked[0].content)
        assert payload["status"] == "OK"
        assert payload["payload"] == result.json()
        jwks = (await http.get("/.well-known/jwks.json")).json()
        assert verify(hooked[0].content, dict(hooked[0].headers), jwks, now=clock.now())


async def completed_by_id(http: httpx.AsyncClient, clock: ManualClock, app_id: str, request_id: str) -> httpx.Response:
    async def done() -> None:
        while (await http.get(f"/{app_id}/requests/{request_id}/status")).status_code != 200:
            clock.advance(1.0)

    await driven(clock, done())
    return await http.get(f"/{app_id}/requests/{request_id}")


async def test_a_built_in_scenario_works_on_a_loaded_endpoint(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """The ``[flaky]`` scenario's runner failures are retried by the queue, then the image output comes."""
    result = await completed(client, clock, "fal-ai/flux/schnell", {"prompt": "a boat [flaky]"})
    assert result.status_code == 200, result.text
    assert result.json()["images"][0]["url"].startswith(f"{BASE}/cdn/files/")


async def test_strict_file_inputs_refuse_a_url_the_emulator_cannot_load(tmp_path: Path) -> None:
    """With ``--file-inputs strict`` an image URL elsewhere fails the run with fal's file_download_error."""
    clock = ManualClock()
    settings = Settings(profile="instant", seed=1, endpoints=(DATA,), data_dir=tmp_path, file_inputs="strict")
    transport = httpx.ASGITransport(app=create_app(emulator=Emulator.build(settings, clock=clock)))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        result = await completed(http, clock, "fal-ai/esrgan", {"image_url": "https://example.com/a.png"})
        assert result.status_code == 422
        (item,) = result.json()["detail"]
        assert item["loc"] == ["body", "image_url"] and item["type"] == "file_download_error"


async def test_a_streamed_run_ends_with_the_generated_output(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """``/run/<id>/stream`` on a loaded endpoint sends the whole output as its one event."""
    body = {"image_url": "https://example.com/a.png"}
    response = await driven(clock, client.post("/run/fal-ai/esrgan/stream", json=body))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    (event,) = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(event.removeprefix("data: "))["image"]["content_type"] == "image/png"


async def status_of(http: httpx.AsyncClient, submitted: httpx.Response) -> dict[str, Any]:
    """The status (with logs) of a submitted request."""
    answer = await http.get(submitted.json()["status_url"].removeprefix(BASE), params={"logs": "1"})
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.parametrize("profile", ["instant", "realistic"])
async def test_a_fixtures_timing_and_logs_win_over_the_categorys_on_a_loaded_endpoint(
    tmp_path: Path, profile: str
) -> None:
    """A fixture's queue_wait and first_token_after (when the output comes) decide the run, in any profile."""
    fixture = tmp_path / "slow.yaml"
    fixture.write_text(
        "fixtures:\n"
        "  - name: slow-image\n"
        "    match: {endpoint: fal-ai/flux/schnell, prompt: {contains: '[slow]'}}\n"
        "    timing: {queue_wait: 5, first_token_after: 30}\n"
        "    logs: ['Warming the GPU']\n"
    )
    settings = Settings(profile=profile, seed=1, endpoints=(DATA,), fixtures=(fixture,), data_dir=tmp_path)
    clock = ManualClock()
    transport = httpx.ASGITransport(app=create_app(emulator=Emulator.build(settings, clock=clock)))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        submitted = await http.post("/fal-ai/flux/schnell", json={"prompt": "a lighthouse [slow]"})
        assert submitted.status_code == 200, submitted.text
        clock.advance(4.9)
        assert (await status_of(http, submitted))["status"] == "IN_QUEUE"
        clock.advance(0.1)
        running = await status_of(http, submitted)
        assert running["status"] == "IN_PROGRESS"
        assert [line["message"] for line in running["logs"]] == ["Running fal-ai/flux/schnell (text-to-image)"]
        clock.advance(29.9)
        midway = await status_of(http, submitted)
        assert midway["status"] == "IN_PROGRESS"
        assert "Warming the GPU" in [line["message"] for line in midway["logs"]]
        clock.advance(0.1)
        done = await status_of(http, submitted)
        assert done["status"] == "COMPLETED" and done.get("error") is None
        assert done["logs"][-1]["message"] == "Generated 1 image (1024x768) in 30.00s"
        result = await http.get(submitted.json()["response_url"].removeprefix(BASE))
        assert result.status_code == 200 and result.json()["images"]


async def test_a_lost_runner_fails_a_loaded_endpoints_run_half_way_after_its_progress(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """complete_with_error (runner_disconnected) ends an image run half way, after the progress logged by then."""
    fault = {"fault": {"kind": "complete_with_error", "error_type": "runner_disconnected"}}
    assert (await client.post("/_emulator/next", json=fault)).status_code == 201
    headers = {"x-fal-no-retry": "1"}
    submitted = await client.post("/fal-ai/flux/schnell", json={"prompt": "a kite"}, headers=headers)
    assert submitted.status_code == 200, submitted.text
    # Realistic: picked up after 0.25 s; one image runs 3 s, with progress lines every 0.6 s.
    clock.advance(0.25 + 1.4)
    running = await status_of(client, submitted)
    assert running["status"] == "IN_PROGRESS"
    assert [line["message"][:4] for line in running["logs"]] == ["Runn", " 25%", " 50%"]
    clock.advance(0.1)
    lost = await status_of(client, submitted)
    assert (lost["status"], lost["error_type"]) == ("COMPLETED", "runner_disconnected")
    messages = [line["message"] for line in lost["logs"]]
    assert messages[:3] == [line["message"] for line in running["logs"]]
    assert messages[3:] == ["Runner disconnected"] and lost["logs"][-1]["level"] == "ERROR"
    result = await client.get(submitted.json()["response_url"].removeprefix(BASE))
    assert result.status_code == 503
