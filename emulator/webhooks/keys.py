"""The signing keys: Ed25519, created once in the data directory, published as a JWKS."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emulator.core.models import JSON
from emulator.webhooks.signing import b64url, b64url_decode

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# cryptography (about 8 MB of RSS and 20 ms) is imported where a key is first made or read: the
# key ring itself is read on first use, so a server that sends no webhook never loads it.

KEY_FILE = "webhook-keys.json"
# Rotation publishes old keys beside the new one; this bounds how many the JWKS keeps.
MAX_KEYS = 10


class KeyFileError(RuntimeError):
    """The key file exists but cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Ed25519 key and its key id (the RFC 7638 thumbprint of its public JWK)."""

    kid: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        private = Ed25519PrivateKey.generate()
        return cls(_thumbprint(_public_x(private)), private)

    def public_jwk(self) -> JSON:
        return {"kty": "OKP", "crv": "Ed25519", "x": _public_x(self.private), "kid": self.kid}

    def private_jwk(self) -> JSON:
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        raw = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {**self.public_jwk(), "d": b64url(raw)}


def _public_x(private: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return b64url(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _thumbprint(x: str) -> str:
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


class KeyRing:
    """The key set kept in ``path``: read (or created) on first use, so nothing touches disk before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: list[SigningKey] | None = None

    def keys(self) -> list[SigningKey]:
        """Every published key, oldest first; the last one signs."""
        if self._keys is None:
            self._keys = self._read() if self.path.exists() else self._create()
        return self._keys

    def active(self) -> SigningKey:
        return self.keys()[-1]

    def jwks(self) -> JSON:
        """The public JWKS, newest key first."""
        return {"keys": [key.public_jwk() for key in reversed(self.keys())]}

    def rotate(self) -> SigningKey:
        """Add a new signing key; the previous ones stay published (up to ``MAX_KEYS``)."""
        key = SigningKey.generate()
        keys = [*self.keys(), key][-MAX_KEYS:]
        tmp = self._write_tmp(keys)
        os.replace(tmp, self.path)
        self._keys = keys
        return key

    def _create(self) -> list[SigningKey]:
        keys = [SigningKey.generate()]
        tmp = self._write_tmp(keys)
        try:
            # A hard link never overwrites: if another emulator created the file first, use its keys.
            os.link(tmp, self.path)
        except FileExistsError:
            return self._read()
        finally:
            tmp.unlink()
        return keys

    def _write_tmp(self, keys: list[SigningKey]) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        # Private keys: readable by the owner only, from the first byte written.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"keys": [key.private_jwk() for key in keys]}, handle, indent=2)
        return tmp

    def _read(self) -> list[SigningKey]:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            document = json.loads(self.path.read_text())
            keys = [
                SigningKey(str(jwk["kid"]), Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"])))
                for jwk in document["keys"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"webhook key file {self.path} is unreadable: {exc}") from exc
        if not keys:
            raise KeyFileError(f"webhook key file {self.path} holds no key")
        return keys
