"""Child process of the bench: holds many SSE status streams open against one emulator.

It submits ``--count`` requests (the emulator runs on a manual clock, so they stay IN_QUEUE),
opens one status stream per request, waits for each stream's first event, then prints one
line of JSON and holds every connection until its stdin closes. Raw asyncio sockets keep the
client's own cost (and its imports) out of the way; it runs in its own process so the
server's RSS is the server's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

HOST = "127.0.0.1"
AUTH = "Key streams:secret"
ENDPOINT = "/fal-ai/any-llm"
BODY = b'{"prompt": "Stream me"}'
SUBMITTERS = 32


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def submitter(port: int, count: int, ids: list[str]) -> None:
    # One keep-alive connection submits its share in sequence.
    reader, writer = await asyncio.open_connection(HOST, port)
    request = (
        f"POST {ENDPOINT} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: {AUTH}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    for _ in range(count):
        writer.write(request)
        status, body = await read_response(reader)
        if status != 200:
            raise SystemExit(f"streams: submit answered {status}: {body!r}")
        ids.append(json.loads(body)["request_id"])
    writer.close()


async def open_stream(port: int, request_id: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(HOST, port)
    path = f"{ENDPOINT}/requests/{request_id}/status/stream"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: {AUTH}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"streams: stream answered {head[:40]!r}")
    await reader.readuntil(b"data:")  # the first status event: the stream is live on the server
    await reader.readuntil(b"\n\n")
    return writer


async def hold(port: int, count: int) -> None:
    started = time.monotonic()
    ids: list[str] = []
    shares = [count // SUBMITTERS + (i < count % SUBMITTERS) for i in range(SUBMITTERS)]
    await asyncio.gather(*(submitter(port, share, ids) for share in shares if share))
    # Open in batches so the listen backlog never overflows.
    writers: list[asyncio.StreamWriter] = []
    for start in range(0, len(ids), 200):
        writers += await asyncio.gather(*(open_stream(port, rid) for rid in ids[start : start + 200]))
    print(json.dumps({"open": len(writers), "seconds": round(time.monotonic() - started, 2)}), flush=True)
    # Hold until the parent has read the server's memory and closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for writer in writers:
        writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1000), hard))
    asyncio.run(hold(args.port, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
