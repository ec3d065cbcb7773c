"""The queue hot path: which calls it takes, and that it answers them as the full stack does."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.errors import Problem
from emulator.core.spec import Spec
from emulator.endpoints.documents import load_documents
from emulator.http.common import header_of, headers_of, query_of
from emulator.http.front import QueueFront
from emulator.http.routes import proxy
from emulator.http.routes.queue import Target, parse_path
from tests.conftest import AUTH

pytestmark = pytest.mark.anyio


def scope(path: str, *, method: str = "GET", host: bytes | None = b"127.0.0.1:8000", root_path: str = "") -> Any:
    headers = [] if host is None else [(b"host", host)]
    return {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": headers}


@pytest.mark.parametrize(
    "path",
    ["/fal-ai/any-llm", "/fal-ai/any-llm/requests/abc/status", "/fal-ai/any-llm/requests/abc", "/nope", "//nope"],
)
def test_takes_queue_paths_on_the_emulators_own_host(path: str) -> None:
    """Queue-surface paths (and unknown ones, which the queue surface answers 404) on a plain host."""
    assert QueueFront().takes(scope(path))
    assert QueueFront().takes(scope(path, host=None))


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/", {}),
        ("/_emulator/health", {}),
        ("/run/fal-ai/any-llm", {}),
        ("/rest/storage/upload/initiate", {}),
        ("/cdn/files/x", {}),
        ("/openapi.json", {}),
        ("/.well-known/jwks.json", {}),
        ("/api/fal/proxy", {}),
        (proxy.PROXY_PATH, {}),
        (proxy.PROXY_PATH + "/", {}),
        ("/fal-ai/any-llm\n", {}),
        ("/fal-ai/any-llm", {"host": b"queue.fal.run"}),
        ("/fal-ai/any-llm", {"host": b"v3b.fal.media:443"}),
        ("/fal-ai/any-llm", {"method": "TRACE"}),
        ("/fal-ai/any-llm", {"root_path": "/mounted"}),
    ],
)
def test_leaves_everything_else_to_the_full_stack(path: str, kwargs: dict[str, Any]) -> None:
    """The root, other surfaces, fal's host names, the proxy path, odd methods, paths or mounts take the full stack."""
    assert not QueueFront().takes(scope(path, **kwargs))


async def answers(core: Emulator, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    if not fast:
        monkeypatch.setattr(QueueFront, "takes", lambda self, scope: False)
    app = create_app(emulator=core)
    seen: list[Any] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test", headers=AUTH) as http:
        submitted = await http.post("/fal-ai/any-llm", json={"prompt": "Same either way"})
        rid = submitted.json()["request_id"]
        calls = [
            http.get(f"/fal-ai/any-llm/requests/{rid}/status"),
            http.get(f"/fal-ai/any-llm/requests/{rid}"),
            http.post("/fal-ai/any-llm", json={"prompt": 3}),
            http.post("/fal-ai/any-llm", content=b"{not json", headers={"content-type": "application/json"}),
            http.get("/fal-ai/any-llm/requests/missing/status"),
            http.delete("/fal-ai/any-llm"),
            http.get("/nowhere/at-all"),
            http.get("/"),
            http.post("/", json={}),
            http.get(f"/fal-ai/any-llm/requests/{rid}/status", headers={"authorization": "Key broken"}),
            http.get(f"/fal-ai/any-llm/requests/{rid}/status", params={"fal_jwt_token": "not-a-token"}),
        ]
        for response in [submitted, *[await call for call in calls]]:
            headers = {k: v for k, v in response.headers.items() if k != "date"}
            seen.append((response.status_code, headers, response.content))
        journal = (await http.get("/_emulator/journal")).json()["entries"]
    seen.append([{k: v for k, v in e.items() if k not in ("duration_ms", "time")} for e in journal])
    return seen


async def test_the_hot_path_answers_as_the_full_stack_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each answer (status, headers, body) and each journal entry is the same with or without the hot path."""

    def core() -> Emulator:
        return Emulator.build(Settings(profile="realistic", seed=5), clock=ManualClock())

    fast = await answers(core(), fast=True, monkeypatch=monkeypatch)
    full = await answers(core(), fast=False, monkeypatch=monkeypatch)
    assert fast == full


def test_a_remembered_path_follows_the_endpoints_the_spec_gains() -> None:
    """A path is mapped once per set of endpoints: one added later changes what the same path addresses."""
    spec = Spec.load()
    template = load_documents([Path(__file__).parent / "data" / "fal-openapi"])[0]
    spec.add_endpoint(dataclasses.replace(template, endpoint_id="acme/tool/v2/requests/r1"))
    path = "acme/tool/v2/requests/r1"
    for _ in range(2):  # mapped, then remembered
        assert parse_path(path, spec) == Target("submit", "POST", path)
        with pytest.raises(Problem):
            parse_path("acme/tool/v2", spec)
    spec.add_endpoint(dataclasses.replace(template, endpoint_id="acme/tool/v2"))
    assert parse_path("acme/tool/v2", spec) == Target("submit", "POST", "acme/tool/v2")
    # ``acme/tool/v2`` is an endpoint now: the same path names request r1's result.
    assert parse_path(path, spec) == Target("result", "GET", "acme/tool/v2", "r1")


def test_a_calls_headers_read_as_starlettes_do() -> None:
    """The first value of a name, any case asked, and the default (never an error) for one that is absent."""
    raw = [(b"x-fal-no-retry", b"1"), (b"content-length", b"12"), (b"x-fal-no-retry", b"0")]
    request = Request({"type": "http", "headers": raw})
    headers = headers_of(request)
    for name in ("x-fal-no-retry", "X-Fal-No-Retry", "content-length", "x-emulator-webhook-mode"):
        assert headers.get(name) == request.headers.get(name)
        assert header_of(request, name.lower().encode()) == request.headers.get(name)
    assert headers.get("x-fal-no-retry") == "1" and headers.get("absent", "none") == "none"
    assert headers["content-length"] == "12" and "absent" not in headers


def test_a_calls_query_reads_as_starlettes_does() -> None:
    """Each query string (short ones remembered, long ones not) reads as ``request.query_params``, again and again."""
    strings = [b"logs=1", b"logs=0", b"logs=1&logs=0", b"a=%20b&c", b"logs=1&pad=" + b"p" * 300, b"logs=1"]
    for raw in [*strings, *strings]:
        request = Request({"type": "http", "headers": [], "query_string": raw})
        fresh = Request({"type": "http", "headers": [], "query_string": raw}).query_params
        assert dict(query_of(request)) == dict(fresh) and query_of(request).get("logs") == fresh.get("logs")
    assert query_of(Request({"type": "http", "headers": [], "query_string": b""})) == {}


async def test_an_unexpected_error_is_answered_and_journalled_on_either_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answered the same on the hot path and the full stack (fal's JSON shape), and journalled by both."""

    async def broken(self: Emulator, call: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(Emulator, "call", broken)
    answers = []
    for fast in (True, False):
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(QueueFront, "takes", lambda self, scope: False)
            core = Emulator.build(Settings(), clock=ManualClock())
            transport = httpx.ASGITransport(app=create_app(emulator=core), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test", headers=AUTH) as http:
                response = await http.get("/fal-ai/any-llm/requests/abc/status")
            answers.append((response.status_code, response.json()))
            [entry] = core.journal.entries()
            assert entry.path == "/fal-ai/any-llm/requests/abc/status"
            assert (entry.status, entry.namespace) == (500, "test-key")
            assert entry.duration_ms is not None
    assert answers[0] == answers[1] == (500, {"detail": "Internal emulator error: RuntimeError: boom"})
