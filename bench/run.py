"""Loopback throughput of the emulator's submit/status/result against a bare Starlette route, measured with wrk."""

from __future__ import annotations

import argparse
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

HOST = "127.0.0.1"
AUTH = "Key bench:secret"
ENDPOINT = "/fal-ai/any-llm"
BODY = '{"prompt": "Benchmark prompt"}'
READY_SECONDS = 30.0
# The wrk script only sets method, body and content type; the auth header goes on the command line for every target.
POST_LUA = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class Result:
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # wrk counts status >= 400 as "Non-2xx or 3xx responses"
    socket_errors: int
    rss_kib: int


def serve_bare(port: int) -> None:
    """The ceiling: one JSON route, served exactly like the emulator serves its app."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/", hello, methods=["GET"])])
    uvicorn.run(app, host=HOST, port=port, access_log=False, log_level="warning")


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


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@contextmanager
def server(argv: Sequence[str], port: int, ready_path: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # stderr stays visible for startup errors
    try:
        wait_ready(proc, port, ready_path)
        yield proc
    finally:
        # Stop only the process we started, by its pid: politely first, forcibly if it hangs.
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def run_wrk(wrk: str, args: argparse.Namespace, url: str, lua: str | None) -> tuple[float, float, float, int, int]:
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency", "-H"]
    cmd += [f"Authorization: {AUTH}", *(["-s", lua] if lua else []), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def grab(pattern: str) -> str:
        match = re.search(pattern, out, re.M)
        if match is None:
            raise SystemExit(f"bench: error: no {pattern!r} in wrk output:\n{out}")
        return match[1]

    # p50/p99 come from the "Latency Distribution" block that --latency adds.
    rps = float(grab(r"Requests/sec:\s+([\d.]+)"))
    p50, p99 = to_ms(grab(r"^\s+50%\s+(\S+)")), to_ms(grab(r"^\s+99%\s+(\S+)"))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return rps, p50, p99, int(bad[1]) if bad else 0, sum(int(n) for n in errors.groups()) if errors else 0


def measure(wrk: str, args: argparse.Namespace, name: str, proc_pid: int, url: str, lua: str | None) -> Result:
    print(f"measuring {name}: {url}", flush=True)
    rps, p50, p99, bad, errors = run_wrk(wrk, args, url, lua)
    return Result(name, rps, p50, p99, bad, errors, peak_rss_kib(proc_pid))


def bench(args: argparse.Namespace) -> list[Result]:
    wrk = ensure_wrk()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        lua = Path(tmp, "post.lua")
        lua.write_text(POST_LUA)

        port = free_port()
        with server([sys.executable, __file__, "--serve-bare", str(port)], port, "/") as proc:
            results.append(measure(wrk, args, "bare route", proc.pid, f"http://{HOST}:{port}/", None))

        port = free_port()
        cli = str(Path(sys.executable).parent / "any-llm-emulator")  # the venv's console script, as `make run` uses
        argv = [cli, "serve", "--port", str(port), "--tls-port", "0", "--profile", "instant", "--seed", "1"]
        with server(argv, port, "/_emulator/health") as proc:
            request_id = completed_request(port, proc)
            base = f"http://{HOST}:{port}{ENDPOINT}"
            # Submit runs last: its load fills the store, which must not evict the request status/result read.
            for name, url, script in (
                ("status", f"{base}/requests/{request_id}/status", None),
                ("result", f"{base}/requests/{request_id}", None),
                ("submit", base, str(lua)),
            ):
                results.append(measure(wrk, args, name, proc.pid, url, script))
    return results


def completed_request(port: int, proc: subprocess.Popen[bytes]) -> str:
    code, raw = request(port, "POST", ENDPOINT, BODY)
    if code != 200:
        raise SystemExit(f"bench: error: submit answered {code}: {raw!r}")
    request_id: str = json.loads(raw)["request_id"]
    # The instant profile finishes almost at once; poll (no sleep) so the result target answers 200, not 400.
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        code, raw = request(port, "GET", f"{ENDPOINT}/requests/{request_id}/status")
        if code == 200 and json.loads(raw).get("status") == "COMPLETED":
            return request_id
    raise SystemExit(f"bench: error: request {request_id} did not complete (last status answer {code}: {raw!r})")


def report(results: list[Result], args: argparse.Namespace) -> bool:
    ceiling = results[0].rps
    print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, loopback {HOST}")
    head = f"{'target':<12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'non-2xx':>8} {'sock err':>8}"
    print(head + f" {'peak RSS MiB':>12}")
    print("-" * (len(head) + 13))
    valid = True
    for r in results:
        row = f"{r.target:<12} {r.rps:>10.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.rps / ceiling:>6.2f}"
        print(row + f" {r.non_2xx:>8} {r.socket_errors:>8} {r.rss_kib / 1024:>12.1f}")
        valid = valid and r.non_2xx == 0 and r.socket_errors == 0
    # Peak RSS is per server process (VmHWM), so the emulator's three rows share one growing high-water mark.
    if not valid:
        print("\nINVALID: some target had non-2xx responses (a 429 or an error) or socket errors: numbers not valid.")
    return valid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per target (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent wrk connections (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare)
        return 0
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk needs one connection per thread)")
    return 0 if report(bench(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
