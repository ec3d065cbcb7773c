"""A local certificate authority, a server certificate it signs, and a CA bundle for clients.

The Python client only speaks https, so the emulator serves TLS with a certificate from a
CA it creates on first use and keeps in the data directory. ``ca-bundle.pem`` holds that CA
followed by the public roots (certifi), so ``SSL_CERT_FILE`` pointing at it keeps every other
https call working.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator.config import CA_BUNDLE_FILE, TLS_SUBDIR
from emulator.core.hosts import certificate_names

# The names the official clients hard-code, so the same certificate also serves a request
# that reaches the emulator by a hosts-file entry or an https proxy.
FAL_HOST_NAMES = certificate_names()
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")

CA_DAYS = 3650
LEAF_DAYS = 397  # the longest validity browsers accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class CertificatePaths:
    """Where the CA, the server certificate and the client bundle live."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def bundle(self) -> Path:
        return self.directory / CA_BUNDLE_FILE


def tls_dir(data_dir: Path) -> Path:
    return data_dir / TLS_SUBDIR


def server_names(bind_host: str) -> tuple[str, ...]:
    """The names and addresses the server certificate covers: loopback, fal's hosts, the bound host."""
    names = [*LOCAL_NAMES, *FAL_HOST_NAMES]
    if bind_host not in ("", "0.0.0.0", "::") and bind_host not in names:
        names.append(bind_host)
    return tuple(names)


def ensure_certificates(data_dir: Path, names: Iterable[str], *, now: dt.datetime | None = None) -> CertificatePaths:
    """Create what is missing (CA, server certificate, bundle) and renew what is stale; return the paths."""
    paths = CertificatePaths(tls_dir(data_dir))
    paths.directory.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.UTC)
    wanted = tuple(dict.fromkeys(names))
    # Two processes starting at once (a server and `env`) must not each make a CA.
    with _locked(paths.directory / ".lock"):
        ca_cert, ca_key = _load_or_create_ca(paths, now)
        if _leaf_is_stale(paths, ca_cert, wanted, now):
            cert, key = _issue_leaf(ca_cert, ca_key, wanted, now)
            _write(paths.key, key.private_bytes(_PEM, _PKCS8, serialization.NoEncryption()), private=True)
            _write(paths.cert, cert.public_bytes(_PEM))
        bundle = ca_cert.public_bytes(_PEM) + b"\n" + Path(certifi.where()).read_bytes()
        if not paths.bundle.exists() or paths.bundle.read_bytes() != bundle:
            _write(paths.bundle, bundle)
    return paths


_PEM = serialization.Encoding.PEM
_PKCS8 = serialization.PrivateFormat.PKCS8


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write atomically, so a reader never sees half a certificate; keys readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _load_or_create_ca(
    paths: CertificatePaths, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if paths.ca_cert.exists() and paths.ca_key.exists():
        cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc - RENEW_BEFORE > now:
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "any-llm emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "any-llm emulator local CA"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(paths.ca_key, key.private_bytes(_PEM, _PKCS8, serialization.NoEncryption()), private=True)
    _write(paths.ca_cert, cert.public_bytes(_PEM))
    return cert, key


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _leaf_is_stale(paths: CertificatePaths, ca: x509.Certificate, names: tuple[str, ...], now: dt.datetime) -> bool:
    if not (paths.cert.exists() and paths.key.exists()):
        return True
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    if cert.issuer != ca.subject or cert.not_valid_after_utc - RENEW_BEFORE <= now:
        return True
    try:
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return True
    return set(sans) != {_general_name(name) for name in names}


def _issue_leaf(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: tuple[str, ...], now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "any-llm emulator")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key
