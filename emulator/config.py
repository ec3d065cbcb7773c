"""Settings: one declaration that makes the frozen settings, the command line, the environment and the docs.

Each field of ``Settings`` carries its option metadata (help, flag, choices). From it come the
``serve`` arguments (``emulator.runtime.cli``), the ``ANY_LLM_EMULATOR_<OPTION>`` variable of
every option, and the options table in ``docs/options.md`` (``options_table()``). The rule for a
name: the flag without its dashes, upper-cased, after the prefix: ``--no-auth`` is
``ANY_LLM_EMULATOR_NO_AUTH``, ``--max-body-bytes`` is ``ANY_LLM_EMULATOR_MAX_BODY_BYTES``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
# The emulated API's contract (``emulator.core.spec`` loads it), bundled with the package.
DEFAULT_SPEC_PATH = PACKAGE_DIR / "openapi.yaml"
BUILTIN_FIXTURES = PACKAGE_DIR / "fixtures"
ENV_PREFIX = "ANY_LLM_EMULATOR_"
# Where, inside the data directory, the local CA and the clients' CA bundle are kept.
TLS_SUBDIR = "tls"
CA_BUNDLE_FILE = "ca-bundle.pem"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """Where the emulator keeps what outlives a run (keys, certificates, uploads): XDG data home."""
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "any-llm-emulator"


class SettingsError(ValueError):
    """A setting with a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class OptionSpec:
    """How one setting is offered to a user: its help, flag, choices and where it applies."""

    help: str
    flag: str | None = None  # the command-line flag; by default --the-field-name
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    default_text: str | None = None  # the default as the help and the docs show it
    invert: bool = False  # a flag that sets a true-by-default field to false (--no-auth)
    commands: tuple[str, ...] = ("serve",)
    legacy_env: tuple[str, ...] = ()  # older variable names still read, in the field's own sense


