"""The pytest plugin as a user's project meets it: its environment stays with the tests that use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import certifi
import pytest

pytestmark = pytest.mark.process

USER_TESTS = """
import os

import certifi

def test_before_sees_its_own_environment():
    assert os.environ["SSL_CERT_FILE"] == certifi.where()
    assert os.environ["FAL_KEY"] == "users-own:key"

def test_with_the_emulator_sees_the_emulators(emulator):
    assert os.environ["SSL_CERT_FILE"].endswith("ca-bundle.pem")
    assert os.environ["FAL_KEY"] == emulator.key
    import fal_client
    assert fal_client.subscribe("fal-ai/any-llm", {"prompt": "echo: plugin"})["output"] == "echo: plugin"

def test_after_sees_its_own_environment_again():
    assert os.environ["SSL_CERT_FILE"] == certifi.where()
    assert os.environ["FAL_KEY"] == "users-own:key"
"""


def test_the_plugin_sets_fal_key_and_ssl_cert_file_only_for_tests_that_use_it(tmp_path: Path) -> None:
    """Tests without the emulator fixture keep FAL_KEY and SSL_CERT_FILE; the session ends without errors."""
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "SSL_CERT_FILE": certifi.where(), "FAL_KEY": "users-own:key"}
    env = {k: v for k, v in env.items() if not k.startswith(("PYTEST_", "ANY_LLM_EMULATOR_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:randomly", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    output = done.stdout + done.stderr
    assert "ERROR" not in output and "Cancel" not in output, output
