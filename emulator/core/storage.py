"""Uploaded files: kept on disk in the data directory with their content type, found by key.

This is the core behind the rest (``rest.fal.ai``) and cdn (``v3.fal.media``) surfaces: it
hands out upload ids and tokens, writes single and multipart uploads, and enforces the size
limit. It knows nothing of HTTP; the surfaces turn keys into URLs.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import random
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from emulator.core.clock import Clock

TOKEN_SECONDS = 3600.0
# Uploads that never complete are forgotten after this long, with their parts.
PENDING_SECONDS = 24 * 3600.0

_KEY = re.compile(r"[a-z]+/[A-Za-z0-9_-]+(\.[A-Za-z0-9]{1,10})?")
# fal's file URLs read like https://v3.fal.media/files/<word>/<id>.<ext>.
_WORDS = ("koala", "panda", "lion", "zebra", "rabbit", "tiger", "monkey", "penguin", "elephant", "kangaroo")


class StorageError(Exception):
    """An upload that cannot be accepted; ``status_code`` says how the surface answers."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file the emulator keeps: where its bytes are and what they are."""

    key: str
    path: Path
    content_type: str
    size: int
    file_name: str | None = None
    urls: tuple[str, ...] = ()  # the URLs it was handed out under, whatever host the client used


@dataclass(slots=True)
class PendingUpload:
    """An upload that was initiated and not yet written: where its bytes will go."""

    id: str
    key: str
    content_type: str
    file_name: str | None
    created_at: float
    multipart: bool = False
    parts: dict[int, str] = field(default_factory=dict)  # part number → etag
    url: str | None = None  # the file URL the surface handed out for it


@dataclass(frozen=True, slots=True)
class Token:
    """A CDN upload token, as ``POST /storage/auth/token`` hands it out."""

    token: str
    token_type: str
    expires_at: float

    def expires_iso(self) -> str:
        """Expiry with an explicit UTC offset: the Python client compares it to an aware datetime."""
        return datetime.fromtimestamp(self.expires_at, UTC).isoformat()


