"""Loopback throughput of the emulator against a bare Starlette route, measured with wrk; memory under load.

One run measures the bare route (the ceiling), the emulator's submit, status, result and full
lifecycle per store, the server's RSS with 2,000 status streams open, and (opt-in, ``--soak``)
the RSS slope under steady load, then prints each against the targets of issue 6.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.runtime.testing import stop_process

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


@dataclass(frozen=True)
class Memory:
    """A memory figure of the server: streams held (RSS) or a soak (RSS slope)."""

    what: str
    store: str
    rss_kib: int
    peak_kib: int
    note: str


def serve_bare(port: int, protocol: str = "auto") -> None:
    """The ceiling: one JSON route on uvicorn; with ``one-write``, on the emulator's own protocol."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/", hello, methods=["GET"])])
    http: Any = protocol
    if protocol == "one-write":
        try:
            from emulator.runtime.serving import http_protocol
        except ImportError:  # an emulator from before the one-write protocol (a before/after run)
            http = "auto"
        else:
            http = http_protocol()
    uvicorn.run(app, host=HOST, port=port, access_log=False, log_level="warning", http=http)


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


def request(port: int, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        headers = {"Authorization": AUTH}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str) -> None:
    # Readiness is the first answered request: retry the connection until a monotonic deadline, no sleeps.
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: error: server pid {proc.pid} exited with {proc.returncode} before it was ready")
        try:
            if request(port, "GET", path)[0] == 200:
                return
        except OSError:
            continue
    raise SystemExit(f"bench: error: server pid {proc.pid} not ready on port {port} after {READY_SECONDS:.0f}s")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_kib(pid: int) -> int:
    return rss_kib(pid, "VmHWM")


@contextmanager
def server(argv: Sequence[str], port: int, ready_path: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # stderr stays visible for startup errors
    try:
        wait_ready(proc, port, ready_path)
        yield proc
    finally:
        stop_process(proc)


def emulator_argv(port: int, store: str, runners: int, *extra: str) -> list[str]:
    cli = str(Path(sys.executable).parent / "any-llm-emulator")  # the venv's console script, as `make run` uses
    argv = [cli, "serve", "--port", str(port), "--tls-port", "0", "--profile", "instant", "--seed", "1", *extra]
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


def wrk_command(wrk: str, args: argparse.Namespace, url: str, lua: str | None, seconds: int) -> list[str]:
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency", "-H"]
    return [*cmd, f"Authorization: {AUTH}", *(["-s", lua] if lua else []), url]


def run_wrk(wrk: str, args: argparse.Namespace, url: str, lua: str | None) -> tuple[float, float, float, int, int, str]:
    out = subprocess.run(wrk_command(wrk, args, url, lua, args.duration), capture_output=True, text=True, check=True)
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
    wrk: str, args: argparse.Namespace, name: str, store: str, proc_pid: int, url: str, lua: str | None
) -> Result:
    print(f"measuring {name} ({store}): {url}", flush=True)
    rps, p50, p99, bad, errors, text = run_wrk(wrk, args, url, lua)
    if name != "lifecycle":
        return Result(name, store, rps, p50, p99, bad, errors, peak_rss_kib(proc_pid))
    match = re.search(r"^lifecycles: (\d+)", text, re.M)
    seconds = re.search(r"requests in ([\d.]+\w+),", text)
    if match is None or seconds is None:
        raise SystemExit(f"bench: error: no lifecycle count in wrk output:\n{text}")
    per_second = int(match[1]) / (to_ms(seconds[1]) / 1000)
    return Result(name, store, per_second, p50, p99, bad, errors, peak_rss_kib(proc_pid), expects_non_2xx=True)


def throughput(args: argparse.Namespace, wrk: str, tmp: str) -> list[Result]:
    post = Path(tmp, "post.lua")
    post.write_text(POST_LUA)
    lifecycle = Path(tmp, "lifecycle.lua")
    lifecycle.write_text(LIFECYCLE_LUA)
    chat = Path(tmp, "chat.lua")
    chat.write_text(CHAT_LUA)
    results: list[Result] = []
    # The ceiling is a bare route on stock uvicorn (issue 6's yardstick); the same route on the
    # emulator's one-write protocol shows how much of the emulator's speed comes from the server.
    results.append(bare(wrk, args, "bare route", "auto"))
    results.append(bare(wrk, args, "bare 1-write", "one-write"))
    for store in args.store:
        port = free_port()
        argv = emulator_argv(port, store, args.connections, "--endpoints", str(IMAGE_DOCUMENT))
        with server(argv, port, "/_emulator/health") as proc:
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
                results.append(measure(wrk, args, name, store, proc.pid, url, script))
    # Measured again last: on a shared machine the load from elsewhere drifts, and the higher
    # of the two ceilings (the ``ceiling`` function) keeps the ratios conservative.
    results.append(bare(wrk, args, "bare again", "auto"))
    return results


