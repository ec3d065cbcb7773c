"""The vision endpoint's image_urls: what loads, what does not, and how the run reports it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.images import ImageUrlCheck, looks_like_image
from emulator.core.storage import Storage
from emulator.endpoints.inputs import FileInputCheck, FilePolicy
from tests.conftest import AUTH

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(tmp_path, clock=ManualClock(), max_bytes=1024)


def stored(storage: Storage, data: bytes, content_type: str, url: str | None = None) -> str:
    key = storage.new_key(content_type, None)
    writer = storage.writer(key)
    writer.write(data)
    storage.commit(key, writer, content_type, None, None if url is None else url + key)
    return key


def kinds(check: ImageUrlCheck, urls: list[object]) -> list[str]:
    failure = check("fal-ai/any-llm/vision", {"image_urls": urls})
    return [] if failure is None else [entry["type"] for entry in failure.detail]


@pytest.mark.parametrize(
    "head", [PNG, b"\xff\xd8\xff\xe0rest", b"GIF89a....", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM\x00\x00"]
)
def test_raster_images_are_recognised(head: bytes) -> None:
    """PNG, JPEG, GIF, WebP and BMP signatures count as images."""
    assert looks_like_image(head)


def test_data_uris_and_own_uploads_load(storage: Storage) -> None:
    """An image data URI and an uploaded image, at loopback or fal CDN addresses, pass the check."""
    key = stored(storage, PNG, "image/png")
    urls = [PNG_URI, f"http://127.0.0.1:8000/cdn/files/{key}", f"https://localhost:8443/cdn/files/{key}"]
    urls.append(f"https://v3.fal.media/files/{key}")
    assert ImageUrlCheck(storage)("fal-ai/any-llm/vision", {"image_urls": urls}) is None


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://example.com/cat.png", "file_download_error"),
        ("http://127.0.0.1:9999/cat.png", "file_download_error"),
        ("https://v3.fal.media/files/koala/never-uploaded.png", "file_download_error"),
        ("ftp://example.com/cat.png", "url_parsing"),
        ("cat.png", "url_parsing"),
        ("data:image/png;base64,not-base64!", "image_load_error"),
        ("data:text/plain;base64,aGVsbG8=", "image_load_error"),
        ("data:image/png;base64,aGVsbG8=", "image_load_error"),
        (12, "string_type"),
    ],
)
def test_what_does_not_load(storage: Storage, url: object, kind: str) -> None:
    """Foreign or missing URLs are unreachable, others malformed, each with fal's error type."""
    assert kinds(ImageUrlCheck(storage), [url]) == [kind]


def test_another_host_name_loads_only_the_url_handed_out(storage: Storage) -> None:
    """Reached as http://emulator:8000, the emulator's own file URL loads; the same key elsewhere does not."""
    key = stored(storage, PNG, "image/png", url="http://emulator:8000/cdn/files/")
    check = ImageUrlCheck(storage)
    assert kinds(check, [f"http://emulator:8000/cdn/files/{key}"]) == []
    assert kinds(check, [f"http://elsewhere:8000/cdn/files/{key}"]) == ["file_download_error"]


def test_an_upload_that_is_no_image_does_not_load(storage: Storage) -> None:
    """A stored file whose bytes are not an image fails as image_load_error."""
    key = stored(storage, b"plain text", "text/plain")
    assert kinds(ImageUrlCheck(storage), [f"http://127.0.0.1/cdn/files/{key}"]) == ["image_load_error"]


def test_the_errors_name_each_image(storage: Storage) -> None:
    """Every failing image gets its own entry at ["body", "image_urls", index]; the run ends 422."""
    failure = ImageUrlCheck(storage)("fal-ai/any-llm/vision", {"image_urls": [PNG_URI, "x", "https://a.b/c"]})
    assert failure is not None and failure.status_code == 422
    assert [entry["loc"] for entry in failure.detail] == [["body", "image_urls", 1], ["body", "image_urls", 2]]
    assert failure.detail[1]["url"] == "https://docs.fal.ai/errors#file_download_error"


def test_image_urls_and_a_loaded_endpoints_image_urls_fail_alike(storage: Storage) -> None:
    """any-llm's image_urls and a loaded endpoint's (strict) give the same entry for each URL that does not load."""
    text = stored(storage, b"plain text", "text/plain")
    urls: list[object] = [
        "https://example.com/cat.png",
        "http://127.0.0.1:8000/cdn/files/koala/none.png",
        f"http://127.0.0.1/cdn/files/{text}",
        "ftp://example.com/cat.png",
        "not a url " * 30,
        "data:image/png;base64,!!!",
        7,
    ]
    vision = ImageUrlCheck(storage)("fal-ai/any-llm/vision", {"image_urls": urls})
    endpoint = FileInputCheck(storage, policy=FilePolicy.STRICT)("fal-ai/flux/dev", {"image_urls": urls})
    assert vision is not None and endpoint is not None
    assert vision.detail == endpoint.detail and len(vision.detail) == len(urls)
    # A long input is echoed cut short, as every entry's is.
    assert len(vision.detail[4]["input"]) == 120 and vision.detail[4]["input"].endswith("...")


@pytest.fixture
async def http(tmp_path: Path, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    emulator = Emulator.build(Settings(profile="instant", data_dir=tmp_path), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test", headers=AUTH) as client:
        yield client


@pytest.mark.anyio
async def test_a_bad_image_is_accepted_at_submit_and_fails_the_run(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """Submit answers 200; the completed request shows the error and its result is the 422 body."""
    body = {"prompt": "What is it?", "image_urls": ["https://example.com/cat.png"]}
    submitted = await http.post("/fal-ai/any-llm/vision", json=body)
    assert submitted.status_code == 200
    request_id = submitted.json()["request_id"]
    clock.advance(0)
    status = (await http.get(f"/fal-ai/any-llm/requests/{request_id}/status")).json()
    assert (status["status"], status["error"]) == ("COMPLETED", "Invalid status code: 422")
    result = await http.get(f"/fal-ai/any-llm/requests/{request_id}")
    assert result.status_code == 422
    assert result.json()["detail"][0]["loc"] == ["body", "image_urls", 0]
    assert result.json()["detail"][0]["type"] == "file_download_error"


@pytest.mark.anyio
async def test_an_uploaded_image_is_seen(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """An image uploaded to the CDN surface is a usable image_urls entry."""
    url = (await http.post("/cdn/files/upload", content=PNG, headers={"content-type": "image/png"})).json()[
        "access_url"
    ]
    body = {"prompt": "echo: seen", "image_urls": [url, PNG_URI]}
    request_id = (await http.post("/fal-ai/any-llm/vision", json=body)).json()["request_id"]
    clock.advance(0)
    result = await http.get(f"/fal-ai/any-llm/requests/{request_id}")
    assert result.json()["output"] == "echo: seen"