def _option(default: Any = None, help: str = "", *, factory: Any = None, **spec: Any) -> Any:
    metadata = {"option": OptionSpec(help, **spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _data_dir_from_process() -> Path:
    # Settings built in code (tests, embedding) get the same default as the command line.
    return default_data_dir(os.environ)


@dataclass(frozen=True)
class Settings:
    """Everything the emulator can be told at start."""

    host: str = _option(
        "127.0.0.1",
        "interface to bind; a non-loopback address without --control-token exposes the control API (a warning)",
        commands=("serve", "env"),
    )
    port: int = _option(8000, "HTTP port; 0 picks a free one", commands=("serve", "env"))
    tls_port: int = _option(
        8443,
        "HTTPS port beside the HTTP one (the Python client speaks only https); 0 turns TLS off; "
        "when the default port is taken a free one is used instead",
    )
    fixtures: tuple[Path, ...] = _option(
        (),
        "fixture file or folder, repeatable (colon-separated in the environment); added to the built-in "
        "fixtures and matched before them",
        metavar="PATH",
        default_text="none",
    )
    endpoints: tuple[Path, ...] = _option(
        (),
        "fal endpoint OpenAPI document (JSON or YAML) or folder of them, repeatable (colon-separated in "
        "the environment); each adds its endpoint with the full queue and run surfaces",
        metavar="PATH",
        default_text="none",
    )
    file_inputs: str = _option(
        "offline",
        "file URLs in a loaded endpoint's input (image_url, ...) that are neither data URIs nor uploads "
        "to this emulator: 'offline' accepts them unchecked, 'strict' fails the request with fal's 422",
        choices=("offline", "strict"),
    )
    builtin_fixtures: bool = _option(
        True,
        "leave the built-in fixtures (echo:, the scenarios) out",
        flag="--no-builtin-fixtures",
        invert=True,
        default_text="off (the built-in fixtures are loaded)",
        legacy_env=("BUILTIN_FIXTURES",),
    )
    seed: int | None = _option(None, "seed for request ids and generated text", default_text="random")
    profile: str = _option(
        "realistic",
        "timing: 'instant' answers without artificial delay (for CI), 'realistic' adds a queue wait, "
        "a time to first token and a per-model token rate",
        choices=("instant", "realistic"),
    )
    server: str = _option("uvicorn", "ASGI server", choices=("uvicorn", "hypercorn"))
    loop: str = _option(
        "asyncio",
        "event loop: 'asyncio' serves every connection in turn; 'uvloop' (when installed) answers a few "
        "per cent more calls a second, but under full load leaves some connections waiting far longer "
        "than the rest",
        choices=("asyncio", "uvloop"),
    )
    runners: int = _option(2, "concurrent runners per API key")
    clock: str = _option(
        "system", "'manual' stops time until the control API advances it", choices=("system", "manual")
    )
    store: str = _option(
        "memory",
        "where requests are kept: 'memory', 'sqlite:///path/to/file.db' to survive restarts, "
        "'redis://host:port/db' to share one queue between processes",
        metavar="URL",
    )
    max_body_bytes: int = _option(32 * 1024 * 1024, "largest accepted request body")
    max_upload_bytes: int = _option(512 * 1024 * 1024, "largest file the storage surface keeps")
    max_header_bytes: int = _option(
        64 * 1024, "largest request head (request line and headers); a bigger one is answered 431"
    )
    retention_seconds: float = _option(3600.0, "how long finished requests are kept")
    retention_count: int = _option(100_000, "how many finished requests are kept")
    require_auth: bool = _option(
        True,
        "accept requests without an Authorization header",
        flag="--no-auth",
        invert=True,
        default_text="off (a key is required)",
        legacy_env=("REQUIRE_AUTH",),
    )
    keepalive_seconds: float = _option(15.0, "interval of keep-alive comments on idle event streams")
    data_dir: Path = _option(
        help="keeps the local CA, webhook signing keys and uploads; must be writable",
        factory=_data_dir_from_process,
        default_text="$XDG_DATA_HOME/any-llm-emulator",
        metavar="DIR",
    )
    concurrency_limit: int = _option(
        0,
        "requests of one key running at once: more queued ones wait, a sync run over it answers 429; 0 means no limit",
    )
    control_token: str | None = _option(
        None,
        "require this token (X-Emulator-Token or Bearer) on /_emulator/ calls",
        default_text="none",
        commands=("serve", "env"),
    )
    journal_size: int = _option(1000, "requests kept in the journal; 0 turns it off")
    journal_body_bytes: int = _option(4096, "bytes of each body the journal keeps")
    webhook_time_scale: float = _option(
        1.0,
        "multiplies webhook retry delays and timeouts (fal's 10 attempts over 2 hours); "
        "0.001 runs the whole schedule in about 7 s",
    )
    webhook_senders: int = _option(16, "concurrent webhook POSTs")
    queue_retries: int = _option(
        10,
        "times the queue runs a request again after a runner failure (503, 504), as fal does; "
        "x-fal-no-retry turns it off per request",
    )
    validate_at_submit: bool = _option(
        False,
        "answer 422 to a queued submit whose body breaks the input schema (fal's queue accepts it and "
        "the request fails with the 422 when it runs)",
    )
    spec_path: Path = _option(
        DEFAULT_SPEC_PATH,
        "the OpenAPI document of what every endpoint shares (queue operations, parameters, errors); "
        "each endpoint's input and output come from its fal document",
        default_text="the bundled openapi.yaml",
        flag="--spec",
        metavar="FILE",
        legacy_env=("SPEC_PATH",),
    )
    any_model: bool = _option(
        False, "accept any 'provider/name' as any-llm's model, not only fal's list (not fal's behaviour)"
    )
    proxy: str = _option(
        "server-proxy",
        "the JS proxy path: 'server-proxy' forwards what @fal-ai/server-proxy forwards by default, "
        "'open' every fal host",
        choices=("server-proxy", "open"),
    )
    access_log: bool = _option(False, "log every request (slower)")
    shutdown_seconds: float = _option(
        5.0, "on SIGTERM or Ctrl-C, how long open streams and waiting callers get before they are answered 503"
    )

    def __post_init__(self) -> None:
        problems = []
        for option in OPTIONS:
            value = getattr(self, option.field)
            if option.spec.choices and value not in option.spec.choices:
                allowed = " or ".join(repr(choice) for choice in option.spec.choices)
                problems.append(f"{option.field} must be {allowed}, not {value!r}")
        if self.runners < 1:
            problems.append("runners must be at least 1")
        for name in ("port", "tls_port"):
            if not 0 <= getattr(self, name) <= 65535:
                problems.append(f"{name} must be between 0 and 65535, not {getattr(self, name)}")
        if self.concurrency_limit < 0 or self.journal_size < 0 or self.journal_body_bytes < 0:
            problems.append("concurrency_limit, journal_size and journal_body_bytes cannot be negative")
        for name in ("max_body_bytes", "max_upload_bytes", "max_header_bytes", "retention_count"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        for name in ("webhook_time_scale", "retention_seconds", "keepalive_seconds", "shutdown_seconds"):
            if not 0 <= getattr(self, name) < float("inf"):
                problems.append(f"{name} must be a finite number, 0 or more, not {getattr(self, name)}")
        if self.keepalive_seconds == 0:
            problems.append("keepalive_seconds must be more than 0")
        if self.webhook_senders < 1:
            problems.append("webhook_senders must be at least 1")
        if problems:
            raise SettingsError("; ".join(problems))

    def fixture_paths(self) -> tuple[Path, ...]:
        """What to load, in match order: the user's fixtures first, then the built-in ones unless left out."""
        builtin = (BUILTIN_FIXTURES,) if self.builtin_fixtures else ()
        return tuple(dict.fromkeys((*self.fixtures, *builtin)))

    @property
    def ca_bundle(self) -> Path | None:
        """The CA bundle the clients trust (made by ``emulator.runtime.tls``); None when TLS is off."""
        return self.data_dir / TLS_SUBDIR / CA_BUNDLE_FILE if self.tls_port else None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Settings from ``ANY_LLM_EMULATOR_<OPTION>`` variables, then explicit overrides (None: not given)."""
        values: dict[str, Any] = {"data_dir": default_data_dir(environ)}
        for option in OPTIONS:
            found = option.from_environ(environ)
            if found is not None:
                values[option.field] = found
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class Option:
    """One setting as the command line, the environment and the docs see it."""

    field: str
    kind: str  # int, float, str, bool, path or paths
    default: Any
    spec: OptionSpec

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.field.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.removeprefix("--").replace("-", "_").upper()

    @property
    def default_text(self) -> str:
        if self.spec.default_text is not None:
            return self.spec.default_text
        if self.kind == "bool":
            return "on" if self.default else "off"
        return str(self.default)

    def parse(self, raw: str, source: str) -> Any:
        """The value of ``raw`` as this option's type; ``source`` names where it came from in the error."""
        if self.kind == "bool":
            lowered = raw.strip().lower()
            if lowered not in TRUE_WORDS + FALSE_WORDS:
                raise SettingsError(f"{source}={raw!r} is not a boolean (use 1 or 0)")
            return lowered in TRUE_WORDS
        try:
            if self.kind == "int":
                return int(raw)
            if self.kind == "float":
                return float(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}={raw!r} is not a number") from exc
        if self.kind == "paths":
            return tuple(Path(part) for part in raw.split(":") if part)
        if self.kind == "path":
            return Path(raw)
        return raw

    def from_environ(self, environ: Mapping[str, str]) -> Any:
        """The field's value from the environment, or None when no variable sets it."""
        raw = environ.get(self.env)
        if raw:
            value = self.parse(raw, self.env)
            return (not value) if self.spec.invert else value
        for legacy in self.spec.legacy_env:
            raw = environ.get(ENV_PREFIX + legacy)
            if raw:
                return self.parse(raw, ENV_PREFIX + legacy)
        return None


def _kind(hint: Any) -> str:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if isinstance(hint, types.UnionType) and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return "paths"
    names = {int: "int", float: "float", str: "str", bool: "bool", Path: "path"}
    return names[hint]


def _options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(Settings)
    found = []
    for item in dataclasses.fields(Settings):
        spec = item.metadata["option"]
        default = item.default if item.default is not dataclasses.MISSING else None
        found.append(Option(item.name, _kind(hints[item.name]), default, spec))
    return tuple(found)


OPTIONS = _options()


def options_table() -> str:
    """The Markdown table of every option, as ``docs/options.md`` holds it."""
    lines = [
        "| Option | Environment variable | Default | What it does |",
        "| --- | --- | --- | --- |",
    ]
    for option in OPTIONS:
        flag = option.flag if option.kind == "bool" else f"{option.flag} {option.spec.metavar or option.kind.upper()}"
        if option.spec.choices:
            flag = f"{option.flag} {{{','.join(option.spec.choices)}}}"
        env_value = "1" if option.kind == "bool" else ""
        env = f"{option.env}={env_value}" if env_value else option.env
        text = option.spec.help.replace("|", "\\|")
        if option.spec.commands != ("serve",):
            text += " (also for `env`)"
        lines.append(f"| `{flag}` | `{env}` | {option.default_text} | {text} |")
    return "\n".join(lines) + "\n"
