"""The dashboard under ``/_emulator/ui/``: live queue, request pages, playground, controls.

Pages are rendered on the server; each tab then holds one server-sent-event stream
(``/_emulator/ui/events``) that pushes re-rendered rows and sections as requests change.
State changes go through the control API from the page's script, with the control token
when one is set; ``browser_front`` refuses any cross-site state change under ``/_emulator``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.core.events import Subscription, TooManySubscribers
from emulator.core.models import RequestRecord, State
from emulator.core.service import Emulator
from emulator.http.common import HTTPProblem, emulator_of, json_response, problem_response

if TYPE_CHECKING:
    import jinja2

    # Imported by each page function instead: the views load with the dashboard's first page,
    # while this module's cross-site check (``browser_front``) serves every call from start-up.
    from emulator.http.ui import views

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
# The dashboard's mount under /_emulator; its pages, views and templates load with its first page
# (``dashboard_routes``), the cross-site check below serves every call.
MOUNT = "/ui"
PREFIX = "/_emulator" + MOUNT
TOKEN_COOKIE = "emulator_token"
# An idle stream sends a comment this often (loop seconds), so a closed tab is noticed.
KEEPALIVE_SECONDS = 15.0
# A stream sends at most one batch per this many (loop) seconds: under load, changes pile up in the
# subscription's bounded set and go out together, so a tab costs a bounded amount of work per second.
MIN_BATCH_SECONDS = 0.1
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@functools.cache
def _templates() -> jinja2.Environment:
    # Made on the dashboard's first page: importing jinja2 would cost every start-up ~20 ms.
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(UI_DIR / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(name: str, **context: Any) -> str:
    return _templates().get_template(name).render(**context)


def _macro(template: str, name: str, *args: Any) -> str:
    return str(getattr(_templates().get_template(template).module, name)(*args))


# -- access ----------------------------------------------------------------------------------


def _given_token(request: Request) -> str | None:
    given = request.headers.get("x-emulator-token")
    if given is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = value if scheme.lower() == "bearer" else None
    return given or request.cookies.get(TOKEN_COOKIE)


def _plain_host(request: Request, emulator: Emulator) -> bool:
    """Whether the Host header names this machine by address or as localhost (no DNS rebinding)."""
    host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
    if host == "localhost" or host.endswith(".localhost") or host == emulator.settings.host:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed(request: Request, offered: str | None = None) -> Emulator:
    """The emulator, if this caller may see the dashboard: the control API's rule, for browsers.

    With a control token, the caller shows it (header, or the cookie ``?token=`` sets).
    Without one, the page is only served under an address or ``localhost``: a web site
    that points its own name at 127.0.0.1 must not be able to read it.
    """
    emulator = emulator_of(request)
    token = emulator.settings.control_token
    if token:
        given = offered if offered is not None else _given_token(request)
        if given is None or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPProblem(
                401, {"detail": f"The dashboard needs the control token: open {PREFIX}/?token=<--control-token>"}
            )
    elif not _plain_host(request, emulator):
        raise HTTPProblem(
            403,
            {"detail": "Without --control-token the dashboard is served on localhost or an IP address only"},
        )
    return emulator


def _page(endpoint: Any) -> Any:
    """Route adapter: the access check, ``?token=`` turned into a cookie, problems as text."""

    async def run(request: Request) -> Response:
        token = request.query_params.get("token")
        try:
            emulator = allowed(request, token)
            if token is not None:
                # The token moves to a cookie, so it does not stay in the address bar or the history.
                rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                target = request.url.path + (f"?{rest}" if rest else "")
                redirect = RedirectResponse(target, 303)
                redirect.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path=PREFIX)
                return redirect
            response: Response = await endpoint(request, emulator)
            return response
        except HTTPProblem as problem:
            if request.url.path.endswith("/events"):
                return problem_response(problem)
            return HTMLResponse(_render("problem.html", detail=problem.body["detail"]), problem.status_code)

    return run


def _common(request: Request, emulator: Emulator, title: str) -> dict[str, Any]:
    """What every page's frame needs."""
    from emulator.http.ui import views

    return {
        "title": title,
        "prefix": PREFIX,
        "token": emulator.settings.control_token or "",
        "summary": views.summary(emulator, None),
        "endpoints": sorted(emulator.endpoints.endpoint_ids),
        "generation": emulator.events.generation,
    }


# -- pages -----------------------------------------------------------------------------------


def _served(emulator: Emulator) -> str:
    return ", ".join(sorted(emulator.endpoints.endpoint_ids))


