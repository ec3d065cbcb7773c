"""A real emulator process (``python -m emulator serve``) and the environment ``env`` prints for it."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.runtime.testing import stop_process, wait_ready
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
READY_SECONDS = 30.0
# Variables that would point a child's client somewhere else than the emulator under test.
_CLIENT_VARIABLES = ("FAL_", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")


@dataclass
class EmulatorProcess:
    """A running ``serve`` process: its ports, data directory and the options it was given."""

    process: subprocess.Popen[bytes]
    port: int
    tls_port: int
    data_dir: Path
    options: tuple[str, ...]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def env_lines(self) -> str:
        """What ``any-llm-emulator env`` prints for this server, which it asks for its ports and CA bundle."""
        argv = [sys.executable, "-m", "emulator", "env", *self._address_options()]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60, cwd=ROOT).stdout

    def client_environment(self) -> dict[str, str]:
        """This process's environment without client settings, plus exactly what ``env`` exports."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_VARIABLES)}
        return {**base, **parse_exports(self.env_lines())}

    def _address_options(self) -> list[str]:
        return ["--host", "127.0.0.1", "--port", str(self.port)]


def parse_exports(script: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of a POSIX shell script, values unquoted as the shell would."""
    exports = {}
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            exports[name] = value
    return exports


@contextlib.contextmanager
def emulator_process(data_dir: Path, options: Sequence[str] = ()) -> Iterator[EmulatorProcess]:
    """Start ``python -m emulator serve`` on free ports with TLS; stop it, by its pid, on exit."""
    port, tls_port = free_port(), free_port()
    argv = [sys.executable, "-m", "emulator", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--tls-port", str(tls_port), "--data-dir", str(data_dir), *options]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANY_LLM_EMULATOR_")}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    server = EmulatorProcess(proc, port, tls_port, data_dir, tuple(options))
    try:
        wait_ready(f"{server.http_url}/_emulator/health", verify=False, deadline_seconds=READY_SECONDS, process=proc)
        bundle = data_dir / "tls" / "ca-bundle.pem"
        tls_context = ssl.create_default_context(cafile=bundle)
        wait_ready(
            f"{server.https_url}/_emulator/health", verify=tls_context, deadline_seconds=READY_SECONDS, process=proc
        )
        yield server
    finally:
        stop_process(proc, timeout=15)


def run_scenario(env: Mapping[str, str], name: str, **arguments: Any) -> Any:
    """Run one scenario of ``tests/fal_client_scenarios.py`` in a fresh interpreter; return its JSON answer."""
    argv = [sys.executable, "-m", "tests.fal_client_scenarios", name, json.dumps(arguments)]
    done = subprocess.run(argv, env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"scenario {name} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])
