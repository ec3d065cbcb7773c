"""The command line: options, environment variables, clear start-up errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emulator import Emulator
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


@pytest.mark.parametrize(
    ("env", "message"),
    [
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


def test_user_fixtures_add_to_the_builtin_ones_and_come_first(tmp_path: Path) -> None:
    """--fixtures keeps the built-in echo fixture and matches the user's first; --no-builtin-fixtures drops it."""
    (tmp_path / "mine.yaml").write_text(
        "fixtures:\n  - name: mine\n    match: {prompt: {contains: 'echo: mine'}}\n    output: from the user\n"
    )

    def answer(argv: list[str], prompt: str) -> str:
        settings = settings_from(build_parser().parse_args(["serve", "--fixtures", str(tmp_path), *argv]), {})
        return Emulator.build(settings).outputs.answer("fal-ai/any-llm", {"prompt": prompt}).text

    assert answer([], "echo: hello") == "echo: hello"
    assert answer([], "echo: mine") == "from the user"
    assert answer(["--no-builtin-fixtures"], "echo: hello") != "echo: hello"
    assert Settings.from_env({"ANY_LLM_EMULATOR_BUILTIN_FIXTURES": "0"}).builtin_fixtures is False


def test_an_empty_fixture_folder_starts_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A folder with no fixture files is named in a warning, and the built-in fixtures still answer."""
    emulator = Emulator.build(Settings(fixtures=(tmp_path,)))
    assert any(str(tmp_path) in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert emulator.outputs.answer("fal-ai/any-llm", {"prompt": "echo: still here"}).text == "echo: still here"