def _filters(request: Request, emulator: Emulator) -> views.Filters:
    from emulator.http.ui import views

    params = request.query_params
    status = params.get("status", "").upper()
    if status and status not in views.STATUSES:
        raise HTTPProblem(400, {"detail": f"status must be one of {', '.join(views.STATUSES)}, not {status!r}"})
    endpoint = params.get("endpoint", "")
    if endpoint and endpoint not in emulator.endpoints:
        raise HTTPProblem(
            400,
            {"detail": f"no endpoint {endpoint!r}; the emulator serves {_served(emulator)}"},
        )
    raw_limit = params.get("limit", str(views.DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= views.MAX_LIMIT:
        raise HTTPProblem(400, {"detail": f"limit must be a whole number from 1 to {views.MAX_LIMIT}"})
    return views.Filters(params.get("namespace", ""), endpoint, status, int(raw_limit))


async def queue_page(request: Request, emulator: Emulator) -> Response:
    from emulator.http.ui import views

    filters = _filters(request, emulator)
    shown, total = views.records(emulator, filters)
    context = _common(request, emulator, "Queue")
    context["summary"] = views.summary(emulator, filters.namespace)
    return HTMLResponse(
        _render(
            "queue.html",
            **context,
            filters=filters,
            rows=[views.row(emulator, r) for r in shown],
            total=total,
            namespaces=views.namespaces(emulator),
            statuses=views.STATUSES,
            stream=f"{PREFIX}/events?{filters.query()}",
        )
    )


def _find(emulator: Emulator, request_id: str, namespace: str | None) -> RequestRecord:
    if namespace:
        record = emulator.store.get(namespace, request_id)
        if record is not None:
            return record
    for record in emulator.store.records():
        if record.id == request_id:
            return record
    raise HTTPProblem(404, {"detail": f"No request {request_id!r} (it may have been reset or expired)"})


async def request_page(request: Request, emulator: Emulator) -> Response:
    from emulator.http.ui import views

    record = _find(emulator, request.path_params["request_id"], request.query_params.get("namespace"))
    context = _common(request, emulator, f"Request {record.id}")
    context["summary"] = views.summary(emulator, record.namespace)
    query = f"namespace={views._quote(record.namespace)}&request={views._quote(record.id)}"
    return HTMLResponse(
        _render(
            "request.html",
            **context,
            record=record,
            detail=views.detail(emulator, record),
            snippets=views.snippets(f"{request.url.scheme}://{request.url.netloc}", record),
            stream=f"{PREFIX}/events?{query}",
        )
    )


async def playground_index(request: Request, emulator: Emulator) -> Response:
    endpoints = sorted(emulator.endpoints.endpoint_ids)
    return RedirectResponse(f"{PREFIX}/playground/{endpoints[0]}", 307)


async def playground_page(request: Request, emulator: Emulator) -> Response:
    from emulator.http.ui import views

    endpoint = request.path_params["endpoint"].strip("/")
    operation = emulator.spec.operation("submit", endpoint) if endpoint in emulator.endpoints else None
    if operation is None:
        raise HTTPProblem(
            404,
            {"detail": f"No endpoint {endpoint!r}; the emulator serves {_served(emulator)}"},
        )
    context = _common(request, emulator, f"Playground: {endpoint}")
    return HTMLResponse(
        _render(
            "playground.html",
            **context,
            endpoint=endpoint,
            fields=views.form_fields(operation.body_schema),
            key=request.query_params.get("namespace") or "dashboard",
            stream="",
        )
    )


# -- the event stream ------------------------------------------------------------------------


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


def _row_html(emulator: Emulator, record: RequestRecord) -> str:
    from emulator.http.ui import views

    return _macro("_rows.html", "row", views.row(emulator, record), PREFIX)


def _table_html(emulator: Emulator, filters: views.Filters) -> str:
    from emulator.http.ui import views

    shown, _ = views.records(emulator, filters)
    return "".join(_row_html(emulator, r) for r in shown)


def _summary_html(emulator: Emulator, namespace: str | None) -> str:
    from emulator.http.ui import views

    return _macro("_sections.html", "summary", views.summary(emulator, namespace), PREFIX)


def _request_sections(emulator: Emulator, record: RequestRecord) -> dict[str, str]:
    from emulator.http.ui import views

    detail = views.detail(emulator, record)
    return {
        name: _macro("_sections.html", name, detail, PREFIX)
        for name in ("state", "timeline", "logs", "output", "webhooks", "journal")
    }


class _Watch:
    """What one stream follows: the filtered rows, and optionally one request in detail."""

    def __init__(self, emulator: Emulator, filters: views.Filters, focus: RequestRecord | None) -> None:
        self.emulator = emulator
        self.filters = filters
        self.focus = focus
        self.positions: dict[str, int] = {}
        self.sent_text = 0
        self.sent_attempts = (-1, -1)
        # One pending notice from the webhook dispatcher at a time: each asks it to keep a future.
        self.webhook_change: asyncio.Future[None] | None = None

    def close(self) -> None:
        if self.webhook_change is not None:
            self.webhook_change.cancel()

    def positions_event(self) -> bytes | None:
        """Queue positions of the shown queued rows that moved since last sent."""
        scheduler = self.emulator.scheduler
        now: dict[str, int] = {}
        for record in self.emulator.store.records(self.filters.namespace or None):
            if record.state is State.IN_QUEUE and self.filters.matches(record):
                now[record.id] = scheduler.position(record)
        moved = {rid: pos for rid, pos in now.items() if self.positions.get(rid) != pos}
        self.positions = now
        return _event("positions", moved) if moved else None

    def focus_events(self, changed: bool, *, full: bool = False) -> list[bytes]:
        """The focused request's changed sections, new text, new attempts."""
        from emulator.http.ui import views

        record = self.focus
        if record is None:
            return []
        emulator = self.emulator
        events = []
        if changed or full:
            events.append(_event("sections", _request_sections(emulator, record)))
            self.sent_text = len(views.streamed_text(emulator, record))
        else:
            text = views.streamed_text(emulator, record)
            if len(text) > self.sent_text:
                events.append(_event("text", {"append": text[self.sent_text :]}))
                self.sent_text = len(text)
        # Attempts recorded, and deliveries still under way (a retry waiting changes the page too).
        attempts = (len(emulator.webhooks.attempts(record.id)), emulator.webhooks.dispatcher.pending())
        if attempts != self.sent_attempts and not (changed or full):
            sections = _request_sections(emulator, record)
            events.append(_event("sections", {"webhooks": sections["webhooks"], "journal": sections["journal"]}))
        self.sent_attempts = attempts
        return events

    def next_token_due(self) -> float | None:
        record = self.focus
        if record is None or record.state is not State.IN_PROGRESS or record.plan is None:
            return None
        ready = self.emulator.scheduler.tokens_ready(record)
        if ready >= len(record.plan.tokens):
            return None
        return self.emulator.scheduler.token_due(record, ready)


async def _next_wake(emulator: Emulator, subscription: Subscription, watch: _Watch) -> None:
    """Wait for a change, the focused run's next token, a webhook attempt, or the keepalive."""
    waits: list[asyncio.Future[Any]] = [subscription.waiter()]
    handle = None
    due = watch.next_token_due()
    if due is not None:
        token: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def token_due() -> None:
            if not token.done():
                token.set_result(None)

        handle = emulator.clock.call_at(due, token_due)
        waits.append(token)
    if watch.focus is not None and watch.focus.webhook_url:
        if watch.webhook_change is None or watch.webhook_change.done():
            watch.webhook_change = emulator.webhooks.dispatcher.changed()
        waits.append(watch.webhook_change)
    try:
        await asyncio.wait(waits, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if handle is not None:
            handle.cancel()
        if due is not None:
            waits[1].cancel()


async def _stream(
    emulator: Emulator, subscription: Subscription, watch: _Watch, generation: int | None
) -> AsyncIterator[bytes]:
    filters = watch.filters
    yield b"retry: 2000\n\n"
    if generation is None or generation != emulator.events.generation:
        # Something changed between the page's rendering and this stream: send it all once.
        if watch.focus is None:
            yield _event("table", {"html": _table_html(emulator, filters)})
        yield _event("summary", {"html": _summary_html(emulator, filters.namespace)})
    for event in watch.focus_events(False, full=True):
        yield event
    watch.positions_event()
    # Everything the page lacked is sent: from here on, it is live.
    yield _event("live", {"generation": emulator.events.generation})
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        await _next_wake(emulator, subscription, watch)
        pause = last + MIN_BATCH_SECONDS - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)  # rate limiting, not synchronisation: let changes coalesce
        last = loop.time()
        batch = subscription.take()
        sent = False
        if batch.resync:
            if watch.focus is None:
                yield _event("table", {"html": _table_html(emulator, filters)})
            elif emulator.store.get(watch.focus.namespace, watch.focus.id) is not watch.focus:
                yield _event("gone", {"detail": "This request was reset or expired."})
                return
            sent = True
        focus_changed = batch.resync
        for namespace, request_id in batch.changed:
            record = emulator.store.get(namespace, request_id)
            if watch.focus is not None:
                focus_changed = focus_changed or (watch.focus.id == request_id)
                continue
            if record is None or not filters.matches(record):
                yield _event("row", {"id": request_id, "html": ""})
            else:
                yield _event("row", {"id": request_id, "html": _row_html(emulator, record)})
            sent = True
        if watch.focus is None:
            moved = watch.positions_event()
            if moved is not None:
                yield moved
        for event in watch.focus_events(focus_changed):
            yield event
            sent = True
        if sent or batch.changed:
            yield _event("summary", {"html": _summary_html(emulator, filters.namespace or None)})
        else:
            yield b": ping\n\n"


class EventStream:
    """An SSE response that stops its generator as soon as the browser goes away."""

    def __init__(self, events: AsyncIterator[bytes], on_close: Any) -> None:
        self.events = events
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]

        final = {"type": "http.response.body", "body": b"", "more_body": False}
        started = finished = False

        async def pump() -> None:
            nonlocal started, finished
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            started = True
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send(final)
            finished = True

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(watch_disconnect())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[0] in done:
                with contextlib.suppress(OSError):  # the browser went away mid-write
                    tasks[0].result()
        except asyncio.CancelledError:
            # The server is stopping and cancels what is still open after its grace period: a
            # dashboard tab never ends its stream by itself. End it as a finished response, not an error.
            if started and not finished:
                with contextlib.suppress(Exception):
                    await send(final)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.events.aclose()  # type: ignore[attr-defined]
            self.on_close()


async def events(request: Request, emulator: Emulator) -> Response | EventStream:
    filters = _filters(request, emulator)
    focus = None
    focus_id = request.query_params.get("request")
    if focus_id:
        focus = _find(emulator, focus_id, filters.namespace or None)
    raw_generation = request.query_params.get("generation", "")
    generation = int(raw_generation) if raw_generation.isdigit() else None
    try:
        subscription = emulator.events.subscribe(filters.namespace or None)
    except TooManySubscribers as exc:
        raise HTTPProblem(503, {"detail": str(exc)}, {"retry-after": "5"}) from exc
    watch = _Watch(emulator, filters, focus)

    def close() -> None:
        subscription.close()
        watch.close()

    return EventStream(_stream(emulator, subscription, watch, generation), close)


# -- the front: browser root and cross-site refusal --------------------------------------------


def _cross_site(scope: Scope) -> bool:
    """Whether a browser sent this call from another site (or another origin) than ours."""
    fetch_site: str | None = None
    origin: str | None = None
    host = ""
    for key, value in scope["headers"]:
        if key == b"sec-fetch-site":
            fetch_site = str(value.decode("latin-1"))
        elif key == b"origin":
            origin = str(value.decode("latin-1"))
        elif key == b"host":
            host = str(value.decode("latin-1"))
    if fetch_site in ("cross-site", "same-site"):
        return True
    if origin is None:
        return False  # not a browser, or a same-origin navigation of an old one
    return origin == "null" or urlsplit(origin).netloc.lower() != host.lower()


def browser_front(app: ASGIApp) -> ASGIApp:
    """``GET /`` from a browser goes to the dashboard; no cross-site call may change ``/_emulator`` state."""

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            method: str = scope["method"]
            if path == "/" and method == "GET" and _wants_html(scope):
                await RedirectResponse(f"{PREFIX}/", 307)(scope, receive, send)
                return
            if path.startswith("/_emulator/") and method not in _SAFE_METHODS and _cross_site(scope):
                refused = json_response({"detail": "Cross-site requests may not change the emulator's state"}, 403)
                await refused(scope, receive, send)
                return
        await app(scope, receive, send)

    return front


def _wants_html(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"accept":
            return b"text/html" in value
    return False


def dashboard_routes() -> list[BaseRoute]:
    """The dashboard's routes under ``PREFIX``, built (and their modules imported) on its first call."""
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.staticfiles import StaticFiles

    pages = Router(
        [
            Route("/", _page(queue_page), methods=["GET"]),
            Route("/requests/{request_id}", _page(request_page), methods=["GET"]),
            Route("/playground", _page(playground_index), methods=["GET"]),
            Route("/playground/{endpoint:path}", _page(playground_page), methods=["GET"]),
            Mount("/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static"),
        ]
    )
    return [
        # The stream stays out of the compression: each event must leave as soon as it is written.
        Route("/events", _page(events), methods=["GET"]),
        # A thousand rows are ~400 kB of HTML and ~30 kB compressed.
        Mount("", app=GZipMiddleware(pages, minimum_size=1024)),
    ]
