"""Settings: frozen, built from the command line and ``ANY_LLM_EMULATOR_*`` variables."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.core.spec import DEFAULT_SPEC_PATH

PACKAGE_DIR = Path(__file__).resolve().parent


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """Where the emulator keeps what outlives a run (keys, certificates, uploads): XDG data home."""
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "any-llm-emulator"


BUILTIN_FIXTURES = PACKAGE_DIR / "fixtures"
ENV_PREFIX = "ANY_LLM_EMULATOR_"


class SettingsError(ValueError):
    """A setting with a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything the emulator can be told at start."""

    host: str = "127.0.0.1"
    port: int = 8000
    fixtures: tuple[Path, ...] = ()  # the user's fixture files and folders, matched before the built-in ones
    builtin_fixtures: bool = True  # False leaves the built-in fixtures (echo:, the scenarios) out
    seed: int | None = None
    profile: str = "realistic"
    server: str = "uvicorn"
    runners: int = 2
    clock: str = "system"
    store: str = "memory"
    max_body_bytes: int = 32 * 1024 * 1024
    retention_seconds: float = 3600.0
    retention_count: int = 100_000
    require_auth: bool = True
    keepalive_seconds: float = 15.0
    data_dir: Path | None = None  # None: default_data_dir() of the environment
    concurrency_limit: int = 0  # requests in flight per key; 0 means no limit
    control_token: str | None = None
    journal_size: int = 1000
    journal_body_bytes: int = 4096
    webhook_time_scale: float = 1.0  # multiplies webhook retry delays and timeouts; 0.001 for CI
    webhook_senders: int = 16  # concurrent webhook POSTs
    spec_path: Path = field(default=DEFAULT_SPEC_PATH)
    # For the official clients: a TLS port beside the plain one (0 turns it off), and the
    # largest file the storage surface keeps (uploads are not API bodies: max_body_bytes).
    tls_port: int = 8443
    max_upload_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        problems = []
        if self.profile not in ("instant", "realistic"):
            problems.append(f"profile must be 'instant' or 'realistic', not {self.profile!r}")
        if self.server not in ("uvicorn", "hypercorn"):
            problems.append(f"server must be 'uvicorn' or 'hypercorn', not {self.server!r}")
        if self.clock not in ("system", "manual"):
            problems.append(f"clock must be 'system' or 'manual', not {self.clock!r}")
        if self.runners < 1:
            problems.append("runners must be at least 1")
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be between 0 and 65535, not {self.port}")
        if self.concurrency_limit < 0 or self.journal_size < 0 or self.journal_body_bytes < 0:
            problems.append("concurrency_limit, journal_size and journal_body_bytes cannot be negative")
        if self.max_body_bytes < 1:
            problems.append("max_body_bytes must be positive")
        if not 0 <= self.webhook_time_scale < float("inf"):
            problems.append(f"webhook_time_scale must be a finite number, 0 or more, not {self.webhook_time_scale}")
        if self.webhook_senders < 1:
            problems.append("webhook_senders must be at least 1")
        if not 0 <= self.tls_port <= 65535:
            problems.append(f"tls_port must be between 0 and 65535, not {self.tls_port}")
        if self.max_upload_bytes < 1:
            problems.append("max_upload_bytes must be positive")
        if problems:
            raise SettingsError("; ".join(problems))

    def fixture_paths(self) -> tuple[Path, ...]:
        """What to load, in match order: the user's fixtures first, then the built-in ones unless left out."""
        builtin = (BUILTIN_FIXTURES,) if self.builtin_fixtures else ()
        return tuple(dict.fromkeys((*self.fixtures, *builtin)))

    def resolved_data_dir(self, environ: Mapping[str, str]) -> Path:
        return self.data_dir if self.data_dir is not None else default_data_dir(environ)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Settings from ``ANY_LLM_EMULATOR_<NAME>`` variables, then explicit overrides."""
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + item.name.upper())
            if raw is None or raw == "":
                continue
            values[item.name] = _parse(item.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_INTS = {"port", "seed", "runners", "max_body_bytes", "retention_count", "concurrency_limit", "journal_size"}
_INTS |= {"journal_body_bytes", "webhook_senders", "tls_port", "max_upload_bytes"}
_FLOATS = {"retention_seconds", "keepalive_seconds", "webhook_time_scale"}
_BOOLS = {"require_auth", "builtin_fixtures"}


def _parse(name: str, raw: str) -> Any:
    try:
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a number") from exc
    if name in _BOOLS:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a boolean")
    if name == "fixtures":
        return tuple(Path(part) for part in raw.split(":") if part)
    if name in ("spec_path", "data_dir"):
        return Path(raw)
    return raw
