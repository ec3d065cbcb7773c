"""Loopback throughput of the emulator against a bare Starlette route and aimock, measured with wrk; memory.

One run measures the bare route (the ceiling), the emulator's submit, status, result and full
lifecycle per store (with the event loop's lag and the garbage collector's pauses inside the
server during each), aimock's fal mode on the same calls, the time to healthy and idle RSS of
each server, the bytes a completed record keeps, the server's RSS with 2,000 status streams
open, and (opt-in, ``--soak``) the RSS slope under steady load, then prints each against its target.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
AUTH = "Key bench:secret"
ENDPOINT = "/fal-ai/any-llm"
BODY = '{"prompt": "Benchmark prompt"}'
# An endpoint loaded from fal's document: its result names a rendered 1024x1024 PNG on the CDN surface.
IMAGE_DOCUMENT = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "fal-openapi" / "fal-ai__flux__schnell.json"
)
IMAGE_ENDPOINT = "/fal-ai/flux/schnell"
IMAGE_BODY = '{"prompt": "Benchmark prompt", "image_size": "square_hd", "output_format": "png"}'
READY_SECONDS = 30.0
BENCH_DIR = Path(__file__).resolve().parent
AIMOCK_DIR = BENCH_DIR / "aimock"
AIMOCK_CLI = AIMOCK_DIR / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"
# aimock's fal mode: the host the call was meant for in a header, its routes under /fal.
AIMOCK_HEADER = "x-fal-target-host: queue.fal.run"
AIMOCK_PREFIX = "/fal"
STARTUP_RUNS = 3
# The wrk script only sets method, body and content type; the auth header goes on the command line for every target.
POST_LUA = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
# A non-streaming chat completion on the OpenAI-compatible surface (answered within the call).
CHAT_PATH = "/run/openrouter/router/openai/v1/chat/completions"
CHAT_LUA = """wrk.method = "POST"
wrk.body = '{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Benchmark prompt"}]}'
wrk.headers["Content-Type"] = "application/json"
"""
# A full lifecycle per connection: submit, then fetch the result until it is there. wrk's
# request()/response() run per thread, so each thread keeps its own queue of ids to fetch;
# done() adds up the completed lifecycles of every thread (printed as "lifecycles: N").
LIFECYCLE_LUA = f"""local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args)
  completed = 0
  pending = {{}}
  headers = {{}}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  -- A key of its own, so earlier targets' queued requests are not ahead of these.
  headers["Authorization"] = "Key lifecycle:secret"
  post = {{}}
  for name, value in pairs(headers) do post[name] = value end
  post["Content-Type"] = "application/json"
end
function request()
  local id = table.remove(pending, 1)
  if id then return wrk.format("GET", "{ENDPOINT}/requests/" .. id, headers) end
  return wrk.format("POST", "{ENDPOINT}", post, '{BODY}')
end
function response(status, hdrs, body)
  local id = string.match(body, '"request_id":"([^"]+)"')
  if status == 200 and id == nil then
    completed = completed + 1
  else
    id = id or hdrs["x-fal-request-id"]
    if id then table.insert(pending, id) end
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("completed") end
  io.write(string.format("lifecycles: %d\\n", total))