class BlobWriter:
    """Receives an upload's bytes chunk by chunk, refusing (413) past the limit."""

    def __init__(self, path: Path, limit: int, already: int = 0) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self._already = already
        self._digest = hashlib.md5(usedforsecurity=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._already + self.size > self.limit:
            self.abort()
            raise too_large(self.limit)
        self._handle.write(chunk)
        self._digest.update(chunk)

    def close(self) -> str:
        """Finish writing; return the content's etag (hex MD5, as object stores give it)."""
        self._handle.close()
        return self._digest.hexdigest()

    def abort(self) -> None:
        self._handle.close()
        self.path.unlink(missing_ok=True)


def too_large(limit: int) -> StorageError:
    return StorageError(413, f"File is larger than the upload limit of {limit} bytes (--max-upload-bytes)")


class Storage:
    """Files under ``root``, single and multipart uploads in flight, and upload tokens."""

    def __init__(self, root: Path, *, clock: Clock, max_bytes: int, rng: random.Random | None = None) -> None:
        self.root = root
        self.clock = clock
        self.max_bytes = max_bytes
        # Unseeded by default: files outlive the process, so names must not repeat across runs.
        self._rng = rng or random.Random()
        self._pending: dict[str, PendingUpload] = {}

    # -- names ---------------------------------------------------------------------------

    def _token(self, nbytes: int = 16) -> str:
        return f"{self._rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def new_key(self, content_type: str, file_name: str | None) -> str:
        """A fresh key like fal's ``<word>/<id>.<ext>``; the extension follows the name or the type."""
        suffix = Path(file_name).suffix.lower() if file_name else ""
        if not re.fullmatch(r"\.[a-z0-9]{1,10}", suffix):
            suffix = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".bin"
        while True:
            key = f"{self._rng.choice(_WORDS)}/{self._token(10)}{suffix}"
            if not self._blob(key).exists():
                return key

    def _blob(self, key: str) -> Path:
        return self.root / "files" / key

    def _meta(self, key: str) -> Path:
        return self.root / "meta" / (key + ".json")

    def _part(self, upload_id: str, number: int) -> Path:
        return self.root / "parts" / upload_id / str(number)

    # -- tokens and pending uploads ------------------------------------------------------

    def issue_token(self) -> Token:
        return Token(self._token(), "Bearer", self.clock.now() + TOKEN_SECONDS)

    def initiate(self, content_type: str, file_name: str | None, *, multipart: bool = False) -> PendingUpload:
        """Reserve a key for an upload to come; its id is the capability the upload URL carries."""
        self._forget_stale()
        upload = PendingUpload(
            id=self._token(),
            key=self.new_key(content_type, file_name),
            content_type=content_type or "application/octet-stream",
            file_name=file_name,
            created_at=self.clock.now(),
            multipart=multipart,
        )
        self._pending[upload.id] = upload
        return upload

    def pending(self, upload_id: str) -> PendingUpload | None:
        return self._pending.get(upload_id)

    def pending_for_key(self, upload_id: str, key: str) -> PendingUpload | None:
        upload = self._pending.get(upload_id)
        return upload if upload is not None and upload.key == key else None

    def _forget_stale(self) -> None:
        cutoff = self.clock.now() - PENDING_SECONDS
        for upload in [u for u in self._pending.values() if u.created_at < cutoff]:
            self.discard(upload)

    def discard(self, upload: PendingUpload) -> None:
        self._pending.pop(upload.id, None)
        shutil.rmtree(self.root / "parts" / upload.id, ignore_errors=True)

    # -- writing -------------------------------------------------------------------------

    def writer(self, key: str) -> BlobWriter:
        """A writer for a whole file; ``commit`` makes it visible."""
        return BlobWriter(self._blob(key).with_name(self._blob(key).name + ".partial"), self.max_bytes)

    def commit(
        self, key: str, writer: BlobWriter, content_type: str, file_name: str | None, url: str | None = None
    ) -> StoredFile:
        writer.close()
        final = self._blob(key)
        writer.path.replace(final)
        return self._record(key, content_type, file_name, writer.size, url)

    def part_writer(self, upload: PendingUpload, number: int) -> BlobWriter:
        """A writer for one part; the limit counts the parts already received."""
        if not 1 <= number <= 10_000:
            raise StorageError(400, f"Part number must be between 1 and 10000, not {number}")
        received = sum(self._part(upload.id, n).stat().st_size for n in upload.parts if n != number)
        return BlobWriter(self._part(upload.id, number), self.max_bytes, already=received)

    def finish_part(self, upload: PendingUpload, number: int, writer: BlobWriter) -> str:
        etag = writer.close()
        upload.parts[number] = etag
        return etag

    def complete(self, upload: PendingUpload, parts: list[int] | None = None) -> StoredFile:
        """Join the parts (those named, else all received) into the file, in part-number order."""
        # Clients list parts in the order they finished (the Python client uploads ten at once).
        numbers = sorted(set(parts)) if parts else sorted(upload.parts)
        missing = [n for n in numbers if n not in upload.parts]
        if not numbers or missing:
            raise StorageError(400, f"Cannot complete the upload: parts {missing or 'none'} were not received")
        final = self._blob(upload.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(final.name + ".partial")
        with partial.open("wb") as out:
            for number in numbers:
                with self._part(upload.id, number).open("rb") as part:
                    shutil.copyfileobj(part, out)
        partial.replace(final)
        size = final.stat().st_size
        stored = self._record(upload.key, upload.content_type, upload.file_name, size, upload.url)
        self.discard(upload)
        return stored

    def finish_single(self, upload: PendingUpload) -> None:
        self._pending.pop(upload.id, None)

    def _record(self, key: str, content_type: str, file_name: str | None, size: int, url: str | None) -> StoredFile:
        meta = self._meta(key)
        meta.parent.mkdir(parents=True, exist_ok=True)
        urls = () if url is None else (url,)
        info = {"content_type": content_type, "file_name": file_name, "size": size, "urls": list(urls)}
        meta.write_text(json.dumps(info))
        return StoredFile(key, self._blob(key), content_type, size, file_name, urls)

    def put(self, key: str, data: bytes, content_type: str, file_name: str | None, url: str) -> StoredFile:
        """Keep a file the emulator made itself under ``key``; a key already kept is not written again."""
        stored = self.get(key)
        if stored is not None:
            return stored
        writer = self.writer(key)
        writer.write(data)
        return self.commit(key, writer, content_type, file_name, url)

    # -- reading -------------------------------------------------------------------------

    def get(self, key: str) -> StoredFile | None:
        """A stored file by key; None for anything not uploaded (or not a key at all)."""
        if not _KEY.fullmatch(key):
            return None
        blob, meta = self._blob(key), self._meta(key)
        try:
            info = json.loads(meta.read_text())
            size = blob.stat().st_size
        except (OSError, ValueError):
            return None
        content_type = str(info.get("content_type") or "application/octet-stream")
        return StoredFile(key, blob, content_type, size, info.get("file_name"), tuple(info.get("urls", ())))

    def head(self, key: str, nbytes: int = 16) -> bytes:
        """The first bytes of a stored file, to tell what it holds."""
        with self._blob(key).open("rb") as handle:
            return handle.read(nbytes)
