"""CPU time per call, in-process: the app ``serve`` builds, driven through a minimal ASGI harness.

wrk on a shared machine swings by tens of percent; the CPU one call costs inside the process does
not. This drives the ASGI app exactly as ``serve`` builds it (``Draining`` around ``create_app``,
its lifespan started, the start-up heap frozen) with the headers a real client sends, ``--n``
times per case, and prints microseconds of CPU per call (``time.process_time``), the best of
``--repeat`` rounds, beside a bare Starlette route measured the same way in the same run.

    python bench/cpu.py                              # every case
    python bench/cpu.py --cases status,result --n 50000
    python bench/cpu.py --profile status             # cProfile of one case, top functions by own time
    python bench/cpu.py --against /work/main         # another checkout too, alternating, side by side
    python bench/cpu.py --server                     # the server process's CPU per request under wrk

By default no server, socket or client runs: what is measured is the app's own work per call
(the server's HTTP parsing and writing are the same for every route and are left out).
``--server`` measures the whole server process instead (Linux: its user and system time from
/proc) while wrk loads one target at a time: what a request costs with HTTP and the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import math
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENDPOINT = "/fal-ai/any-llm"
BODY = b'{"prompt": "Benchmark prompt"}'
# What an HTTP client sends on every call (httpx as fal-client configures it), and its key.
CLIENT_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"user-agent", b"fal-client/0.5.0 python-httpx/0.27.0"),
    (b"authorization", b"Key bench:secret"),
]
NAMESPACE = "bench"
JSON_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
DEFAULT_CASES = ("bare", "status", "status_logs", "result", "submit", "cancel", "run", "control")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    """One kind of call: its method, path, query, body and the status it must answer."""

    method: str
    path: str
    query: bytes = b""
    body: bytes = b""
    expect: int = 200
    bare: bool = False


def scope_for(case: Case) -> dict[str, Any]:
    """The scope of one case's call, with the headers an HTTP client sends."""
    headers = list(CLIENT_HEADERS)
    if case.body:
        headers += JSON_HEADERS
    return http_scope(case.method, case.path, headers, case.query)


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
    """The scope uvicorn builds for an HTTP/1.1 call on loopback."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "state": {},
    }


class Harness:
    """Calls an ASGI app with one scope, one body message, and keeps the answer's status and body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def call(self, case: Case) -> tuple[int, bytes]:
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                # A client that keeps the connection open: nothing more until it goes away.
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": case.body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope_for(case), receive, send)
        return status, b"".join(chunks)


async def lifespan(app: ASGIApp) -> Callable[[], Awaitable[None]]:
    """Start the app's lifespan; returns the function that ends it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"cpu: error: start-up failed: {started}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


def bare_app() -> ASGIApp:
    """The yardstick: one JSON route on plain Starlette, as bench/run.py serves it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app: ASGIApp = Starlette(routes=[Route("/", hello, methods=["GET"])])
    return app


def emulator_app(data_dir: Path, journal_size: int | None) -> tuple[ASGIApp, Any]:
    """The app as ``serve --profile instant --seed 1`` builds it: memory store, one process."""
    from emulator.config import Settings
    from emulator.core.service import Emulator
    from emulator.http.app import create_app
    from emulator.http.draining import Draining

    options: dict[str, Any] = {"profile": "instant", "seed": 1, "data_dir": data_dir}
    if journal_size is not None:
        options["journal_size"] = journal_size
    emulator = Emulator.build(Settings(**options))
    app: ASGIApp = Draining(create_app(emulator=emulator))
    return app, emulator


async def completed_request(harness: Harness) -> str:
    """A request submitted and run to completion (the instant profile finishes at once)."""
    code, raw = await harness.call(Case("POST", ENDPOINT, body=BODY))
    if code != 200:
        raise SystemExit(f"cpu: error: submit answered {code}: {raw!r}")
    request_id: str = json.loads(raw)["request_id"]
    for _ in range(10_000):
        code, raw = await harness.call(Case("GET", f"{ENDPOINT}/requests/{request_id}/status"))
        if code == 200:
            return request_id
        await asyncio.sleep(0.001)
    raise SystemExit(f"cpu: error: request {request_id} did not complete ({code}: {raw!r})")


