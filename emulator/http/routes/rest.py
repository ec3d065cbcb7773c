"""The rest surface (``rest.fal.ai``): where uploads start, and the CDN's upload tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.core.errors import validation_problem
from emulator.core.spec import JSONRejected, parse_json, with_urls
from emulator.core.tokens import Tokens, token_request
from emulator.http.common import (
    HTTPProblem,
    authenticate,
    emulator_of,
    json_response,
    problem_response,
    read_body,
)
from emulator.http.hosts import urls_of


async def _file_description(request: Request) -> tuple[str, str | None]:
    """``content_type`` and ``file_name`` from an initiate body; 422 for anything else."""
    raw = await read_body(request, emulator_of(request).settings.max_body_bytes)
    try:
        data = parse_json(raw) if raw.strip() else {}
    except JSONRejected as exc:
        raise validation_problem([exc.detail]) from exc
    if not isinstance(data, dict):
        raise validation_problem([{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}])
    errors = [
        {"loc": ["body", name], "msg": "Input should be a valid string", "type": "string_type", "input": data[name]}
        for name in ("content_type", "file_name")
        if data.get(name) is not None and not isinstance(data[name], str)
    ]
    if errors:
        raise validation_problem(errors)
    return data.get("content_type") or "application/octet-stream", data.get("file_name")


async def initiate(request: Request) -> Response:
    """Reserve a file: an upload URL to PUT the bytes to and the URL the file will have."""
    emulator = emulator_of(request)
    try:
        authenticate(request, emulator)
        content_type, file_name = await _file_description(request)
        multipart = request.url.path.endswith("/initiate-multipart")
        upload = emulator.files.initiate(content_type, file_name, multipart=multipart)
    except HTTPProblem as problem:
        return problem_response(problem)
    cdn = urls_of(request).cdn
    upload.url = f"{cdn}/files/{upload.key}"
    return json_response({"upload_url": f"{cdn}/uploads/{upload.id}", "file_url": upload.url})


async def auth_token(request: Request) -> Response:
    """A token for ``POST {cdn}/files/upload``, with a timezone-aware expiry."""
    emulator = emulator_of(request)
    try:
        authenticate(request, emulator)
        await read_body(request, emulator.settings.max_body_bytes)
    except HTTPProblem as problem:
        return problem_response(problem)
    token = emulator.files.issue_token()
    return json_response(
        {
            "token": token.token,
            "token_type": token.token_type,
            "base_url": urls_of(request).cdn,
            "expires_at": token.expires_iso(),
        }
    )


async def issue_token(request: Request) -> Response:
    """A short-lived token for the apps named: the body is the token, a JSON string, as fal answers."""
    emulator = emulator_of(request)
    try:
        namespace = authenticate(request, emulator)
        raw = await read_body(request, emulator.settings.max_body_bytes)
        try:
            data = parse_json(raw) if raw.strip() else None
        except JSONRejected as exc:
            raise validation_problem(with_urls([exc.detail])) from exc
        apps, seconds, errors = token_request(data)
        if errors:
            raise validation_problem(with_urls(errors))
    except HTTPProblem as problem:
        return problem_response(problem)
    tokens: Tokens = request.app.state.tokens
    return json_response(tokens.issue(namespace, apps, seconds))


routes = [
    # The clients post to /tokens/ with the slash; without it is answered the same, never redirected.
    Route("/tokens/", issue_token, methods=["POST"]),
    Route("/tokens", issue_token, methods=["POST"]),
    Route("/storage/upload/initiate", initiate, methods=["POST"]),
    Route("/storage/upload/initiate-multipart", initiate, methods=["POST"]),
    Route("/storage/auth/token", auth_token, methods=["POST"]),
]
