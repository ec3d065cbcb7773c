"""The rest and cdn surfaces in process: uploads as both official clients make them, files, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from tests.conftest import AUTH

pytestmark = pytest.mark.anyio
BASE = "http://emulator.test"


@pytest.fixture
def storage_settings(tmp_path: Path) -> Settings:
    return Settings(profile="instant", data_dir=tmp_path, max_upload_bytes=64)


@pytest.fixture
async def http(storage_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of an emulator that keeps files of at most 64 bytes."""
    app = create_app(emulator=Emulator.build(storage_settings, clock=ManualClock()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, headers=AUTH) as client:
        yield client


async def test_js_style_upload_initiate_then_put(http: httpx.AsyncClient) -> None:
    """initiate answers upload and file URLs on this server; the PUT stores the bytes served back with their type."""
    body = {"content_type": "image/png", "file_name": "cat.png"}
    urls = (await http.post("/rest/storage/upload/initiate?storage_type=fal-cdn-v3", json=body)).json()
    assert urls["upload_url"].startswith(f"{BASE}/cdn/uploads/")
    assert urls["file_url"].startswith(f"{BASE}/cdn/files/") and urls["file_url"].endswith(".png")
    put = await http.put(urls["upload_url"], content=b"\x89PNG\r\n\x1a\nbytes", headers={"content-type": "image/png"})
    assert put.status_code == 200
    got = await http.get(urls["file_url"])
    assert (got.status_code, got.headers["content-type"], got.content) == (200, "image/png", b"\x89PNG\r\n\x1a\nbytes")
    again = await http.put(urls["upload_url"], content=b"other")
    assert again.status_code == 404


async def test_initiate_needs_credentials(http: httpx.AsyncClient) -> None:
    """Without an Authorization header, initiate answers 401 like the other surfaces."""
    response = await http.post("/rest/storage/upload/initiate", json={}, headers={"authorization": ""})
    assert response.status_code == 401


async def test_initiate_with_a_bad_body_is_a_422(http: httpx.AsyncClient) -> None:
    """A body that is not a JSON object of strings answers 422 in FastAPI's shape."""
    response = await http.post("/rest/storage/upload/initiate", json={"content_type": 5})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "content_type"]


async def test_python_style_token_then_cdn_upload(http: httpx.AsyncClient) -> None:
    """The token has a timezone-aware expiry in the future; the CDN upload answers the file's access_url."""
    token = (await http.post("/rest/storage/auth/token?storage_type=fal-cdn-v3", json={})).json()
    expires = datetime.fromisoformat(token["expires_at"])
    assert expires.tzinfo is not None and expires > datetime(2025, 1, 1, tzinfo=UTC)
    assert token["base_url"] == f"{BASE}/cdn"
    headers = {"authorization": f"{token['token_type']} {token['token']}", "content-type": "text/plain"}
    uploaded = await http.post("/cdn/files/upload", content=b"hello", headers={**headers, "x-fal-file-name": "a.txt"})
    assert uploaded.status_code == 200
    url = uploaded.json()["access_url"]
    assert url.startswith(f"{BASE}/cdn/files/") and url.endswith(".txt")
    assert (await http.get(url)).text == "hello"


async def test_python_style_multipart(http: httpx.AsyncClient) -> None:
    """Parts PUT under the access URL answer an etag header; complete joins them by number, whatever the list order."""
    started = (await http.post("/cdn/files/upload/multipart", headers={"content-type": "text/plain"})).json()
    url, upload_id = started["access_url"], started["uploadId"]
    etags = []
    for number, chunk in ((1, b"one "), (2, b"two")):
        part = await http.put(f"{url}/multipart/{upload_id}/{number}", content=chunk)
        assert part.status_code == 200
        etags.append(part.headers["etag"])
    parts = [{"partNumber": n, "etag": e} for n, e in reversed(list(zip((1, 2), etags, strict=True)))]
    done = await http.post(f"{url}/multipart/{upload_id}/complete", json={"parts": parts})
    assert done.json()["access_url"] == url
    assert (await http.get(url)).text == "one two"


async def test_js_style_multipart(http: httpx.AsyncClient) -> None:
    """initiate-multipart, part PUTs answering {partNumber, etag}, then complete at the upload URL."""
    body = {"content_type": "text/plain", "file_name": "big.txt"}
    urls = (await http.post("/rest/storage/upload/initiate-multipart", json=body)).json()
    answers = [(await http.put(f"{urls['upload_url']}/{n}", content=c)).json() for n, c in ((1, b"a"), (2, b"b"))]
    assert [a["partNumber"] for a in answers] == [1, 2]
    done = await http.post(f"{urls['upload_url']}/complete", json={"parts": answers})
    assert done.status_code == 200
    assert (await http.get(urls["file_url"])).text == "ab"


async def test_completing_without_every_part_is_a_400(http: httpx.AsyncClient) -> None:
    """complete naming a part never received answers 400 saying which."""
    urls = (await http.post("/rest/storage/upload/initiate-multipart", json={})).json()
    await http.put(f"{urls['upload_url']}/1", content=b"a")
    done = await http.post(f"{urls['upload_url']}/complete", json={"parts": [{"partNumber": 1}, {"partNumber": 2}]})
    assert done.status_code == 400
    assert "[2]" in done.json()["detail"]


@pytest.mark.parametrize("style", ["put", "cdn", "parts"])
async def test_uploads_over_the_limit_are_413(http: httpx.AsyncClient, style: str) -> None:
    """A single upload, a CDN upload or parts adding up past --max-upload-bytes answer 413 and keep nothing."""
    if style == "put":
        urls = (await http.post("/rest/storage/upload/initiate", json={})).json()
        response = await http.put(urls["upload_url"], content=b"x" * 65)
    elif style == "cdn":
        response = await http.post("/cdn/files/upload", content=b"x" * 65)
    else:
        urls = (await http.post("/rest/storage/upload/initiate-multipart", json={})).json()
        assert (await http.put(f"{urls['upload_url']}/1", content=b"x" * 40)).status_code == 200
        response = await http.put(f"{urls['upload_url']}/2", content=b"x" * 40)
    assert response.status_code == 413
    assert response.json()["detail"] == "File is larger than the upload limit of 64 bytes (--max-upload-bytes)"


@pytest.mark.parametrize(
    "path", ["/cdn/files/koala/nothere.png", "/cdn/files/%2E%2E/%2E%2E/tls/ca-key.pem", "/cdn/files/x"]
)
async def test_unknown_files_are_404(http: httpx.AsyncClient, path: str) -> None:
    """A file never uploaded (or a path that is no key) answers 404 JSON, never a file outside the store."""
    response = await http.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "File not found"}


async def test_files_survive_a_restart(storage_settings: Settings) -> None:
    """Files live in the data directory: a new emulator on the same directory serves them."""
    for round_ in range(2):
        app = create_app(emulator=Emulator.build(storage_settings, clock=ManualClock()))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as client:
            if round_ == 0:
                url = (await client.post("/cdn/files/upload", content=b"kept")).json()["access_url"]
            else:
                assert (await client.get(url)).content == b"kept"
