"""The core's one call per route, without HTTP: a lifecycle, fixture fault rules that go with their request."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from emulator import Emulator, ManualClock, Settings
from emulator.core.errors import Problem
from emulator.core.service import Call

pytestmark = pytest.mark.anyio
NS = "tenant"
ENDPOINT = "fal-ai/any-llm"


def test_a_request_lifecycle_runs_on_the_core_without_a_web_framework() -> None:
    """Submit, status and result through ``Emulator.call`` complete a request, and Starlette is never imported."""
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from emulator.config import Settings
        from emulator.core.clock import ManualClock
        from emulator.core.service import Call, Emulator

        async def main():
            clock = ManualClock()
            emulator = Emulator.build(Settings(profile="instant", seed=1), clock=clock)
            await emulator.start()
            body = json.dumps({"prompt": "echo: hello core"}).encode()
            accepted = await emulator.call(Call("submit", "ns", "fal-ai/any-llm", body=body, base_url="http://x"))
            request_id = accepted.body["request_id"]
            clock.advance(1)
            status = await emulator.call(Call("status", "ns", "fal-ai/any-llm", request_id))
            result = await emulator.call(Call("result", "ns", "fal-ai/any-llm", request_id))
            await emulator.stop()
            return accepted.body["status"], status.body["status"], result.status, result.body["output"]

        print(json.dumps([*asyncio.run(main()), "starlette" in sys.modules]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    accepted, status, code, output, starlette_loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert (accepted, status, code) == ("IN_QUEUE", "COMPLETED", 200)
    assert output == "echo: hello core"
    assert starlette_loaded is False


async def test_fixture_fault_rules_leave_nothing_behind() -> None:
    """Five ``[shaky]`` requests run to completion add no shared rule: their rules lived on their records."""
    clock = ManualClock()
    emulator = Emulator.build(Settings(profile="instant", seed=1), clock=clock)
    await emulator.start()
    before = len(emulator.faults.rules)
    ids = []
    for n in range(5):
        body = json.dumps({"prompt": f"[shaky] number {n}"}).encode()
        ids.append((await emulator.call(Call("submit", NS, ENDPOINT, body=body))).body["request_id"])
    clock.advance(5)
    for request_id in ids:
        # The fixture's rule answers the first two status polls of each request with a 503.
        for _ in range(2):
            with pytest.raises(Problem) as failed:
                await emulator.call(Call("status", NS, ENDPOINT, request_id))
            assert failed.value.status_code == 503
        assert (await emulator.call(Call("status", NS, ENDPOINT, request_id))).body["status"] == "COMPLETED"
    assert len(emulator.faults.rules) == before
    emulator.reset(NS)
    assert all(emulator.store.get(NS, request_id) is None for request_id in ids)
    await emulator.stop()


async def test_an_unknown_request_is_404_and_a_bad_body_is_422() -> None:
    """The core answers with fal's errors as Problems: 404 for an unknown id, 422 with details for a bad body."""
    emulator = Emulator.build(Settings(profile="instant"), clock=ManualClock())
    with pytest.raises(Problem) as missing:
        await emulator.call(Call("status", NS, ENDPOINT, "no-such-id"))
    assert missing.value.status_code == 404
    with pytest.raises(Problem) as invalid:
        await emulator.call(Call("run", NS, ENDPOINT, body=b'{"prompt": 5}'))
    assert invalid.value.status_code == 422
    assert invalid.value.body["detail"][0]["loc"] == ["body", "prompt"]
