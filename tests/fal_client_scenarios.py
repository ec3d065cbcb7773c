"""The official Python client, unmodified, doing one thing each: run in a child process as
``python -m tests.fal_client_scenarios NAME '{"arg": ...}'``, configured only by the
environment ``any-llm-emulator env`` prints (fal-client reads its hosts at import). Each
scenario prints one JSON line: what the client returned, or the error it raised.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import fal_client
import httpx

from emulator.runtime.client import point_fal_client

APP = "fal-ai/any-llm"
VISION = "fal-ai/any-llm/vision"
# A 1x1 PNG: the smallest image the vision endpoint accepts.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
# A loopback port nothing listens on: webhooks are accepted at submit, delivered elsewhere.
WEBHOOK = "http://127.0.0.1:9/webhook"

Scenario = Callable[..., Any]
SCENARIOS: dict[str, Scenario] = {}


def scenario(func: Scenario) -> Scenario:
    SCENARIOS[func.__name__] = func
    return func


def http_error(exc: fal_client.FalClientHTTPError) -> dict[str, Any]:
    return {"error": "FalClientHTTPError", "status": exc.status_code, "detail": exc.message, "type": exc.error_type}


def status_json(status: fal_client.Status) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": type(status).__name__}
    if isinstance(status, fal_client.Queued):
        body["position"] = status.position
    if isinstance(status, fal_client.InProgress | fal_client.Completed):
        body["logs"] = None if status.logs is None else [line["message"] for line in status.logs]
    if isinstance(status, fal_client.Completed):
        body.update(error=status.error, error_type=status.error_type, metrics=status.metrics)
    return body


def catching(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except fal_client.FalClientHTTPError as exc:
        return http_error(exc)


async def catching_async(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except fal_client.FalClientHTTPError as exc:
        return http_error(exc)


# -- synchronous client ------------------------------------------------------------------


@scenario
def run(prompt: str, endpoint: str = APP, **extra: Any) -> Any:
    return catching(lambda: fal_client.run(endpoint, {"prompt": prompt, **extra}))


@scenario
def submit_status_result(prompt: str, webhook: bool = False) -> Any:
    handle = fal_client.submit(APP, {"prompt": prompt}, webhook_url=WEBHOOK if webhook else None)
    first = fal_client.status(APP, handle.request_id, with_logs=True)
    output = handle.get()
    return {
        "request_id": handle.request_id,
        "urls": [handle.status_url, handle.response_url, handle.cancel_url],
        "first": status_json(first),
        "last": status_json(fal_client.status(APP, handle.request_id, with_logs=True)),
        "output": output,
        "result": fal_client.result(APP, handle.request_id),
    }


@scenario
def subscribe(prompt: str, endpoint: str = APP, **extra: Any) -> Any:
    enqueued: list[str] = []
    updates: list[dict[str, Any]] = []

    def call() -> Any:
        output = fal_client.subscribe(
            endpoint,
            {"prompt": prompt, **extra},
            with_logs=True,
            on_enqueue=enqueued.append,
            on_queue_update=lambda status: updates.append(status_json(status)),
        )
        return {"output": output, "enqueued": enqueued, "updates": updates}

    return catching(call)


@scenario
def subscribe_with_headers(prompt: str, headers: dict[str, str]) -> Any:
    """subscribe with extra request headers (e.g. x-fal-no-retry), as fal_client passes them on submit."""
    return catching(lambda: {"output": fal_client.subscribe(APP, {"prompt": prompt}, headers=headers)})


@scenario
def submit_invalid(arguments: dict[str, Any]) -> Any:
    """A queued submit whose input breaks the schema: its first status, then what the result raises."""
    handle = fal_client.submit(APP, arguments)
    first = status_json(fal_client.status(APP, handle.request_id))
    return {"first": first, "result": catching(handle.get)}


@scenario
def subscribe_with_timeouts(
    prompt: str, client_timeout: float | None = None, start_timeout: float | None = None
) -> Any:
    """subscribe with the client's own deadline and/or the server-side start deadline."""
    try:
        output = fal_client.subscribe(
            APP, {"prompt": prompt}, client_timeout=client_timeout, start_timeout=start_timeout
        )
    except fal_client.FalClientTimeoutError as exc:
        return {"error": "FalClientTimeoutError", "timeout": exc.timeout}
    except fal_client.FalClientHTTPError as exc:
        return http_error(exc)
    return {"output": output}


