"""The command line: options, environment variables, clear start-up errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emulator.config import Settings, SettingsError
from emulator.runtime.cli import build_parser, main, settings_from


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """serve --help lists each option with its environment variable."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for option in ("--host", "--port", "--fixtures", "--seed", "--profile", "--server", "--runners", "--clock"):
        assert option in text
    assert "ANY_LLM_EMULATOR_PORT" in text


def test_environment_then_flags() -> None:
    """Environment variables set defaults; flags override them."""
    args = build_parser().parse_args(["serve", "--port", "9001"])
    env = {"ANY_LLM_EMULATOR_PORT": "9000", "ANY_LLM_EMULATOR_PROFILE": "instant", "ANY_LLM_EMULATOR_SEED": "4"}
    settings = settings_from(args, env)
    assert (settings.port, settings.profile, settings.seed) == (9001, "instant", 4)


def test_model_and_proxy_options() -> None:
    """--any-model and --proxy reach the settings; their variables do too; the defaults are fal's behaviour."""
    assert (Settings().any_model, Settings().proxy) == (False, "server-proxy")
    args = build_parser().parse_args(["serve", "--any-model", "--proxy", "open"])
    assert (settings_from(args, {}).any_model, settings_from(args, {}).proxy) == (True, "open")
    env = {"ANY_LLM_EMULATOR_ANY_MODEL": "1", "ANY_LLM_EMULATOR_PROXY": "open"}
    settings = settings_from(build_parser().parse_args(["serve"]), env)
    assert (settings.any_model, settings.proxy) == (True, "open")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ANY_LLM_EMULATOR_PROXY": "wide"}, "proxy must be 'server-proxy' or 'open'"),
        ({"ANY_LLM_EMULATOR_PORT": "eighty"}, "is not a number"),
        ({"ANY_LLM_EMULATOR_PROFILE": "slow"}, "profile must be"),
        ({"ANY_LLM_EMULATOR_REQUIRE_AUTH": "perhaps"}, "is not a boolean"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    """A bad value says which setting and why."""
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_a_bad_fixture_file_stops_the_server_with_its_path(tmp_path: Path) -> None:
    """Starting with an invalid fixture file exits 2 naming the file, without a traceback."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("fixtures: [{output: no name}]")
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", "--fixtures", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "Traceback" not in result.stderr