def bare(wrk: str, args: argparse.Namespace, name: str, protocol: str) -> Result:
    port = free_port()
    with server([sys.executable, __file__, "--serve-bare", str(port), "--bare-http", protocol], port, "/") as proc:
        return measure(wrk, args, name, "-", proc.pid, f"http://{HOST}:{port}/", None)


def ceiling(results: list[Result]) -> float:
    """The stock bare route's requests/s: the better of its two runs."""
    return max((r.rps for r in results if r.target in ("bare route", "bare again")), default=0.0)


def held_streams(args: argparse.Namespace, store: str) -> Memory:
    """The server's RSS with ``--streams`` status streams open on queued requests."""
    port = free_port()
    # A manual clock never moves, so every request stays IN_QUEUE and every stream stays open.
    with server(emulator_argv(port, store, args.connections, "--clock", "manual"), port, "/_emulator/health") as proc:
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
    with server(emulator_argv(port, store, args.connections), port, "/_emulator/health") as proc:
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


# Issue 6's targets, for the memory store on one worker.
STATUS_RATIO = 0.6
SUBMIT_RATIO = 0.4
LIFECYCLES_PER_SECOND = 2500.0
STREAMS_RSS_BYTES = 300_000_000
SOAK_SLOPE_KIB_PER_MIN = 1024.0  # "flat": under 1 MiB a minute over the soak's second half


def report(results: list[Result], memory: list[Memory], slope: float | None, args: argparse.Namespace) -> bool:
    print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, loopback {HOST}")
    head = f"{'target':<12} {'store':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'non-2xx':>8}"
    print(head + f" {'sock err':>8} {'peak RSS MiB':>12}")
    print("-" * (len(head) + 22))
    valid = True
    top = ceiling(results)
    for r in results:
        ratio = r.rps / top if top else 0.0
        row = f"{r.target:<12} {r.store:<10} {r.rps:>10.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {ratio:>6.2f}"
        print(row + f" {r.non_2xx:>8} {r.socket_errors:>8} {r.rss_kib / 1024:>12.1f}")
        valid = valid and (r.non_2xx == 0 or r.expects_non_2xx) and r.socket_errors == 0
    # Peak RSS is per server process (VmHWM), so one store's rows share one growing high-water mark.
    print("(ratio: to the better of the two stock bare-route runs; bare 1-write: that route on our protocol)")
    print("(lifecycle req/s = completed submit->result lifecycles/s; its non-2xx are 'still in progress' polls)")
    print("(image result: the result of a fal-ai/flux/schnell request, loaded with --endpoints: a PNG file object)")
    print(render_line())
    for m in memory:
        print(f"{m.what:<12} {m.store:<10} RSS {m.rss_kib / 1024:.1f} MiB, peak {m.peak_kib / 1024:.1f} MiB: {m.note}")
    print("\ntargets (memory store, one worker):")
    for line in verdicts(results, memory, slope):
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


def verdicts(results: list[Result], memory: list[Memory], slope: float | None) -> list[str]:
    top = ceiling(results)
    rows = {r.target: r for r in results if r.store == "memory"}
    lines = []

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    for name, goal in (("status", STATUS_RATIO), ("submit", SUBMIT_RATIO)):
        if name in rows and top:
            ratio = rows[name].rps / top
            lines.append(f"{verdict(ratio >= goal)} {name} {ratio:.2f}x the bare route (target >= {goal}x)")
    if "lifecycle" in rows:
        rate = rows["lifecycle"].rps
        lines.append(f"{verdict(rate >= LIFECYCLES_PER_SECOND)} lifecycle {rate:.0f}/s (target >= 2500/s)")
    for m in memory:
        if m.store == "memory" and m.what != "soak":
            mb = m.rss_kib * 1024 / 1e6
            lines.append(f"{verdict(m.rss_kib * 1024 < STREAMS_RSS_BYTES)} {m.what}: RSS {mb:.0f} MB (target < 300 MB)")
    if slope is None:
        lines.append("---- soak not run (make soak, or --soak SECONDS)")
    else:
        per_min = slope / 1024
        lines.append(f"{verdict(slope < SOAK_SLOPE_KIB_PER_MIN)} soak RSS slope {per_min:+.2f} MiB/min (target < 1)")
    return lines


def bench(args: argparse.Namespace) -> bool:
    wrk = ensure_wrk()
    results: list[Result] = []
    memory: list[Memory] = []
    slope = None
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        if not args.skip_throughput:
            results = throughput(args, wrk, tmp)
        if args.streams:
            memory += [held_streams(args, store) for store in args.store]
        if args.soak:
            found, slope = soak(args, wrk, tmp, args.store[0])
            memory.append(found)
    return report(results, memory, slope, args)


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