end
"""
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class Result:
    target: str
    store: str  # "-" for the bare route
    rps: float  # requests/s; for the lifecycle row, completed lifecycles/s
    p50_ms: float
    p99_ms: float
    non_2xx: int  # wrk counts status >= 400 as "Non-2xx or 3xx responses"
    socket_errors: int
    rss_kib: int
    # The lifecycle row polls the result until it is there, so its 400s ("still in progress") are expected.
    expects_non_2xx: bool = False
    # Inside the server during the target (the emulator's rows): loop lag and GC pauses (bench/probe.py).
    probe: dict[str, Any] | None = None


@dataclass(frozen=True)
class Memory:
    """A memory figure of the server: streams held (RSS) or a soak (RSS slope)."""

    what: str
    store: str
    rss_kib: int
    peak_kib: int
    note: str


# What the bare POST route answers: the shape and size of the emulator's answer to a submit.
BARE_REQUEST_ID = "019aa000-0000-7000-8000-000000000000"
_BARE_URL = f"http://{HOST}:8000{ENDPOINT}/requests/{BARE_REQUEST_ID}"
BARE_SUBMIT_ANSWER: dict[str, Any] = {
    "status": "IN_QUEUE",
    "request_id": BARE_REQUEST_ID,
    "response_url": _BARE_URL,
    "status_url": f"{_BARE_URL}/status",
    "cancel_url": f"{_BARE_URL}/cancel",
    "logs": None,
    "metrics": {},
    "queue_position": 0,
}


def serve_bare(port: int, protocol: str = "auto") -> None:
    """The ceiling: one JSON route on uvicorn (GET); with ``one-write``, on the emulator's own protocol.

    Its POST is a do-nothing submit, for reference: what an HTTP POST alone costs this server.
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def accept(request: Request) -> JSONResponse:
        # A do-nothing submit: reads the JSON body, answers a body of a submit's size and one more header.
        await request.json()
        return JSONResponse(BARE_SUBMIT_ANSWER, headers={"x-fal-request-id": BARE_REQUEST_ID})

    app = Starlette(routes=[Route("/", hello, methods=["GET"]), Route("/", accept, methods=["POST"])])
    http: Any = protocol
    if protocol == "one-write":
        try:
            from emulator.runtime.serving import http_protocol
        except ImportError:  # an emulator from before the one-write protocol (a before/after run)
            http = "auto"
        else:
            http = http_protocol()
    uvicorn.run(app, host=HOST, port=port, access_log=False, log_level="warning", http=http)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    # Imported here: the bare route runs in this script's own process (--serve-bare), and its
    # start-up and RSS must not carry the emulator's test helpers (and httpx with them).
    from emulator.runtime.testing import stop_process as stop

    stop(proc)


