"""What serving costs before and between requests: imports, kept records, the collector, body parsing."""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emulator import Emulator, ManualClock, Settings
from emulator.config import BUILTIN_FIXTURES
from emulator.core.fixture_files import FIXTURE_SUFFIXES, FixtureError, Fixtures, _fixture_file_is_valid, load_fixtures
from emulator.core.service import Call
from emulator.core.spec import load_yaml, parse_json
from emulator.runtime.serving import FULL_COLLECTION_EVERY, settle_garbage_collector

HEAVY = ["cryptography", "faker", "httpx", "jinja2", "jsonschema"]
# Loaded with the first call that needs them: the document and fixture parsers, the compiled
# checks, and the surfaces and dashboard pages behind ``emulator.http.lazy``.
LAZY = [
    "yaml",
    "jsonschema_rs",
    "starlette.staticfiles",
    "starlette.middleware.gzip",
    "emulator.http.ui.views",
    "emulator.core.openai_compat",
    "emulator.http.routes.openai",
    "emulator.http.routes.rest",
    "emulator.http.routes.cdn",
]


def _started_modules(*then: str) -> list[str]:
    """The modules of HEAVY and LAZY loaded once what ``serve`` imports is imported, the app built and ``then`` run."""
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        import emulator.runtime.cli, emulator.runtime.serving, emulator.runtime.clientenv
        from emulator.config import Settings
        from emulator.core.service import Emulator
        from emulator.http.app import create_app

        app = create_app(emulator=Emulator.build(Settings(profile="instant", tls_port=0)))
        """
    )
    script += "\n".join(then)
    script += f"\nprint(json.dumps([name for name in {HEAVY + LAZY!r} if name in sys.modules]))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    found: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.process
def test_start_up_loads_no_parser_and_no_surface_before_a_call_needs_it() -> None:
    """After start-up the parsers, compiled checks, dashboard pages and the lazily mounted surfaces are not loaded."""
    assert _started_modules() == []


@pytest.mark.process
def test_the_first_calls_load_what_they_need() -> None:
    """The health check loads no parser; a submit loads PyYAML and the compiled checks, a page and a chat theirs."""
    calls = textwrap.dedent(
        """
        import httpx

        async def calls():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                auth = {"Authorization": "Key a:b"}
                assert (await client.get("/_emulator/health")).status_code == 200
                assert "yaml" not in sys.modules and "jsonschema_rs" not in sys.modules  # not for the health check
                submitted = await client.post("/fal-ai/any-llm", json={"prompt": "hi"}, headers=auth)
                assert submitted.status_code == 200, submitted.text
                page = await client.get("/_emulator/ui/", headers={"accept": "text/html"})
                assert page.status_code == 200, page.text
                chat = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "echo: hi"}]}
                path = "/run/openrouter/router/openai/v1/chat/completions"
                answered = await client.post(path, json=chat, headers=auth)
                assert answered.status_code == 200, answered.text

        asyncio.run(calls())
        """
    )
    loaded = _started_modules(calls)
    for name in ("yaml", "jsonschema_rs", "emulator.http.ui.views", "emulator.core.openai_compat"):
        assert name in loaded
    assert "emulator.http.routes.cdn" not in loaded and "httpx" in loaded  # the client, not the server


@pytest.mark.process
def test_serving_imports_no_heavy_library_before_the_first_request() -> None:
    """Importing what ``serve`` imports and building the app loads none of the heavy libraries."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import emulator.runtime.cli, emulator.runtime.serving
        from emulator.config import Settings
        from emulator.core.service import Emulator
        from emulator.http.app import create_app

        create_app(emulator=Emulator.build(Settings(profile="instant", tls_port=0)))
        print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.anyio
async def test_a_completed_record_keeps_its_log_lines_once() -> None:
    """A completed request reports every log line in its status, and its plan no longer holds a copy."""
    clock = ManualClock()
    emulator = Emulator.build(Settings(profile="instant", seed=1), clock=clock)
    body = json.dumps({"prompt": "Hello"}).encode()
    accepted = await emulator.call(Call("submit", "ns", "fal-ai/any-llm", body=body))
    clock.advance(60)
    request_id = accepted.body["request_id"]
    status = await emulator.call(Call("status", "ns", "fal-ai/any-llm", request_id, query={"logs": "1"}))
    record = emulator.store.get("ns", request_id)
    assert record is not None and record.plan is not None
    assert status.body["status"] == "COMPLETED"
    assert [line["message"] for line in status.body["logs"]][-1].startswith("Generated ")
    assert len(status.body["logs"]) == len(record.logs) == 3
    assert record.plan.logs == ()


