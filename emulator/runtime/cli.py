"""The command line: ``any-llm-emulator serve``, ``env`` and ``options-table``. Parsing only; the work is elsewhere.

Every ``serve`` option comes from the one declaration in ``emulator.config``; this module
only turns it into argparse arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from emulator.config import OPTIONS, Option, Settings, SettingsError, options_table
from emulator.core.fixture_files import FixtureError
from emulator.endpoints.documents import DocumentError
from emulator.store import StoreError

PROG = "any-llm-emulator"
TABLE_HEAD = "| Option |"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    text = f"{option.spec.help}; default {option.default_text} (env {option.env})"
    kwargs: dict[str, Any] = {"dest": option.field, "default": None, "help": text.replace("%", "%%")}
    if option.kind == "bool":
        kwargs.update(action="store_const", const=not option.spec.invert)
    else:
        types_ = {"int": int, "float": float, "path": Path, "paths": Path, "str": str}
        kwargs.update(type=types_[option.kind], metavar=option.spec.metavar)
        if option.kind == "paths":
            kwargs["action"] = "append"
        if option.spec.choices:
            kwargs.update(choices=option.spec.choices, metavar=None)
    parser.add_argument(option.flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="A local emulator of fal.ai's fal-ai/any-llm queue API: offline, no API key needed."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the emulator",
        description="Serve the queue surface at the root (as queue.fal.run) and the run surface "
        "under /run (as fal.run). Every option can also be set by the environment variable shown; "
        "a flag wins over its variable.",
    )
    env = commands.add_parser(
        "env",
        help="print the shell lines that point the official fal clients at a running emulator",
        description='Print POSIX shell lines for eval "$(any-llm-emulator env)": FAL_KEY, FAL_RUN_HOST, '
        "FAL_QUEUE_RUN_HOST and SSL_CERT_FILE for the Python client, and the fal.config(...) call for "
        "the JS client. It asks the emulator running at --host/--port for its TLS port and CA bundle.",
    )
    for option in OPTIONS:
        if "serve" in option.spec.commands:
            _add_option(serve, option)
        if "env" in option.spec.commands:
            _add_option(env, option)
    table = commands.add_parser("options-table", help="print the Markdown table of every option (docs/options.md)")
    table.add_argument("--update", type=Path, metavar="FILE", help="replace the table at the end of FILE instead")
    return parser


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The settings the environment and then the flags give (a flag wins over its variable)."""
    overrides: dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(args, option.field, None)
        overrides[option.field] = tuple(value) if option.kind == "paths" and value else value
    return Settings.from_env(environ, **overrides)


def serve(settings: Settings) -> None:
    from emulator.runtime.serving import serve_forever

    serve_forever(settings)


def env(settings: Settings) -> int:
    from emulator.runtime.clientenv import NoServerError, ask_running_server, env_script

    try:
        info = ask_running_server(settings)
    except NoServerError as exc:
        print(f"{PROG} env: error: {exc}", file=sys.stderr)
        return 1
    print(env_script(info.settings, info.ca_bundle), end="")
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        if args.command == "options-table":
            if args.update is None:
                print(options_table(), end="")
            else:
                text = args.update.read_text()
                args.update.write_text(text[: text.index(TABLE_HEAD)] + options_table())
            return 0
        settings = settings_from(args, environ)
        if args.command == "env":
            return env(settings)
        if args.command == "serve":
            serve(settings)
    except (SettingsError, FixtureError, StoreError, DocumentError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