def cases_for(request_id: str) -> dict[str, Case]:
    root = f"{ENDPOINT}/requests/{request_id}"
    return {
        "bare": Case("GET", "/", bare=True),
        "status": Case("GET", f"{root}/status"),
        "status_logs": Case("GET", f"{root}/status", query=b"logs=1"),
        "result": Case("GET", root),
        "submit": Case("POST", ENDPOINT, body=BODY),
        # A completed request: "already completed", every time.
        "cancel": Case("PUT", f"{root}/cancel", expect=400),
        "run": Case("POST", f"/run{ENDPOINT}", body=BODY),
        "control": Case("GET", "/_emulator/health"),
    }


async def settle(emulator: Any) -> None:
    """Let the work a batch left behind (queued and running requests) finish outside the timing."""
    scheduler = emulator.scheduler
    for _ in range(60_000):
        if not scheduler.queue_length(NAMESPACE) and not scheduler.in_flight(NAMESPACE):
            return
        await asyncio.sleep(0.001)
    raise SystemExit("cpu: error: the submitted requests did not finish within a minute")


async def measure(harness: Harness, case: Case, n: int, emulator: Any) -> float:
    """CPU microseconds per call over ``n`` calls."""
    status, body = await harness.call(case)
    if status != case.expect:
        raise SystemExit(f"cpu: error: {case.method} {case.path} answered {status}, not {case.expect}: {body!r}")
    call = harness.call
    started = time.process_time()
    for _ in range(n):
        await call(case)
    spent = time.process_time() - started
    await settle(emulator)
    return spent / n * 1e6


async def run(args: argparse.Namespace) -> dict[str, float]:
    from emulator.runtime.serving import settle_garbage_collector

    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as data_dir:
        app, core = emulator_app(Path(data_dir), args.journal_size)
        stop = await lifespan(app)
        emulator, bare = Harness(app), Harness(bare_app())
        request_id = await completed_request(emulator)
        cases = cases_for(request_id)
        settle_garbage_collector()
        best: dict[str, float] = {}
        try:
            if args.profile:
                await profile(emulator if args.profile != "bare" else bare, cases[args.profile], args, core)
                return best
            for _ in range(args.repeat):
                for name in args.cases:
                    case = cases[name]
                    spent = await measure(bare if case.bare else emulator, case, args.n, core)
                    best[name] = min(best.get(name, spent), spent)
        finally:
            await stop()
            gc.unfreeze()
    return best


async def profile(harness: Harness, case: Case, args: argparse.Namespace, emulator: Any) -> None:
    await measure(harness, case, min(args.n, 1000), emulator)  # warm caches first
    profiler = cProfile.Profile()
    call = harness.call
    profiler.enable()
    for _ in range(args.n):
        await call(case)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats(args.sort).print_stats(args.top)


# bare_post: the bare server's do-nothing submit (reads the body, answers a submit-sized body).
SERVER_CASES = ("bare", "bare_1write", "bare_post", "status", "result", "submit")


def server_cpu(args: argparse.Namespace) -> dict[str, float]:
    """CPU µs per request of the serving process (user + system, /proc), under wrk on one target at a time."""
    import run as loopback  # bench/run.py: the bare route, the emulator's command line, readiness

    wrk = shutil.which("wrk")
    if wrk is None or not Path("/proc/self/stat").exists():
        raise SystemExit("cpu: error: --server needs wrk on PATH and Linux's /proc")
    bare = [sys.executable, loopback.__file__, "--serve-bare"]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cpu-") as tmp:
        post = Path(tmp, "post.lua")
        post.write_text(loopback.POST_LUA)
        for _ in range(args.repeat):
            for name in SERVER_CASES:
                best[name] = min(best.get(name, math.inf), _server_case(args, wrk, bare, name, post))
    return best


