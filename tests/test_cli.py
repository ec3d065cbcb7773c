"""The command line: options, environment variables, clear start-up errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from emulator import Emulator
from emulator.config import OPTIONS, Option, Settings, SettingsError, options_table
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


@pytest.mark.process
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


def _sample(option: Option) -> str:
    """A valid value of the option's type, as a user would type it."""
    if option.spec.choices:
        return option.spec.choices[-1]
    return {"int": "7", "float": "0.5", "str": "example", "bool": "1", "path": "/tmp/x", "paths": "/tmp/a"}[option.kind]


def _expected(option: Option, raw: str) -> object:
    value = option.parse(raw, option.env)
    return (not value) if option.spec.invert else value


def test_every_setting_is_an_option_with_a_flag_and_a_variable() -> None:
    """Each Settings field is declared as an option whose variable is ANY_LLM_EMULATOR_ plus its flag."""
    assert [option.field for option in OPTIONS] == [item.name for item in dataclasses.fields(Settings)]
    for option in OPTIONS:
        assert option.env == "ANY_LLM_EMULATOR_" + option.flag.removeprefix("--").replace("-", "_").upper()


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.flag)
def test_each_option_is_set_by_its_variable_and_by_its_flag(option: Option) -> None:
    """The variable and the flag of every option set the same field to the same value."""
    raw = _sample(option)
    from_env = Settings.from_env({option.env: raw})
    assert getattr(from_env, option.field) == _expected(option, raw)
    argv = ["serve", option.flag] if option.kind == "bool" else ["serve", option.flag, raw]
    from_flag = settings_from(build_parser().parse_args(argv), {})
    assert getattr(from_flag, option.field) == getattr(from_env, option.field)


def test_no_auth_follows_the_naming_rule_and_the_old_variables_still_work() -> None:
    """ANY_LLM_EMULATOR_NO_AUTH=1 is --no-auth; the older REQUIRE_AUTH=0 and SPEC_PATH keep working."""
    assert Settings.from_env({"ANY_LLM_EMULATOR_NO_AUTH": "1"}).require_auth is False
    assert Settings.from_env({"ANY_LLM_EMULATOR_NO_AUTH": "0"}).require_auth is True
    assert Settings.from_env({"ANY_LLM_EMULATOR_REQUIRE_AUTH": "0"}).require_auth is False
    assert Settings.from_env({"ANY_LLM_EMULATOR_SPEC_PATH": "/tmp/x.yaml"}).spec_path == Path("/tmp/x.yaml")


def test_help_names_every_flag_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """serve --help shows each serve option's flag and environment variable."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in OPTIONS:
        assert option.flag in text and option.env in text


def test_a_wrong_type_on_the_command_line_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """--port abc exits 2 with one line naming the option, not the whole usage."""
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", "abc"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--port" in err and "'abc'" in err


def test_the_data_dir_defaults_to_the_given_environment() -> None:
    """Without --data-dir the data directory comes from the environment passed in, XDG_DATA_HOME first."""
    settings = Settings.from_env({"XDG_DATA_HOME": "/srv/data"})
    assert settings.data_dir == Path("/srv/data/any-llm-emulator")
    assert Settings.from_env({"XDG_DATA_HOME": "/srv/data", "ANY_LLM_EMULATOR_DATA_DIR": "/d"}).data_dir == Path("/d")


def test_the_options_document_holds_the_generated_table() -> None:
    """docs/options.md contains the table options_table() makes from the declaration (regenerate it if not)."""
    document = (Path(__file__).parent.parent / "docs" / "options.md").read_text()
    assert options_table() in document, "run: python -m emulator.runtime.cli options-table"


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
