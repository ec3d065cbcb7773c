"""A pytest plugin: an any-llm emulator per test session, and an ``emulator`` fixture per test.

Installed with the package (``pytest11`` entry point), it needs no conftest. At start it
binds two loopback ports and sets the two variables ``fal_client`` reads when it is imported
(``FAL_RUN_HOST``, ``FAL_QUEUE_RUN_HOST``), before test modules import it. ``FAL_KEY`` and
``SSL_CERT_FILE`` are set only while a test that uses ``emulator`` runs, so other tests keep
the environment they had. The server itself starts in a thread the first time a test asks
for ``emulator``. Under pytest-xdist each worker runs its own. Turn the environment part off
with ``emulator_set_env = false`` in the ini file, or the whole plugin with
``-p no:any_llm_emulator``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.config import Settings
from emulator.runtime.testing import ServerThread, bind_loopback, serve_in_thread
from emulator.runtime.tls import ensure_certificates, server_names

_STATE_KEY = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "emulator_profile", "timing profile of the session's emulator (instant or realistic)", default="instant"
    )
    parser.addini("emulator_fixtures", "fixture files or folders for the session's emulator", type="paths", default=[])
    parser.addini(
        "emulator_set_env", "point fal_client at the emulator through FAL_* variables", type="bool", default=True
    )


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the xdist controller runs no tests; each worker has its own emulator
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    data_dir = Path(tempfile.mkdtemp(prefix="any-llm-emulator-"))
    plain, tls = bind_loopback(), bind_loopback()
    certificates = ensure_certificates(data_dir, server_names("127.0.0.1"))
    key = f"pytest-{worker}:secret"
    at_import = {
        "FAL_RUN_HOST": f"127.0.0.1:{tls.getsockname()[1]}/run",
        "FAL_QUEUE_RUN_HOST": f"127.0.0.1:{tls.getsockname()[1]}",
    }
    per_test = {"FAL_KEY": key, "SSL_CERT_FILE": str(certificates.bundle)}
    environment = {**at_import, **per_test}
    saved = {name: os.environ.get(name) for name in at_import}
    if config.getini("emulator_set_env"):
        os.environ.update(at_import)
    config.stash[_STATE_KEY] = {
        "data_dir": data_dir,
        "sockets": (plain, tls),
        "certificates": certificates,
        "key": key,
        "environment": environment,
        "per_test": per_test,
        "saved": saved,
    }


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is None:
        return
    _close_fal_client_connections()
    if config.getini("emulator_set_env"):
        for name, value in state["saved"].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    for sock in state["sockets"]:
        sock.close()
    shutil.rmtree(state["data_dir"], ignore_errors=True)


def _close_fal_client_connections() -> None:
    """Close the connections fal_client's module-level client keeps open to the emulator.

    The client caches one httpx client for the process and never closes it; left open, its
    sockets to a server that is going away end the run with ResourceWarnings.
    """
    fal_client = sys.modules.get("fal_client")
    client = getattr(fal_client, "sync_client", None)
    cached = getattr(client, "__dict__", {}).get("_client")
    if cached is not None:
        cached.close()


class EmulatorHandle:
    """One test's view of the session emulator: its namespace, control calls, client settings."""

    def __init__(self, server: ServerThread, key: str, environment: dict[str, str]) -> None:
        self.server = server
        self.key = key
        self.namespace = key.split(":", 1)[0]
        self.environment = environment
        self.url = server.base_url
        self.https_url = server.https_url
        self._control = httpx.Client(base_url=f"{server.base_url}/_emulator", timeout=30)

    @property
    def headers(self) -> dict[str, str]:
        """Headers for raw HTTP calls in this test's namespace."""
        return {"Authorization": f"Key {self.key}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._control.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Forget this namespace's requests, journal, rules and webhooks."""
        self._call("POST", "/reset", json={"namespace": self.namespace})

    def fail_next(
        self, status: int | None = None, *, count: int = 1, actions: tuple[str, ...] = ("submit", "run"), **fault: Any
    ) -> dict[str, Any]:
        """Make the next ``count`` matching calls fail: an HTTP ``status``, or any fault (``kind=...``)."""
        if status is not None:
            fault = {"kind": "http_error", "status": status, **fault}
        rule = {"namespace": self.namespace, "count": count, "actions": list(actions), "fault": fault}
        result: dict[str, Any] = self._call("POST", "/next", json=rule)
        return result

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        """What this namespace sent, oldest first (filters: method, path, status, request_id, limit)."""
        entries: list[dict[str, Any]] = self._call("GET", "/journal", params={"namespace": self.namespace, **filters})[
            "entries"
        ]
        return entries

    def requests(self) -> list[dict[str, Any]]:
        """This namespace's requests with their states."""
        found: list[dict[str, Any]] = self._call("GET", "/requests", params={"namespace": self.namespace})["requests"]
        return found

    def control(self, request_id: str, action: str, **body: Any) -> dict[str, Any]:
        """start, complete, fail, hold or release one request."""
        result: dict[str, Any] = self._call("POST", f"/requests/{request_id}/{action}", json=body)
        return result

    def advance(self, seconds: float) -> float:
        """Move the emulator's clock on (the whole session's clock); returns the new time."""
        now: float = self._call("POST", "/clock/advance", json={"seconds": seconds})["now"]
        return now

    def webhooks(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded webhook attempts, optionally for one request."""
        params = {} if request_id is None else {"request_id": request_id}
        attempts: list[dict[str, Any]] = self._call("GET", "/webhooks", params=params)["attempts"]
        return attempts

    def sync_client(self) -> Any:
        """A ``fal_client.SyncClient`` with this test's key (the module-level client caches its key)."""
        import fal_client

        return fal_client.SyncClient(key=self.key)

    def close(self) -> None:
        self._control.close()


@pytest.fixture(scope="session")
def emulator_server(pytestconfig: pytest.Config) -> Iterator[ServerThread]:
    """The session's emulator, started on the ports bound at configure time."""
    state = pytestconfig.stash.get(_STATE_KEY, None)
    if state is None:
        pytest.skip("the any-llm emulator plugin is not configured in this process")
    plain, tls = state["sockets"]
    settings = Settings(profile=pytestconfig.getini("emulator_profile"), data_dir=state["data_dir"])
    fixtures = tuple(Path(p) for p in pytestconfig.getini("emulator_fixtures"))
    if fixtures:
        settings = settings.replace(fixtures=fixtures)
    with serve_in_thread(settings, plain=plain, tls=tls, certificates=state["certificates"]) as server:
        try:
            yield server
        finally:
            # Closed before the server stops, so it has no client connection left to wait for.
            _close_fal_client_connections()


@pytest.fixture
def emulator(
    emulator_server: ServerThread, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmulatorHandle]:
    """A clean namespace on the session emulator, with the calls a test needs to steer it."""
    state = pytestconfig.stash[_STATE_KEY]
    if pytestconfig.getini("emulator_set_env"):
        for name, value in state["per_test"].items():
            monkeypatch.setenv(name, value)
    handle = EmulatorHandle(emulator_server, state["key"], state["environment"])
    handle.reset()
    try:
        from emulator.runtime.client import point_fal_client

        point_fal_client(emulator_server.https_url)
    except ImportError:  # fal-client is not installed: raw HTTP still works
        pass
    try:
        yield handle
    finally:
        handle.reset()
        handle.close()