def free_port() -> int:
    # The kernel picks an unused port; there is a tiny race until the server binds it, acceptable on loopback.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    # Try the install first; only refresh the package lists (slow) when the cached ones do not know wrk.
    for steps in ([["apt-get", "install", "-y", "wrk"]], [["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]]):
        print(f"wrk not found; running {' && '.join(' '.join(s) for s in steps)}", file=sys.stderr)
        try:
            if all(subprocess.run(s, stdout=subprocess.DEVNULL, check=False).returncode == 0 for s in steps):
                found = shutil.which("wrk")
        except OSError:
            break  # no apt-get at all
        if found:
            return found
    raise SystemExit(
        "bench: error: the load generator 'wrk' is not on PATH and 'apt-get install -y wrk' failed; install it"
    )


def request(
    port: int, method: str, path: str, body: str | None = None, extra: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        headers = {"Authorization": AUTH, **(extra or {})}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, headers: dict[str, str] | None = None) -> float:
    """Wait until the server answers 200 on ``path``; returns the seconds since it was started."""
    # Readiness is the first answered request: retry the connection until a monotonic deadline, no sleeps.
    started = time.monotonic()
    deadline = started + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: error: server pid {proc.pid} exited with {proc.returncode} before it was ready")
        try:
            if request(port, "GET", path, extra=headers)[0] == 200:
                return time.monotonic() - started
        except OSError:
            continue
    raise SystemExit(f"bench: error: server pid {proc.pid} not ready on port {port} after {READY_SECONDS:.0f}s")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's RSS (or its peak) plus its children's: aimock's launcher runs node in a child."""
    total = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                total = int(line.split()[1])
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    total += rss_kib(int(child), field)
    return total


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) a process and its children used: steadier than the wall clock on a busy machine."""
    total = 0.0
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    total += cpu_seconds(int(child))
    return total


def peak_rss_kib(pid: int) -> int:
    return rss_kib(pid, "VmHWM")


@contextmanager
def server(
    argv: Sequence[str],
    port: int,
    ready_path: str,
    env: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env)  # stderr stays visible for startup errors
    try:
        wait_ready(proc, port, ready_path, headers)
        yield proc
    finally:
        stop_process(proc)


def emulator_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of the emulator's processes: ``--emulator-path`` puts another tree's package first."""
    env = python_env(args)
    if args.emulator_path:
        env["PYTHONPATH"] = os.pathsep.join([args.emulator_path, os.environ.get("PYTHONPATH", "")])
    return env


def python_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of the Python servers: compiled modules kept, in the bench's own cache folder.

    An installed package starts from the bytecode pip compiled at install (an editable one from what
    its first start wrote): with ``PYTHONDONTWRITEBYTECODE`` set, every start would compile the
    emulator's modules from source again, which no installed server does.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    pycache = getattr(args, "pycache", None)
    if pycache:
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def emulator_argv(port: int, store: str, runners: int, *extra: str, stats: Path | None = None) -> list[str]:
    # The console script's main, run through the probe when the loop's lag is measured.
    if stats is not None:
        cli = [sys.executable, str(BENCH_DIR / "probe.py"), str(stats)]
    else:
        cli = [str(Path(sys.executable).parent / "any-llm-emulator")]  # the venv's console script, as `make run` uses
    argv = [*cli, "serve", "--port", str(port), "--tls-port", "0", "--profile", "instant", "--seed", "1", *extra]
    # As many runners as connections: the emulated app's concurrency (2 per key by default) would
    # otherwise cap the lifecycle, and the emulator's own speed is what is measured.
    argv += ["--runners", str(runners)]
    # `memory` is the default; other stores are passed through as `serve --store URL`.
    return argv if store == "memory" else [*argv, "--store", store]


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def wrk_command(
    wrk: str, args: argparse.Namespace, url: str, lua: str | None, seconds: int, headers: Sequence[str] = ()
) -> list[str]:
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency", "-H"]
    extra = [arg for header in headers for arg in ("-H", header)]
    return [*cmd, f"Authorization: {AUTH}", *extra, *(["-s", lua] if lua else []), url]


def run_wrk(
    wrk: str, args: argparse.Namespace, url: str, lua: str | None, headers: Sequence[str] = ()
) -> tuple[float, float, float, int, int, str]:
    command = wrk_command(wrk, args, url, lua, args.duration, headers)
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    text = out.stdout

    def grab(pattern: str) -> str:
        match = re.search(pattern, text, re.M)
        if match is None:
            raise SystemExit(f"bench: error: no {pattern!r} in wrk output:\n{text}")
        return match[1]

    # p50/p99 come from the "Latency Distribution" block that --latency adds.
    rps = float(grab(r"Requests/sec:\s+([\d.]+)"))
    p50, p99 = to_ms(grab(r"^\s+50%\s+(\S+)")), to_ms(grab(r"^\s+99%\s+(\S+)"))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    bad_count = int(bad[1]) if bad else 0
    return rps, p50, p99, bad_count, sum(int(n) for n in errors.groups()) if errors else 0, text


def measure(
    wrk: str,
    args: argparse.Namespace,
    name: str,
    store: str,
    proc_pid: int,
    url: str,
    lua: str | None,
    *,
    stats: Path | None = None,
    headers: Sequence[str] = (),
) -> Result:
    print(f"measuring {name} ({store}): {url}", flush=True)
    if stats is not None:
        os.kill(proc_pid, signal.SIGUSR1)  # a new probe window for this target
    rps, p50, p99, bad, errors, text = run_wrk(wrk, args, url, lua, headers)
    probe = read_probe(proc_pid, stats) if stats is not None else None
    if name != "lifecycle":
        return Result(name, store, rps, p50, p99, bad, errors, peak_rss_kib(proc_pid), probe=probe)
    match = re.search(r"^lifecycles: (\d+)", text, re.M)
    seconds = re.search(r"requests in ([\d.]+\w+),", text)
    if match is None or seconds is None:
        raise SystemExit(f"bench: error: no lifecycle count in wrk output:\n{text}")
    per_second = int(match[1]) / (to_ms(seconds[1]) / 1000)
    rss = peak_rss_kib(proc_pid)
    return Result(name, store, per_second, p50, p99, bad, errors, rss, expects_non_2xx=True, probe=probe)


def read_probe(pid: int, stats: Path) -> dict[str, Any] | None:
    """Ask the probe in the server for its window's figures (SIGUSR2) and read the line it appends."""
    lines = len(stats.read_text().splitlines()) if stats.exists() else 0
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # the file is the only channel: poll it with a deadline
        found = stats.read_text().splitlines() if stats.exists() else []
        if len(found) > lines:
            result: dict[str, Any] = json.loads(found[-1])
            return result
        time.sleep(0.01)
    return None


def throughput(args: argparse.Namespace, wrk: str, tmp: str) -> list[Result]:
    post = Path(tmp, "post.lua")
    post.write_text(POST_LUA)
    lifecycle = Path(tmp, "lifecycle.lua")
    lifecycle.write_text(LIFECYCLE_LUA)
    chat = Path(tmp, "chat.lua")
    chat.write_text(CHAT_LUA)
    results: list[Result] = []
    # The ceiling is a bare route on stock uvicorn (the goals' yardstick); the same route on the
    # emulator's one-write protocol shows how much of the emulator's speed comes from the server.
    results.append(bare(wrk, args, "bare route", "auto"))
    results.append(bare(wrk, args, "bare 1-write", "one-write"))
    # Not a ceiling, a reference: the same server reading a submit's body and answering like one.
    results.append(bare(wrk, args, "bare POST", "auto", str(post)))
    for store in args.store:
        port = free_port()
        stats = Path(tmp, f"probe-{store.split(':')[0]}.jsonl")
        argv = emulator_argv(port, store, args.connections, "--endpoints", str(IMAGE_DOCUMENT), stats=stats)
        with server(argv, port, "/_emulator/health", emulator_env(args)) as proc:
            request_id = completed_request(port, proc)
            image_id = completed_request(port, proc, IMAGE_ENDPOINT, IMAGE_BODY)
            base = f"http://{HOST}:{port}{ENDPOINT}"
            # The lifecycle and submit run last: their load fills the store, which must not evict
            # the request the status and result targets read.
            for name, url, script in (
                ("status", f"{base}/requests/{request_id}/status", None),
                ("result", f"{base}/requests/{request_id}", None),
                ("image result", f"http://{HOST}:{port}{IMAGE_ENDPOINT}/requests/{image_id}", None),
                ("chat", f"http://{HOST}:{port}{CHAT_PATH}", str(chat)),
                ("lifecycle", base, str(lifecycle)),
                ("submit", base, str(post)),
            ):
                results.append(measure(wrk, args, name, store, proc.pid, url, script, stats=stats))
    if "memory" in args.store and knows_loop_option(args):
        results.append(submit_on_uvloop(wrk, args, str(post), tmp))
    if aimock_ready(args):
        results += aimock(wrk, args, str(post))
    # Measured again last: on a shared machine the load from elsewhere drifts, and the higher
    # of the two ceilings (the ``ceiling`` function) keeps the ratios conservative.
    results.append(bare(wrk, args, "bare again", "auto"))
    return results


def knows_loop_option(args: argparse.Namespace) -> bool:
    """Whether the emulator measured has ``serve --loop`` (an earlier tree measured with --emulator-path may not)."""
    # The console script, as the servers run: ``python -m`` would import the package in the working directory first.
    command = [str(Path(sys.executable).parent / "any-llm-emulator"), "serve", "--help"]
    out = subprocess.run(command, capture_output=True, text=True, check=False, env=emulator_env(args))
    return "--loop" in out.stdout


def submit_on_uvloop(wrk: str, args: argparse.Namespace, post: str, tmp: str) -> Result:
    """The submit row again on a fresh server with ``--loop uvloop``: the other event loop's throughput and tail."""
    port = free_port()
    stats = Path(tmp, "probe-uvloop.jsonl")
    argv = emulator_argv(port, "memory", args.connections, "--loop", "uvloop", stats=stats)
    with server(argv, port, "/_emulator/health", emulator_env(args)) as proc:
        completed_request(port, proc)  # the first submit loads what start-up deferred
        return measure(
            wrk, args, "uvloop submit", "memory", proc.pid, f"http://{HOST}:{port}{ENDPOINT}", post, stats=stats
        )


def bare(wrk: str, args: argparse.Namespace, name: str, protocol: str, post: str | None = None) -> Result:
    port = free_port()
    with server([sys.executable, __file__, "--serve-bare", str(port), "--bare-http", protocol], port, "/") as proc:
        return measure(wrk, args, name, "-", proc.pid, f"http://{HOST}:{port}/", post)


def aimock_ready(args: argparse.Namespace) -> bool:
    """Whether aimock can run: installed under bench/aimock (``npm ci`` there) and node on PATH."""
    return not args.skip_aimock and AIMOCK_CLI.exists() and shutil.which("node") is not None


def aimock_argv(port: int) -> list[str]:
    fixture = str(AIMOCK_DIR / "fal.json")
    return ["node", str(AIMOCK_CLI), "--port", str(port), "--fixtures", fixture, "--log-level", "silent"]


def aimock(wrk: str, args: argparse.Namespace, post: str) -> list[Result]:
    """aimock's fal mode on the same submit and status calls (its status of a completed request)."""
    port = free_port()
    header = dict([AIMOCK_HEADER.split(": ")])
    results = []
    with server(aimock_argv(port), port, "/health") as proc:
        base = f"{AIMOCK_PREFIX}{ENDPOINT}"
        code, raw = request(port, "POST", base, BODY, extra=header)
        if code != 200:
            raise SystemExit(f"bench: error: aimock's submit answered {code}: {raw!r}")
        request_id = json.loads(raw)["request_id"]
        url = f"http://{HOST}:{port}{base}"
        for name, target, script in (("status", f"{url}/requests/{request_id}/status", None), ("submit", url, post)):
            results.append(measure(wrk, args, name, "aimock", proc.pid, target, script, headers=[AIMOCK_HEADER]))
    return results


@dataclass(frozen=True)
class Startup:
    """Time from starting a server's process to its first 200, and its RSS then (medians of runs)."""

    what: str
    seconds: float
    rss_kib: int
    runs: list[float]
    first: float  # the first start, not counted: it compiles and caches the modules (see ``python_env``)
    cpu: float  # the median CPU seconds the process used until its first 200


def startup(args: argparse.Namespace) -> list[Startup]:
    found = []
    targets: list[tuple[str, Any, str, dict[str, str] | None]] = [
        ("emulator", lambda port: emulator_argv(port, "memory", args.connections), "/_emulator/health", None),
        ("bare route", lambda port: [sys.executable, __file__, "--serve-bare", str(port)], "/", None),
    ]
    if aimock_ready(args):
        targets.append(("aimock", aimock_argv, "/health", None))
    for what, argv, path, headers in targets:
        seconds, rss, cpu = [], [], []
        print(f"measuring time to healthy: {what}", flush=True)
        for _ in range(1 + STARTUP_RUNS):
            port = free_port()
            env = emulator_env(args) if what == "emulator" else python_env(args)
            proc = subprocess.Popen(argv(port), stdout=subprocess.DEVNULL, env=env)
            try:
                seconds.append(wait_ready(proc, port, path, headers))
                cpu.append(cpu_seconds(proc.pid))
                rss.append(rss_kib(proc.pid))
            finally:
                stop_process(proc)
        first, runs = seconds[0], seconds[1:]
        found.append(
            Startup(
                what, statistics.median(runs), int(statistics.median(rss[1:])), runs, first, statistics.median(cpu[1:])
            )
        )
    return found


def retention(args: argparse.Namespace) -> dict[str, Any]:
    """Bytes and tracked objects a completed record keeps (bench/retention.py, in its own process)."""
    print("measuring what a completed record keeps", flush=True)
    command = [sys.executable, str(BENCH_DIR / "retention.py")]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=emulator_env(args))
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def ceiling(results: list[Result]) -> float:
    """The stock bare route's requests/s: the better of its two runs."""
    return max((r.rps for r in results if r.target in ("bare route", "bare again")), default=0.0)


def held_streams(args: argparse.Namespace, store: str) -> Memory:
    """The server's RSS with ``--streams`` status streams open on queued requests."""
    port = free_port()
    # A manual clock never moves, so every request stays IN_QUEUE and every stream stays open.
    argv = emulator_argv(port, store, args.connections, "--clock", "manual")
    with server(argv, port, "/_emulator/health", emulator_env(args)) as proc:
        before = rss_kib(proc.pid)
        print(f"measuring {args.streams} held status streams ({store})", flush=True)
        client = [sys.executable, str(Path(__file__).with_name("streams.py")), "--port", str(port)]
        holder = subprocess.Popen(
            [*client, "--count", str(args.streams)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            line = holder.stdout.readline()
            if not line:
                raise SystemExit(f"bench: error: the stream holder (pid {holder.pid}) exited early")
            opened = json.loads(line)
            rss = rss_kib(proc.pid)
            note = f"{opened['open']} streams open; {before / 1024:.1f} MiB before; opened in {opened['seconds']}s"
            holder.stdin.close()
            holder.wait(timeout=30)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        return Memory(f"{opened['open']} streams", store, rss, peak_rss_kib(proc.pid), note)


def soak(args: argparse.Namespace, wrk: str, tmp: str, store: str) -> tuple[Memory, float]:
    """Steady lifecycle load for ``--soak`` seconds, sampling RSS; returns the slope of its second half."""
    lifecycle = Path(tmp, "lifecycle.lua")
    lifecycle.write_text(LIFECYCLE_LUA)
    port = free_port()
    with server(emulator_argv(port, store, args.connections), port, "/_emulator/health", emulator_env(args)) as proc:
        print(f"soaking ({store}) for {args.soak}s under lifecycle load", flush=True)
        cmd = wrk_command(wrk, args, f"http://{HOST}:{port}{ENDPOINT}", str(lifecycle), args.soak)
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        try:
            # Sampling on a fixed period is the point of a soak: this wait is the measurement, not a sync.
            while load.poll() is None:
                samples.append((time.monotonic() - started, rss_kib(proc.pid)))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    load.wait(timeout=args.soak / 60)
            out = load.communicate()[0]
        finally:
            if load.poll() is None:
                load.terminate()
                load.wait()
        trace = ", ".join(f"{t:.0f}s {r / 1024:.0f}" for t, r in samples[:: max(1, len(samples) // 12)])
        print(f"soak RSS (MiB) over time: {trace}", flush=True)
        done = re.search(r"^lifecycles: (\d+)", out, re.M)
        half = [s for s in samples if s[0] >= args.soak / 2]
        slope = slope_kib_per_min(half)
        note = (
            f"{args.soak}s, {int(done[1]) if done else 0} lifecycles; RSS {samples[0][1] / 1024:.1f} -> "
            f"{samples[-1][1] / 1024:.1f} MiB; 2nd-half slope {slope / 1024:+.2f} MiB/min"
        )
        return Memory("soak", store, samples[-1][1], peak_rss_kib(proc.pid), note), slope


def slope_kib_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_r = sum(r for _, r in samples) / len(samples)
    num = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    den = sum((t - mean_t) ** 2 for t, _ in samples)
    return num / den * 60 if den else 0.0


def completed_request(port: int, proc: subprocess.Popen[bytes], endpoint: str = ENDPOINT, body: str = BODY) -> str:
    code, raw = request(port, "POST", endpoint, body)
    if code != 200:
        raise SystemExit(f"bench: error: submit answered {code}: {raw!r}")
    request_id: str = json.loads(raw)["request_id"]
    # The instant profile finishes almost at once; poll (no sleep) so the result target answers 200, not 400.
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        code, raw = request(port, "GET", f"{endpoint}/requests/{request_id}/status")
        if code == 200 and json.loads(raw).get("status") == "COMPLETED":
            return request_id
    raise SystemExit(f"bench: error: request {request_id} did not complete (last status answer {code}: {raw!r})")


# The targets, for the memory store on one worker.
STATUS_RATIO = 0.9
SUBMIT_RATIO = 0.6
SUBMIT_P99_MS = 20.0
LIFECYCLES_PER_SECOND = 4000.0
HEALTHY_SECONDS = 0.25
IDLE_RSS_BYTES = 50_000_000
RECORD_BYTES = 1024
# 2,000 held status streams measured 115 MiB before this work; "no regression" allows the run-to-run spread.
STREAMS_RSS_MIB = 115 * 1.15
SOAK_SLOPE_KIB_PER_MIN = 1024.0  # "flat": under 1 MiB a minute over the soak's second half


@dataclass
class Findings:
    results: list[Result]
    memory: list[Memory]
    slope: float | None = None
    startups: list[Startup] | None = None
    kept: dict[str, Any] | None = None


def report(found: Findings, args: argparse.Namespace) -> bool:
    results = found.results
    print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, loopback {HOST}")
    head = f"{'target':<12} {'server':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'non-2xx':>8}"
    print(head + f" {'sock err':>8} {'peak RSS MiB':>12}  in the server: loop lag p99/max, full GCs")
    print("-" * (len(head) + 60))
    valid = True
    top = ceiling(results)
    for r in results:
        ratio = r.rps / top if top else 0.0
        row = f"{r.target:<12} {r.store:<10} {r.rps:>10.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {ratio:>6.2f}"
        row += f" {r.non_2xx:>8} {r.socket_errors:>8} {r.rss_kib / 1024:>12.1f}"
        if r.probe:
            gen2 = r.probe["gen2"]
            row += (
                f"  {r.probe['lag_p99_ms']:.0f}/{r.probe['lag_max_ms']:.0f} ms, {gen2['n']} ({gen2['total_ms']:.0f} ms)"
            )
        print(row)
        valid = valid and (r.non_2xx == 0 or r.expects_non_2xx) and r.socket_errors == 0
    # Peak RSS is per server process (VmHWM), so one store's rows share one growing high-water mark.
    print("(ratio: to the better of the two stock bare-route runs; bare 1-write: that route on our protocol)")
    print("(bare POST: the stock bare server reading the submit's body and answering a submit-sized body)")
    print("(lifecycle req/s = completed submit->result lifecycles/s; its non-2xx are 'still in progress' polls)")
    print("(image result: the result of a fal-ai/flux/schnell request, loaded with --endpoints: a PNG file object)")
    if any(r.target == "uvloop submit" for r in results):
        print("(uvloop submit: submit on a fresh server run with --loop uvloop; the other rows run on asyncio's loop)")
    print(render_line())
    if not any(r.store == "aimock" for r in results) and not args.skip_throughput:
        print("(aimock not measured: run `npm ci` in bench/aimock, with node on PATH)")
    for m in found.memory:
        print(f"{m.what:<12} {m.store:<10} RSS {m.rss_kib / 1024:.1f} MiB, peak {m.peak_kib / 1024:.1f} MiB: {m.note}")
    for st in found.startups or []:
        runs = ", ".join(f"{t:.3f}" for t in st.runs)
        print(
            f"start-up     {st.what:<10} healthy after {st.seconds:.3f} s (runs {runs}; first start, "
            f"not counted, {st.first:.3f} s), {st.cpu:.2f} CPU s, RSS then {st.rss_kib / 1024:.1f} MiB"
        )
    if found.kept:
        k = found.kept
        print(
            f"retention    memory     {k['bytes_per_record']} B and {k['tracked_per_record']} GC-tracked objects "
            f"per completed record ({k['records']} measured): {k['at_default_cap_mb']} MB at the 100,000 cap"
        )
    print("\ntargets (memory store, one worker):")
    for line in verdicts(found):
        print("  " + line)
    if not valid:
        print("\nINVALID: some target had non-2xx responses (a 429 or an error) or socket errors: numbers not valid.")
    return valid


def render_line() -> str:
    """The first render of a 2048x2048 image (loading Pillow included) and a second, different one, in ms."""
    start = time.perf_counter()
    from emulator.endpoints.render import RenderSpec, render

    spec = RenderSpec("image", 2048, 2048, seed=1, lines=("fal-ai/flux/schnell", "2048x2048", "bench"))
    render(spec)
    first_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    render(RenderSpec("image", 2048, 2048, seed=2, lines=spec.lines))
    second_ms = (time.perf_counter() - start) * 1000
    return f"image render: 2048x2048 PNG first {first_ms:.0f} ms (Pillow loaded with it), another {second_ms:.0f} ms"


def verdicts(found: Findings) -> list[str]:
    results = found.results
    top = ceiling(results)
    rows = {r.target: r for r in results if r.store == "memory"}
    mock = {r.target: r for r in results if r.store == "aimock"}
    lines = []

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    for name, goal in (("status", STATUS_RATIO), ("submit", SUBMIT_RATIO)):
        if name in rows and top:
            ratio = rows[name].rps / top
            lines.append(f"{verdict(ratio >= goal)} {name} {ratio:.2f}x the bare route (target >= {goal}x)")
    bare_post = next((r for r in results if r.target == "bare POST"), None)
    if "submit" in rows and bare_post is not None and bare_post.rps:
        ratio = rows["submit"].rps / bare_post.rps
        lines.append(f"---- submit {ratio:.2f}x the bare POST route (for reference: this server's do-nothing submit)")
    if "submit" in rows:
        p99 = rows["submit"].p99_ms
        lines.append(f"{verdict(p99 <= SUBMIT_P99_MS)} submit p99 {p99:.1f} ms (target <= {SUBMIT_P99_MS:.0f} ms)")
    for name in ("status", "submit"):
        if name in rows and name in mock:
            ours, theirs = rows[name].rps, mock[name].rps
            lines.append(f"{verdict(ours > theirs)} {name} {ours / theirs:.2f}x aimock's (target > 1x)")
    if "lifecycle" in rows:
        rate = rows["lifecycle"].rps
        lines.append(f"{verdict(rate >= LIFECYCLES_PER_SECOND)} lifecycle {rate:.0f}/s (target >= 4000/s)")
    for st in found.startups or []:
        if st.what == "emulator":
            lines.append(
                f"{verdict(st.seconds <= HEALTHY_SECONDS)} time to healthy {st.seconds:.3f} s (target <= 0.25 s)"
            )
            mb = st.rss_kib * 1024 / 1e6
            lines.append(f"{verdict(st.rss_kib * 1024 <= IDLE_RSS_BYTES)} idle RSS {mb:.0f} MB (target <= 50 MB)")
    if found.kept:
        per = found.kept["bytes_per_record"]
        lines.append(f"{verdict(per <= RECORD_BYTES)} a completed record keeps {per} B (target <= 1 KB)")
    for m in found.memory:
        if m.store == "memory" and m.what != "soak":
            mib = m.rss_kib / 1024
            lines.append(
                f"{verdict(mib <= STREAMS_RSS_MIB)} {m.what}: RSS {mib:.0f} MiB (target: no regression of 115)"
            )
    if found.slope is None:
        lines.append("---- soak not run (make soak, or --soak SECONDS)")
    else:
        per_min = found.slope / 1024
        lines.append(
            f"{verdict(found.slope < SOAK_SLOPE_KIB_PER_MIN)} soak RSS slope {per_min:+.2f} MiB/min (target < 1)"
        )
    lines.append("---- webhook throughput: bench/webhooks.py (make bench runs it next)")
    return lines


def bench(args: argparse.Namespace) -> bool:
    wrk = ensure_wrk()
    found = Findings([], [])
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        args.pycache = str(Path(tmp) / "pycache")
        if not args.skip_throughput:
            found.results = throughput(args, wrk, tmp)
            found.startups = startup(args)
            found.kept = retention(args)
        if args.streams:
            found.memory += [held_streams(args, store) for store in args.store]
        if args.soak:
            soaked, found.slope = soak(args, wrk, tmp, args.store[0])
            found.memory.append(soaked)
    return report(found, args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per target (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent wrk connections (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--store",
        action="append",
        help="store URL passed to `serve --store`, repeatable for one row set per store (default memory)",
    )
    parser.add_argument("--streams", type=int, default=2000, help="status streams to hold open (0 skips; default 2000)")
    parser.add_argument("--soak", type=int, default=0, metavar="SECONDS", help="also soak under load (default off)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the memory measurements")
    parser.add_argument(
        "--skip-aimock", action="store_true", help="leave aimock out (default: measured when installed)"
    )
    parser.add_argument(
        "--emulator-path",
        metavar="DIR",
        help="measure the emulator package in DIR (another checkout, e.g. an earlier commit) instead of this one",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--bare-http", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.store = args.store or ["memory"]
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.bare_http)
        return 0
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk needs one connection per thread)")
    return 0 if bench(args) else 1


if __name__ == "__main__":
    sys.exit(main())
