"""The cdn surface (``v3.fal.media``): uploads, single and multipart, and the files themselves.

Two upload styles meet here. The JS client (and the Python client's fallback) PUT to the
``/uploads/{id}`` URL that ``rest`` handed out; the Python client POSTs to
``/files/upload`` with a token. Large files come in parts: JS PUTs ``/uploads/{id}/{n}``,
Python PUTs ``/files/{key}/multipart/{id}/{n}``; both finish with ``.../complete``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from emulator.core.spec import parse_json
from emulator.core.storage import BlobWriter, PendingUpload, StorageError
from emulator.http.common import (
    HTTPProblem,
    authenticate,
    emulator_of,
    json_response,
    not_found,
    problem_response,
    read_body,
)
from emulator.http.hosts import urls_of

# Files never change once written, so clients may keep them.
_FILE_HEADERS = {"cache-control": "public, max-age=31536000, immutable"}


async def _receive_into(request: Request, writer: BlobWriter) -> None:
    """Write the body; past the limit, read the rest unsaved so the client can read the 413."""
    failure: StorageError | None = None
    async for chunk in request.stream():
        if failure is None:
            try:
                writer.write(chunk)
            except StorageError as exc:
                failure = exc
    if failure is not None:
        raise failure


def _problem(exc: StorageError) -> Response:
    return json_response({"detail": exc.message}, exc.status_code)


def _file_url(request: Request, key: str) -> str:
    return f"{urls_of(request).cdn}/files/{key}"


async def upload(request: Request) -> Response:
    """The Python client's upload: the body is the file; the answer is its URL."""
    emulator = emulator_of(request)
    files = emulator.files
    try:
        authenticate(request, emulator)
        content_type = request.headers.get("content-type") or "application/octet-stream"
        file_name = request.headers.get("x-fal-file-name")
        key = files.new_key(content_type, file_name)
        writer = files.writer(key)
        await _receive_into(request, writer)
        stored = files.commit(key, writer, content_type, file_name, _file_url(request, key))
    except HTTPProblem as problem:
        return problem_response(problem)
    except StorageError as exc:
        return _problem(exc)
    return json_response(
        {
            "access_url": stored.urls[0],
            "content_type": stored.content_type,
            "file_name": stored.file_name or key.rsplit("/", 1)[-1],
            "file_size": stored.size,
        }
    )


async def upload_multipart(request: Request) -> Response:
    """The Python client's multipart start: the file's URL and an upload id."""
    emulator = emulator_of(request)
    try:
        authenticate(request, emulator)
    except HTTPProblem as problem:
        return problem_response(problem)
    content_type = request.headers.get("content-type") or "application/octet-stream"
    pending = emulator.files.initiate(content_type, request.headers.get("x-fal-file-name"), multipart=True)
    pending.url = _file_url(request, pending.key)
    return json_response({"access_url": pending.url, "uploadId": pending.id})


def _pending(request: Request) -> PendingUpload:
    files = emulator_of(request).files
    upload_id = request.path_params["upload_id"]
    key = request.path_params.get("key")
    found = files.pending(upload_id) if key is None else files.pending_for_key(upload_id, key)
    if found is None:
        raise not_found("No upload in progress has this URL (it was completed, or never initiated)")
    return found


async def put_upload(request: Request) -> Response:
    """A single PUT of the whole file to the URL ``initiate`` handed out."""
    files = emulator_of(request).files
    try:
        pending = _pending(request)
        content_type = request.headers.get("content-type") or pending.content_type
        writer = files.writer(pending.key)
        await _receive_into(request, writer)
        stored = files.commit(pending.key, writer, content_type, pending.file_name, pending.url)
        files.finish_single(pending)
    except HTTPProblem as problem:
        return problem_response(problem)
    except StorageError as exc:
        return _problem(exc)
    return json_response({"file_url": stored.urls[0] if stored.urls else _file_url(request, stored.key)})


async def put_part(request: Request) -> Response:
    """One part of a multipart upload; answers its number and etag (in the body and the header)."""
    emulator = emulator_of(request)
    files = emulator.files
    number: int = request.path_params["number"]
    try:
        if "key" in request.path_params:
            authenticate(request, emulator)
        pending = _pending(request)
        writer = files.part_writer(pending, number)
        await _receive_into(request, writer)
        etag = files.finish_part(pending, number, writer)
    except HTTPProblem as problem:
        return problem_response(problem)
    except StorageError as exc:
        return _problem(exc)
    return json_response({"partNumber": number, "etag": etag}, 200, {"etag": f'"{etag}"'})


async def complete(request: Request) -> Response:
    """Join the parts the body lists (or every part received) into the file, by part number."""
    emulator = emulator_of(request)
    try:
        if "key" in request.path_params:
            authenticate(request, emulator)
        pending = _pending(request)
        raw = await read_body(request, emulator.settings.max_body_bytes)
        stored = emulator.files.complete(pending, _part_numbers(raw))
    except HTTPProblem as problem:
        return problem_response(problem)
    except StorageError as exc:
        return _problem(exc)
    url = stored.urls[0] if stored.urls else _file_url(request, stored.key)
    return json_response({"file_url": url, "access_url": url})


def _part_numbers(raw: bytes) -> list[int] | None:
    try:
        parts = parse_json(raw).get("parts") if raw.strip() else None
        return [int(part["partNumber"]) for part in parts] if parts else None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StorageError(400, 'The body should be {"parts": [{"partNumber": 1, "etag": "..."}, ...]}') from exc


async def download(request: Request) -> Response:
    """A stored file, with the content type it was uploaded with."""
    stored = emulator_of(request).files.get(request.path_params["key"])
    if stored is None:
        return problem_response(not_found("File not found"))
    return FileResponse(stored.path, media_type=stored.content_type, headers=_FILE_HEADERS)


routes = [
    Route("/files/upload", upload, methods=["POST"]),
    Route("/files/upload/multipart", upload_multipart, methods=["POST"]),
    Route("/files/{key:path}/multipart/{upload_id}/complete", complete, methods=["POST"]),
    Route("/files/{key:path}/multipart/{upload_id}/{number:int}", put_part, methods=["PUT"]),
    Route("/files/{key:path}", download, methods=["GET", "HEAD"]),
    Route("/uploads/{upload_id}", put_upload, methods=["PUT"]),
    Route("/uploads/{upload_id}/complete", complete, methods=["POST"]),
    Route("/uploads/{upload_id}/{number:int}", put_part, methods=["PUT"]),
]