def _server_case(args: argparse.Namespace, wrk: str, bare: list[str], name: str, post: Path) -> float:
    """One --server target on a fresh server: its CPU µs per request under wrk."""
    import run as loopback

    port = loopback.free_port()
    if name.startswith("bare"):
        protocol = "one-write" if name == "bare_1write" else "auto"
        argv, ready = [*bare, str(port), "--bare-http", protocol], "/"
    else:
        argv, ready = loopback.emulator_argv(port, "memory", args.connections), "/_emulator/health"
    with loopback.server(argv, port, ready) as proc:
        path = "/"
        if name == "submit":
            path = ENDPOINT
        elif not name.startswith("bare"):
            request_id = loopback.completed_request(port, proc)
            path = f"{ENDPOINT}/requests/{request_id}" + ("/status" if name == "status" else "")
        url = f"http://{loopback.HOST}:{port}{path}"
        load = [wrk, "-t1", f"-c{args.connections}", "-H", f"Authorization: {loopback.AUTH}", url]
        if name in ("submit", "bare_post"):
            load += ["-s", str(post)]
        subprocess.run([*load, "-d1s"], check=True, capture_output=True)  # warm-up
        before = _process_cpu(proc.pid)
        out = subprocess.run([*load, f"-d{args.duration}s"], check=True, capture_output=True, text=True)
        spent = _process_cpu(proc.pid) - before
    found = re.search(r"(\d+) requests in", out.stdout)
    if found is None:
        raise SystemExit(f"cpu: error: no request count in wrk's output: {out.stdout!r}")
    return spent / int(found.group(1)) * 1e6


def _process_cpu(pid: int) -> float:
    """Seconds of user and system time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(columns: dict[str, dict[str, float]], server: bool = False) -> None:
    names = list(next(iter(columns.values())))
    header = f"{'case':<12}" + "".join(f"{label:>26}" for label in columns)
    print(header)
    for name in names:
        cells = []
        for best in columns.values():
            bare = best.get("bare")
            ratio = f"{best[name] / bare:5.2f}x bare" if bare else ""
            cells.append(f"{best[name]:9.2f} µs {ratio:>13}")
        print(f"{name:<12}" + "".join(f"{cell:>26}" for cell in cells))
    what = "of the server process per request under wrk" if server else "per call in-process"
    print(f"(CPU µs {what}, best of the rounds; ratio: to the bare route's µs; lower is better)")


def compare(args: argparse.Namespace) -> None:
    """Alternate this checkout and ``--against`` in child processes, round by round; best of each."""
    here = str(Path(__file__).resolve().parent.parent)
    trees = {"this": here, "against": str(Path(args.against).resolve())}
    best: dict[str, dict[str, float]] = {label: {} for label in trees}
    argv = [sys.executable, __file__, "--json", "--n", str(args.n), "--repeat", "1", "--cases", ",".join(args.cases)]
    if args.server:
        argv += ["--server", "--duration", str(args.duration), "--connections", str(args.connections)]
    if args.journal_size is not None:
        argv += ["--journal-size", str(args.journal_size)]
    for _ in range(args.repeat):
        for label, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")])}
            out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
            for name, spent in json.loads(out.strip().splitlines()[-1]).items():
                best[label][name] = min(best[label].get(name, spent), spent)
    report({f"{label} ({Path(tree).name})": best[label] for label, tree in trees.items()}, args.server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per case per round (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of each case is kept (default 3)")
    parser.add_argument(
        "--cases", default=",".join(DEFAULT_CASES), help="comma-separated, from: " + ", ".join(DEFAULT_CASES)
    )
    parser.add_argument("--journal-size", type=int, help="the journal's size (0 turns it off; default as serve)")
    parser.add_argument("--profile", choices=DEFAULT_CASES, help="cProfile one case instead of timing")
    parser.add_argument("--sort", default="tottime", help="pstats sort key for --profile (default tottime)")
    parser.add_argument("--top", type=int, default=30, help="functions printed by --profile (default 30)")
    parser.add_argument("--against", metavar="PATH", help="another checkout to measure, alternating with this one")
    parser.add_argument("--server", action="store_true", help="CPU per request of the serving process under wrk")
    parser.add_argument("--duration", type=int, default=4, help="seconds of wrk load per --server target (default 4)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections for --server (default 16)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode of --against
    args = parser.parse_args()
    args.cases = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = sorted(set(args.cases) - set(DEFAULT_CASES))
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    if "bare" not in args.cases:
        args.cases.insert(0, "bare")
    if args.against:
        compare(args)
        return
    best = server_cpu(args) if args.server else asyncio.run(run(args))
    if args.json:
        print(json.dumps(best))
    elif best:
        report({"µs/call": best}, args.server)


if __name__ == "__main__":
    main()