@scenario
def iter_events(prompt: str) -> Any:
    handle = fal_client.submit(APP, {"prompt": prompt})
    return [status_json(status) for status in handle.iter_events(with_logs=True, interval=0.01)]


@scenario
def cancel(prompt: str) -> Any:
    handle = fal_client.submit(APP, {"prompt": prompt})
    queued = status_json(handle.status())
    fal_client.cancel(APP, handle.request_id)
    return {
        "queued": queued,
        "after": status_json(handle.status()),
        "result": catching(lambda: fal_client.result(APP, handle.request_id)),
        "again": catching(lambda: handle.cancel()),
    }


@scenario
def stream(prompt: str) -> Any:
    return list(fal_client.stream(APP, {"prompt": prompt}))


@scenario
def upload(repository: str = "fal_v3") -> Any:
    point_fal_client()
    data_url = fal_client.upload(PNG, "image/png", "dot.png", repository=repository)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "notes.txt"
        path.write_text("hello from a file")
        file_url = fal_client.upload_file(path, repository=repository)  # type: ignore[arg-type]
    # Plain httpx, trusting the same SSL_CERT_FILE: the URLs serve what was uploaded.
    image = httpx.get(data_url)
    text = httpx.get(file_url)
    seen = fal_client.subscribe(VISION, {"prompt": "echo: what is this?", "image_urls": [data_url]})
    return {
        "urls": [data_url, file_url],
        "image": [image.status_code, image.headers["content-type"], image.content == PNG],
        "text": [text.status_code, text.headers["content-type"], text.text],
        "vision": seen,
    }


@scenario
def router_vision_upload(prompt: str, model: str) -> Any:
    """An image uploaded through the client, read by openrouter/router/vision."""
    point_fal_client()
    url = fal_client.upload(PNG, "image/png", "dot.png")
    arguments = {"prompt": prompt, "model": model, "image_urls": [url]}
    return catching(lambda: fal_client.subscribe("openrouter/router/vision", arguments))


