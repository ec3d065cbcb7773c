"""File URLs in an input, checked when a request runs, as fal's apps check them.

The emulator never fetches anything: a data URI is decoded in place, and a URL loads only
when it names a file uploaded to this emulator: at any loopback address, at fal's CDN host
names (this emulator's own when a client reaches it by them), or exactly as the emulator
handed it out (whatever host name the client used). Anything else counts as unreachable, or,
by :class:`FilePolicy`, is accepted unchecked. A failing file ends the run with a 422 in fal's
error shape. :class:`FileUrlCheck` is the one check: the vision endpoint's ``image_urls``
(:class:`ImageUrlCheck`) and a loaded endpoint's file fields (``emulator.endpoints.inputs``) use it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from emulator.core.hosts import is_cdn_host
from emulator.core.models import JSON, Failure
from emulator.core.storage import Storage

ERRORS_DOC = "https://docs.fal.ai/errors"
_FILE_PATH = re.compile(r"(?:/cdn)?/files/(?P<key>[^?#]+)")
_DATA_URI = re.compile(r"data:(?P<type>[^,;]*)(?P<params>(;[^,;]*)*),(?P<data>.*)", re.S)
_NO_NETWORK = "the emulator reaches no network: only its own uploads and data URIs load"
# Magic numbers of the raster formats vision models accept.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def looks_like_image(head: bytes) -> bool:
    """Whether the first bytes are those of a PNG, JPEG, GIF, WebP or BMP image."""
    if head.startswith(_SIGNATURES):
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def is_own_host(host: str, extra: Iterable[str] = ()) -> bool:
    """Loopback, ``localhost``, fal's CDN names, or a name this emulator was told it has."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost") or host in extra:
        return True
    if is_cdn_host(host):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FilePolicy(enum.Enum):
    """What a file URL that is neither a data URI nor an upload to this emulator gets."""

    OFFLINE = "offline"  # accepted unchecked
    STRICT = "strict"  # refused with a 422, as fal refuses a URL it cannot download


class FileUrlCheck:
    """Whether one file URL of an input loads: the one check behind ``image_urls`` and every endpoint's files.

    ``cdn_is_ours``: a fal CDN URL that names no upload here is this emulator's missing file (True),
    or may be a real file on fal's CDN, which the policy then decides (False).
    """

    def __init__(
        self,
        storage: Storage | None,
        own_hosts: Iterable[str] = (),
        *,
        policy: FilePolicy = FilePolicy.STRICT,
        cdn_is_ours: bool = True,
    ) -> None:
        self.storage = storage
        self.own_hosts = frozenset(h.lower() for h in own_hosts)
        self.policy = policy
        self.cdn_is_ours = cdn_is_ours

    def problem(self, loc: list[str | int], url: Any, kind: str | None) -> JSON | None:
        """What is wrong with one file URL, as a FastAPI-style error entry; None if it loads (or,
        offline, cannot be checked). ``kind`` ``image`` also checks that the bytes are an image."""
        if not isinstance(url, str):
            return {"loc": loc, "msg": "Input should be a valid string", "type": "string_type", "input": url}
        if url[:5].lower() == "data:":
            if kind == "image":
                return None if _data_uri_is_image(url) else _load_error(loc, url)
            return None if _data_uri_decodes(url) else _file_load_error(loc, url, kind)
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return {
                "loc": loc,
                "msg": "Input should be a valid URL (http or https) or a data URI",
                "type": "url_parsing",
                "input": _short(url),
            }
        match = _FILE_PATH.fullmatch(parts.path)
        stored = None
        if match is not None and self.storage is not None:
            stored = self.storage.get(unquote(match["key"]))
        own = is_own_host(parts.hostname, self.own_hosts)
        # A host name other than loopback or fal's CDN is ours only for a URL we handed out under it.
        if stored is not None and (own or url.strip() in stored.urls):
            if kind == "image" and self.storage is not None and not looks_like_image(self.storage.head(stored.key)):
                return _load_error(loc, url)
            return None
        if own and (self.cdn_is_ours or not is_cdn_host(parts.hostname)):
            return _download_error(loc, url, "no file uploaded to this emulator has this URL")
        if self.policy is FilePolicy.OFFLINE:
            return None
        return _download_error(loc, url, _NO_NETWORK)


class ImageUrlCheck:
    """An input check for ``image_urls``: returns the run's 422 failure, or None when every image loads."""

    def __init__(self, storage: Storage, own_hosts: Iterable[str] = ()) -> None:
        self.files = FileUrlCheck(storage, own_hosts)

    def __call__(self, endpoint: str, inputs: Mapping[str, Any]) -> Failure | None:
        urls = inputs.get("image_urls")
        if not isinstance(urls, list):
            return None
        found = (self.files.problem(["body", "image_urls", index], url, "image") for index, url in enumerate(urls))
        errors = [error for error in found if error is not None]
        return Failure(422, errors) if errors else None


def _data_uri_is_image(uri: str) -> bool:
    match = _DATA_URI.fullmatch("data:" + uri[5:])
    if match is None or not match["type"].strip().lower().startswith("image/"):
        return False
    try:
        if ";base64" in match["params"].lower():
            head = base64.b64decode(match["data"].strip(), validate=True)[:16]
        else:
            head = unquote_to_bytes(match["data"])[:16]
    except (binascii.Error, ValueError):
        return False
    return looks_like_image(head)


def _data_uri_decodes(uri: str) -> bool:
    match = _DATA_URI.fullmatch("data:" + uri[5:])
    if match is None:
        return False
    try:
        if ";base64" in match["params"].lower():
            base64.b64decode(match["data"].strip(), validate=True)
        else:
            unquote_to_bytes(match["data"])
    except (binascii.Error, ValueError):
        return False
    return True


def _short(url: str) -> str:
    # A data URI can be megabytes long; the error only needs to say which one it was.
    return url if len(url) <= 120 else url[:117] + "..."


def _download_error(loc: list[str | int], url: str, reason: str) -> JSON:
    return {
        "loc": loc,
        "msg": "Failed to download the file. Please check if the URL is accessible and try again.",
        "type": "file_download_error",
        "url": f"{ERRORS_DOC}#file_download_error",
        "ctx": {"reason": reason},
        "input": _short(url),
    }


def _load_error(loc: list[str | int], url: str) -> JSON:
    return {
        "loc": loc,
        "msg": "Failed to load the image. Please ensure the image file is not corrupted and is in a supported format.",
        "type": "image_load_error",
        "url": f"{ERRORS_DOC}#image_load_error",
        "input": _short(url),
    }


def _file_load_error(loc: list[str | int], url: str, kind: str | None) -> JSON:
    what = kind or "file"
    return {
        "loc": loc,
        "msg": f"Failed to load the {what}: the data URI is not valid base64 or URL-encoded data.",
        "type": "file_load_error",
        "input": _short(url),
    }
