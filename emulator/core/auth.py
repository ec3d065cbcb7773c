"""The ``Authorization`` header: which namespace a caller belongs to."""

from __future__ import annotations

import functools
import hashlib

MISSING = "Missing Authorization header. Expected 'Authorization: Key <key_id>:<key_secret>'."
MALFORMED = "Invalid Key Authorization header format. Expected '<key_id>:<key_secret>'."
ANONYMOUS = "anonymous"


class AuthError(ValueError):
    """The caller could not be identified; the message is the 401 detail."""


def namespace_for(header: str | None, *, required: bool = True) -> str:
    """The namespace for an ``Authorization`` header: the key id, or a digest of a bearer token.

    Any well-formed key is accepted; it only separates one caller's state from another's.
    """
    if not header:
        if required:
            raise AuthError(MISSING)
        return ANONYMOUS
    return _namespace(header)


# Parsed once per distinct header: every call (and the journal) reads it, and callers reuse keys.
@functools.lru_cache(maxsize=1024)
def _namespace(header: str) -> str:
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    scheme = scheme.lower()
    if scheme == "key":
        key_id, sep, secret = credentials.partition(":")
        if not sep or not key_id or not secret or any(c.isspace() for c in credentials):
            raise AuthError(MALFORMED)
        return key_id
    if scheme == "bearer" and credentials:
        return "bearer-" + hashlib.sha256(credentials.encode()).hexdigest()[:16]
    raise AuthError(MALFORMED)