@pytest.mark.anyio
async def test_a_completed_records_log_lines_are_one_object_for_the_collector() -> None:
    """After a collection a completed record's lines are walked as one object, and read as the lines written."""
    clock = ManualClock()
    emulator = Emulator.build(Settings(profile="instant", seed=1), clock=clock)
    accepted = await emulator.call(Call("submit", "ns", "fal-ai/any-llm", body=b'{"prompt": "Hello"}'))
    clock.advance(60)
    record = emulator.store.get("ns", accepted.body["request_id"])
    assert record is not None and record.started_at is not None
    gc.collect()
    gc.collect()  # a tuple is let go once the tuples it holds were let go, in a pass before
    logs = record.logs
    held = [item for item in gc.get_referents(logs) if not isinstance(item, type)]
    assert len(held) == 1 and not gc.is_tracked(held[0])
    assert not any(gc.is_tracked(line) for line in held[0])
    lines = list(logs)
    assert lines[0].message.startswith("Running ") and len(lines) == len(logs) == 3
    assert all(line.level == "INFO" and line.source == "USER" and line.timestamp == record.started_at for line in lines)
    assert logs[1:] == lines[1:] and logs[-1] == lines[-1] and logs[-1].message.startswith("Generated ")


def test_an_integer_past_64_bits_stays_exact() -> None:
    """A body's 30-digit integer parses as that integer, not as the nearest float."""
    assert parse_json(b'{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}


def test_a_bom_and_an_overflowing_number_parse_as_before() -> None:
    """A UTF-8 byte-order mark is skipped and 1e999 reads as infinity, as Python's json parser does."""
    assert parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert parse_json(b"[1e999]") == [math.inf]


def test_an_invalid_fixture_file_still_says_where_it_is_wrong(tmp_path: Path) -> None:
    """A fixture file the compiled check refuses is reported with the path of the wrong field."""
    path = tmp_path / "bad.yaml"
    path.write_text("fixtures:\n  - name: broken\n    match: 12\n")
    with pytest.raises(FixtureError, match=r"bad\.yaml: at fixtures/0/match"):
        load_fixtures([path])


def test_every_bundled_fixture_file_passes_the_fixture_schema() -> None:
    """The bundled fixture files, which serving loads without the schema check, all pass it."""
    files = sorted(p for p in BUILTIN_FIXTURES.resolve().rglob("*") if p.suffix in FIXTURE_SUFFIXES)
    assert files
    for path in files:
        data = json.loads(path.read_text()) if path.suffix == ".json" else load_yaml(path.read_text())
        assert _fixture_file_is_valid(data), path


def test_settling_the_collector_freezes_the_start_up_heap_and_spaces_full_collections() -> None:
    """After start-up, the live heap is frozen and CPython's own full collections wait for many younger ones."""
    threshold = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[2] == FULL_COLLECTION_EVERY
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_bundled_fixtures_that_end_the_list_are_read_on_first_use(tmp_path: Path) -> None:
    """A user's fixture file is read (and checked) at once and matches first; the bundled ones load when used."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("fixtures:\n  - name: mine\n    match: {prompt: hi}\n    output: mine\n")
    fixtures = Fixtures([mine, BUILTIN_FIXTURES])
    assert [f.name for f in fixtures._fixtures] == ["mine"] and fixtures._deferred == [BUILTIN_FIXTURES]
    names = [f.name for f in fixtures]
    assert names[0] == "mine" and names[1:] == [f.name for f in load_fixtures([BUILTIN_FIXTURES])]
    assert len(fixtures) == len(names) and fixtures[0].name == "mine" and fixtures._deferred == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("fixtures:\n  - name: broken\n    match: 12\n")
    with pytest.raises(FixtureError, match=r"bad\.yaml"):
        Fixtures([bad, BUILTIN_FIXTURES])
