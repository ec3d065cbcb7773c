"""Client-side tokens (``POST /tokens/``) and realtime connections, in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.types import Message

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.tokens import Tokens
from emulator.http.routes.realtime import REASON
from tests.conftest import AUTH
from tests.helpers import drive

pytestmark = pytest.mark.anyio
APP = {"allowed_apps": ["any-llm"], "token_expiration": 120}


@pytest.fixture
def core(tmp_path: Path, clock: ManualClock) -> Emulator:
    return Emulator.build(Settings(profile="instant", data_dir=tmp_path), clock=clock)


@pytest.fixture
async def http(core: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test") as client:
        yield client


async def issue(http: httpx.AsyncClient, body: object = APP) -> str:
    response = await http.post("/rest/tokens/", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    token = response.json()
    assert isinstance(token, str)
    return token


async def test_a_token_runs_its_app_from_the_query_or_as_bearer(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """The token is a JSON string; the run surface takes it as ?fal_jwt_token= and as Authorization: Bearer."""
    token = await issue(http)
    by_query = http.post("/run/fal-ai/any-llm/stream", params={"fal_jwt_token": token}, json={"prompt": "echo: q"})
    streamed = await drive(clock, by_query)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    by_bearer = http.post(
        "/run/fal-ai/any-llm", headers={"authorization": f"Bearer {token}"}, json={"prompt": "echo: b"}
    )
    assert (await drive(clock, by_bearer)).json()["output"] == "echo: b"


async def test_a_token_acts_for_the_key_that_asked_for_it(
    http: httpx.AsyncClient, core: Emulator, clock: ManualClock
) -> None:
    """A request made with a token belongs to the issuing key's namespace."""
    token = await issue(http)
    queued = await http.post("/fal-ai/any-llm", params={"fal_jwt_token": token}, json={"prompt": "hi"})
    assert queued.status_code == 200
    status = await http.get(f"/fal-ai/any-llm/requests/{queued.json()['request_id']}/status", headers=AUTH)
    assert status.status_code in (200, 202)


async def test_a_token_expires_on_the_emulators_clock(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """After token_expiration seconds of emulator time the token is refused with 401."""
    token = await issue(http, {"allowed_apps": ["any-llm"], "token_expiration": 5})
    clock.advance(5)
    response = await http.post("/run/fal-ai/any-llm", params={"fal_jwt_token": token}, json={"prompt": "hi"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize(
    ("apps", "token_change", "message"),
    [
        (["other-app"], None, "valid for other-app, not for any-llm"),
        (["any-llm"], "tamper", "not issued by this emulator"),
    ],
)
async def test_a_token_for_another_app_or_altered_is_refused(
    http: httpx.AsyncClient, apps: list[str], token_change: str | None, message: str
) -> None:
    """A token only opens the apps it names, and only as it was signed."""
    token = await issue(http, {"allowed_apps": apps, "token_expiration": 60})
    if token_change == "tamper":
        header, claims, signature = token.split(".")
        token = f"{header}.{claims}.{signature[::-1]}"
    response = await http.post("/run/fal-ai/any-llm", params={"fal_jwt_token": token}, json={"prompt": "hi"})
    assert response.status_code == 401
    assert message in response.json()["detail"]


async def test_a_token_cannot_ask_for_more_tokens(http: httpx.AsyncClient) -> None:
    """/tokens/ wants the key itself: a Bearer token is refused there."""
    token = await issue(http)
    response = await http.post("/rest/tokens/", json=APP, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "locs"),
    [
        ({}, [["body", "allowed_apps"]]),
        ({"allowed_apps": [], "token_expiration": 10}, [["body", "allowed_apps"]]),
        ({"allowed_apps": ["any-llm"], "token_expiration": 0}, [["body", "token_expiration"]]),
        ({"allowed_apps": ["any-llm"], "token_expiration": "soon"}, [["body", "token_expiration"]]),
        ([1], [["body"]]),
        (None, [["body"]]),
    ],
)
async def test_a_bad_token_request_is_a_422(http: httpx.AsyncClient, body: object, locs: list[list[str]]) -> None:
    """Token requests are checked field by field, FastAPI-style."""
    response = await http.post("/rest/tokens/", json=body, headers=AUTH)
    assert response.status_code == 422
    assert [item["loc"] for item in response.json()["detail"]] == locs


async def test_tokens_need_a_key(http: httpx.AsyncClient) -> None:
    """Asking for a token without credentials is a 401."""
    response = await http.post("/rest/tokens/", json=APP)
    assert response.status_code == 401


async def test_a_bearer_credential_that_is_not_ours_is_still_a_plain_namespace(http: httpx.AsyncClient) -> None:
    """Bearer credentials the emulator did not issue keep working as before: any caller may use one."""
    response = await http.post(
        "/fal-ai/any-llm", headers={"authorization": "Bearer some.other.jwt"}, json={"prompt": "hi"}
    )
    assert response.status_code == 200


def test_the_token_is_a_jwt_naming_its_apps(clock: ManualClock) -> None:
    """Tokens carry fal's request as JWT claims: the apps, the namespace and the expiry."""
    tokens = Tokens(clock, b"secret")
    token = tokens.issue("team", ["any-llm"], 120)
    assert Tokens.claims_of(token) == {
        "iss": "any-llm-emulator",
        "sub": "team",
        "allowed_apps": ["any-llm"],
        "exp": int(clock.now()) + 120,
    }
    assert tokens.check(token, "any-llm").namespace == "team"


async def websocket_messages(core: Emulator, path: str) -> list[Message]:
    """Drive the app with one WebSocket handshake (hand-written ASGI) and return what it sent."""
    app = create_app(emulator=core)
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # the client says nothing more; the bound below ends a hang
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"fal_jwt_token=x",
        "headers": [(b"host", b"emulator.test")],
        "server": ("emulator.test", 80),
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        "extensions": {},
    }
    with anyio.fail_after(10):
        await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("path", ["/run/fal-ai/any-llm/realtime", "/fal-ai/any-llm/ws", "/anything"])
async def test_a_websocket_is_closed_at_once_with_the_reason(core: Emulator, path: str) -> None:
    """Realtime connections are accepted and closed straight away with code 1008 and a reason clients show."""
    sent = await websocket_messages(core, path)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert (sent[1]["code"], sent[1]["reason"]) == (1008, REASON)
    assert len(REASON.encode()) <= 123


async def test_the_journal_files_a_token_call_under_the_issuing_key(http: httpx.AsyncClient, core: Emulator) -> None:
    """A call made with a token shows up in the journal under the key that asked for the token."""
    token = await issue(http)
    await http.post("/fal-ai/any-llm", params={"fal_jwt_token": token}, json={"prompt": "hi"})
    entry = core.journal.entries(path="/fal-ai/any-llm")[-1]
    assert entry.namespace == "test-key"
