"""The command line: ``any-llm-emulator serve`` and ``env``. Parsing only; the work is elsewhere."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from emulator.config import ENV_PREFIX, Settings, SettingsError
from emulator.core.fixture_files import FixtureError
from emulator.store import StoreError


def _env_help(name: str) -> str:
    return f"(env {ENV_PREFIX}{name.upper()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="any-llm-emulator",
        description="A local emulator of fal.ai's fal-ai/any-llm queue API: offline, no API key needed.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the emulator",
        description="Serve the queue surface at the root (as queue.fal.run) and the run surface "
        "under /run (as fal.run). Every option can also be set by the environment variable shown.",
    )
    serve.add_argument("--host", help=f"interface to bind; default 127.0.0.1 {_env_help('host')}")
    serve.add_argument("--port", type=int, help=f"HTTP port; default 8000, 0 picks a free one {_env_help('port')}")
    serve.add_argument(
        "--fixtures",
        type=Path,
        action="append",
        metavar="DIR",
        help="fixture file or folder, repeatable; replaces the built-in fixtures "
        f"{_env_help('fixtures')}, colon-separated",
    )
    serve.add_argument("--seed", type=int, help=f"seed for request ids and generated text {_env_help('seed')}")
    serve.add_argument(
        "--profile",
        choices=["instant", "realistic"],
        help="timing: 'instant' answers without artificial delay (for CI), 'realistic' adds a queue "
        f"wait, a time to first token and a per-model token rate; default realistic {_env_help('profile')}",
    )
    serve.add_argument(
        "--server", choices=["uvicorn", "hypercorn"], help=f"ASGI server; default uvicorn {_env_help('server')}"
    )
    serve.add_argument("--runners", type=int, help=f"concurrent runners per API key; default 2 {_env_help('runners')}")
    serve.add_argument(
        "--clock",
        choices=["system", "manual"],
        help=f"'manual' stops time until the control API advances it; default system {_env_help('clock')}",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, help=f"largest accepted body; default 33554432 {_env_help('max_body_bytes')}"
    )
    serve.add_argument(
        "--no-auth",
        dest="require_auth",
        action="store_const",
        const=False,
        help=f"accept requests without an Authorization header {_env_help('require_auth')}=0",
    )
    serve.add_argument(
        "--concurrency-limit",
        type=int,
        help=f"requests in flight per key before submit answers 429; 0 = none {_env_help('concurrency_limit')}",
    )
    serve.add_argument(
        "--control-token",
        help=f"require this token (X-Emulator-Token or Bearer) on /_emulator/ calls {_env_help('control_token')}",
    )
    serve.add_argument(
        "--journal-size", type=int, help=f"requests kept in the journal; 0 turns it off {_env_help('journal_size')}"
    )
    serve.add_argument(
        "--webhook-time-scale",
        type=float,
        help="multiplies webhook retry delays and timeouts (fal's 10 attempts over 2 hours); "
        f"0.001 runs the whole schedule in about 7 s; default 1 {_env_help('webhook_time_scale')}",
    )
    serve.add_argument(
        "--webhook-senders", type=int, help=f"concurrent webhook POSTs; default 16 {_env_help('webhook_senders')}"
    )
    serve.add_argument(
        "--store",
        metavar="URL",
        help="where requests are kept: 'memory' (default), 'sqlite:///path/to/file.db' to survive "
        f"restarts, 'redis://host:port/db' to share one queue between processes {_env_help('store')}",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request (slower)")
    _add_client_options(serve)
    serve.add_argument(
        "--max-upload-bytes",
        type=int,
        help=f"largest file the storage surface keeps; default 536870912 {_env_help('max_upload_bytes')}",
    )
    env = commands.add_parser(
        "env",
        help="print the shell lines that point the official fal clients at a running emulator",
        description='Print POSIX shell lines for eval "$(any-llm-emulator env)": FAL_KEY, FAL_RUN_HOST, '
        "FAL_QUEUE_RUN_HOST and SSL_CERT_FILE for the Python client, and the fal.config(...) call for "
        "the JS client. Give it the same options (or environment) as serve.",
    )
    env.add_argument("--host", help=f"interface serve binds; default 127.0.0.1 {_env_help('host')}")
    env.add_argument("--port", type=int, help=f"serve's HTTP port; default 8000 {_env_help('port')}")
    _add_client_options(env)
    return parser


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    """Options serve and env share: where TLS listens and where the CA and uploads are kept."""
    parser.add_argument(
        "--tls-port",
        type=int,
        help=f"HTTPS port beside the HTTP one; default 8443, 0 turns TLS off {_env_help('tls_port')}",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"keeps the local CA and uploads; default $XDG_DATA_HOME/any-llm-emulator {_env_help('data_dir')}",
    )


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    overrides = {
        "host": args.host,
        "port": args.port,
        "fixtures": tuple(args.fixtures) if args.fixtures else None,
        "seed": args.seed,
        "profile": args.profile,
        "server": args.server,
        "runners": args.runners,
        "clock": args.clock,
        "max_body_bytes": args.max_body_bytes,
        "require_auth": args.require_auth,
        "concurrency_limit": args.concurrency_limit,
        "control_token": args.control_token,
        "journal_size": args.journal_size,
        "webhook_time_scale": args.webhook_time_scale,
        "webhook_senders": args.webhook_senders,
        "store": args.store,
        "tls_port": args.tls_port,
        "data_dir": args.data_dir,
        "max_upload_bytes": args.max_upload_bytes,
    }
    return Settings.from_env(environ, **overrides)


def env_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    overrides = {"host": args.host, "port": args.port, "tls_port": args.tls_port, "data_dir": args.data_dir}
    return Settings.from_env(environ, **overrides)


def banner(settings: Settings) -> str:
    base = f"http://{settings.host}:{settings.port}"
    auth = "" if not settings.require_auth else " -H 'Authorization: Key local:secret'"
    return (
        f"any-llm emulator listening on {base} (profile {settings.profile}, {settings.runners} runners per key)\n"
        f"  queue surface: {base}/fal-ai/any-llm   run surface: {base}/run/fal-ai/any-llm\n"
        f"  spec: {base}/openapi.yaml   health: {base}/_emulator/health\n"
        f"  dashboard: {base}/_emulator/ui/{'?token=<control token>' if settings.control_token else ''}\n"
        "Try it:\n"
        f"  curl -s{auth} -H 'Content-Type: application/json' \\\n"
        f'    -d \'{{"prompt": "What is the meaning of life?"}}\' {base}/fal-ai/any-llm\n'
    )


def serve(settings: Settings, *, access_log: bool = False) -> None:
    from emulator.core.service import Emulator
    from emulator.http.app import create_app
    from emulator.runtime.clientenv import client_banner
    from emulator.runtime.serving import certificates_for, listen, run_servers

    emulator = Emulator.build(settings)
    app = create_app(emulator=emulator)
    listeners, settings = listen(settings)
    certs = certificates_for(settings)
    print(banner(settings) + client_banner(settings, certs.bundle if certs else None), flush=True)
    run_servers(app, settings, certs, listeners, access_log=access_log)


def env(settings: Settings) -> None:
    from emulator.runtime.clientenv import env_script
    from emulator.runtime.serving import certificates_for

    # The CA is created here if serve has not run yet, so SSL_CERT_FILE names a real file.
    certs = certificates_for(settings)
    print(env_script(settings, certs.bundle if certs else None), end="")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        if args.command == "env":
            settings = env_settings(args, environ)
            env(settings.replace(data_dir=settings.resolved_data_dir(environ)))
            return 0
        settings = settings_from(args, environ)
        # Resolved once, from the environment given, for the CA and the uploads alike.
        settings = settings.replace(data_dir=settings.resolved_data_dir(environ))
        if args.command == "serve":
            serve(settings, access_log=args.access_log)
    except (SettingsError, FixtureError, StoreError) as exc:
        print(f"any-llm-emulator: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