@scenario
def upload_multipart() -> Any:
    point_fal_client()
    # Just over the client's threshold: it uploads ten parts at once, then completes.
    data = bytes(range(256)) * (fal_client.client.MULTIPART_THRESHOLD // 256 + 1)
    url = fal_client.upload(data, "application/octet-stream", "big.bin")
    return {"url": url, "same": httpx.get(url).content == data}


@scenario
def upload_too_large() -> Any:
    point_fal_client()
    return catching(lambda: fal_client.upload(b"x" * 4096, "application/octet-stream"))


@scenario
def realtime(prompt: str) -> Any:
    """Open a realtime connection: the token from /tokens/, then the WebSocket the emulator closes."""
    point_fal_client()
    try:
        with fal_client.realtime(APP) as connection:
            connection.send({"prompt": prompt})
            return {"received": connection.recv()}
    except Exception as exc:
        # Whatever the client raises for the refusal (RealtimeError from recv, or the WebSocket's own).
        return {"error": type(exc).__name__, "message": str(exc)}


# -- asynchronous client -----------------------------------------------------------------


@scenario
def async_client(prompt: str) -> Any:
    async def main() -> dict[str, Any]:
        client = fal_client.AsyncClient()
        run_output = await client.run(APP, {"prompt": prompt})
        handle = await client.submit(APP, {"prompt": prompt}, webhook_url=WEBHOOK)
        events = [status_json(status) async for status in handle.iter_events(with_logs=True, interval=0.01)]
        status = await client.status(APP, handle.request_id, with_logs=True)
        result = await client.result(APP, handle.request_id)
        updates: list[dict[str, Any]] = []

        async def on_update(status: fal_client.Status) -> None:
            updates.append(status_json(status))

        subscribed = await client.subscribe(APP, {"prompt": prompt}, with_logs=True, on_queue_update=on_update)
        streamed = [event async for event in client.stream(APP, {"prompt": prompt})]
        return {
            "run": run_output,
            "events": events,
            "status": status_json(status),
            "result": result,
            "subscribe": {"output": subscribed, "updates": updates},
            "stream": streamed,
            "error": await catching_async(lambda: client.run(APP, {"prompt": "[emulator:runner-disconnected] now"})),
        }

    return asyncio.run(main())


@scenario
def async_cancel(prompt: str) -> Any:
    async def main() -> dict[str, Any]:
        client = fal_client.AsyncClient()
        handle = await client.submit(APP, {"prompt": prompt})
        await client.cancel(APP, handle.request_id)
        return {
            "after": status_json(await handle.status()),
            "result": await catching_async(lambda: client.result(APP, handle.request_id)),
        }

    return asyncio.run(main())


@scenario
def async_upload() -> Any:
    async def main() -> dict[str, Any]:
        point_fal_client()
        client = fal_client.AsyncClient()
        url = await client.upload(PNG, "image/png", "dot.png")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "dot.png"
            path.write_bytes(PNG)
            file_url = await client.upload_file(path)
        seen = await client.subscribe(VISION, {"prompt": "echo: and this?", "image_urls": [url, file_url]})
        return {"urls": [url, file_url], "vision": seen}

    return asyncio.run(main())


def _downloaded(value: Any) -> list[dict[str, Any]]:
    """Every file URL in an output, fetched: its type, size and (for an image) its decoded size."""
    from PIL import Image

    found: list[dict[str, Any]] = []
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        response = httpx.get(value["url"])
        item = {"file": value, "status": response.status_code, "type": response.headers.get("content-type"),
                "size": len(response.content)}  # fmt: skip
        if item["type"] in ("image/png", "image/jpeg"):
            item["pixels"] = list(Image.open(BytesIO(response.content)).size)
        found.append(item)
    elif isinstance(value, dict):
        for inner in value.values():
            found.extend(_downloaded(inner))
    elif isinstance(value, list):
        for inner in value:
            found.extend(_downloaded(inner))
    return found


@scenario
def loaded_endpoints() -> Any:
    """Text-to-image, image-to-image and image-to-video endpoints through subscribe, with an uploaded image."""
    point_fal_client()
    from PIL import Image

    picture = BytesIO()
    Image.new("RGB", (96, 64), "teal").save(picture, "PNG")
    image_url = fal_client.upload(picture.getvalue(), "image/png", "input.png")
    calls: dict[str, dict[str, Any]] = {
        "fal-ai/flux/schnell": {"prompt": "a lighthouse at dusk", "image_size": "square"},
        "fal-ai/esrgan": {"image_url": image_url, "scale": 2},
        "fal-ai/kling-video/v1.6/pro/image-to-video": {"prompt": "waves", "image_url": image_url},
    }
    answers: dict[str, Any] = {"image_url": image_url}
    for endpoint, arguments in calls.items():
        output = fal_client.subscribe(endpoint, arguments, with_logs=True)
        answers[endpoint] = {"output": output, "files": _downloaded(output)}
    return answers


@scenario
def openai_chat(model: str, messages: list[dict[str, Any]]) -> Any:
    """fal's OpenAI-compatible chat id through the queue: subscribe, then submit and result."""
    endpoint = "openrouter/router/openai/v1/chat/completions"
    arguments = {"model": model, "messages": messages}
    updates: list[dict[str, Any]] = []
    subscribed = fal_client.subscribe(
        endpoint, arguments, with_logs=True, on_queue_update=lambda status: updates.append(status_json(status))
    )
    handle = fal_client.submit(endpoint, arguments)
    return {
        "subscribed": subscribed,
        "updates": updates,
        "urls": [handle.status_url, handle.response_url],
        "request_id": handle.request_id,
        "result": handle.get(),
        "by_id": fal_client.result(endpoint, handle.request_id),
    }


def main() -> None:
    name, arguments = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    print(json.dumps(SCENARIOS[name](**arguments)))


if __name__ == "__main__":
    main()
