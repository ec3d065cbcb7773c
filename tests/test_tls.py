"""The local CA, the server certificate and the CA bundle; TLS served by both ASGI servers."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import certifi
import httpx
import pytest
from cryptography import x509

from emulator.config import Settings, SettingsError
from emulator.core.hosts import FAL_HOSTS
from emulator.runtime import serving
from emulator.runtime.tls import ensure_certificates, server_names
from tests.processes import emulator_process, run_scenario


def sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in names}


def test_first_use_creates_a_ca_and_a_certificate_for_loopback_and_fal_hosts(tmp_path: Path) -> None:
    """The server certificate covers 127.0.0.1, ::1, localhost and fal's host names; keys are private."""
    paths = ensure_certificates(tmp_path, server_names("127.0.0.1"))
    names = sans(paths.cert)
    assert {"127.0.0.1", "::1", "localhost", "queue.fal.run", "fal.run", "rest.fal.ai", "v3.fal.media"} <= names
    assert "*.fal.media" in names and "rest.alpha.fal.ai" in names
    for key in (paths.key, paths.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_the_certificate_covers_every_fal_host_of_the_host_table(tmp_path: Path) -> None:
    """The server certificate names each host of the one host table, fal-client's fallbacks included."""
    names = sans(ensure_certificates(tmp_path, server_names("127.0.0.1")).cert)
    assert {"queue.falrun.com", "falrun.com", "*.fal.media"} <= names
    assert set(FAL_HOSTS) <= names


def test_the_ca_is_kept_and_the_certificate_follows_the_names(tmp_path: Path) -> None:
    """A second start reuses the CA; a new bound host gets a new certificate from the same CA."""
    first = ensure_certificates(tmp_path, server_names("127.0.0.1"))
    ca, cert = first.ca_cert.read_bytes(), first.cert.read_bytes()
    again = ensure_certificates(tmp_path, server_names("127.0.0.1"))
    assert (again.ca_cert.read_bytes(), again.cert.read_bytes()) == (ca, cert)
    moved = ensure_certificates(tmp_path, server_names("192.0.2.7"))
    assert moved.ca_cert.read_bytes() == ca
    assert "192.0.2.7" in sans(moved.cert)
    assert moved.cert.read_bytes() != cert


def test_a_certificate_near_its_end_is_renewed(tmp_path: Path) -> None:
    """Within 30 days of expiry the server certificate is issued again."""
    old = ensure_certificates(tmp_path, server_names("127.0.0.1")).cert.read_bytes()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=380)
    assert ensure_certificates(tmp_path, server_names("127.0.0.1"), now=later).cert.read_bytes() != old


def test_the_bundle_is_the_ca_plus_the_public_roots(tmp_path: Path) -> None:
    """SSL_CERT_FILE can point at the bundle without breaking other https calls: certifi's roots are in it."""
    paths = ensure_certificates(tmp_path, server_names("127.0.0.1"))
    bundle = paths.bundle.read_text()
    assert bundle.startswith(paths.ca_cert.read_text())
    assert Path(certifi.where()).read_text() in bundle
    context = ssl.create_default_context(cafile=str(paths.bundle))
    assert len(context.get_ca_certs()) > 100


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
@pytest.mark.process
def test_both_servers_serve_http_and_https_at_once(tmp_path: Path, server: str) -> None:
    """One process answers plain http on --port and https on --tls-port, with a certificate the bundle trusts."""
    with emulator_process(tmp_path, ["--profile", "instant", "--server", server]) as emulator:
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca-bundle.pem"))
        secure = httpx.get(f"{emulator.https_url}/_emulator/health", verify=context)
        plain = httpx.get(f"{emulator.http_url}/_emulator/health")
        output = run_scenario(emulator.client_environment(), "stream", prompt="echo: both ways")
    assert secure.status_code == plain.status_code == 200
    assert output[-1]["output"] == "echo: both ways"


@pytest.mark.process
def test_a_busy_tls_port_stops_serve_with_a_clear_message(tmp_path: Path) -> None:
    """If --tls-port is taken, serve exits 2 naming the address and the option, without a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [sys.executable, "-m", "emulator", "serve", "--port", "0", "--tls-port", str(port)]
        done = subprocess.run([*argv, "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} (--tls-port)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.socket
def test_a_busy_default_tls_port_falls_back_to_a_free_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the default TLS port is taken, listen() binds another and a note says which and how to choose."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(serving, "DEFAULT_TLS_PORT", taken)
        listeners, settings, notes = serving.listen(Settings(port=0, tls_port=taken))
        listeners.close()
    assert settings.tls_port not in (0, taken)
    assert notes == [
        f"  note: port {taken} is taken, so https listens on port {settings.tls_port} instead "
        "(choose one with --tls-port; `env` finds it either way)"
    ]


@pytest.mark.socket
def test_a_busy_http_port_says_what_to_do() -> None:
    """A taken --port is an error that suggests env for a running emulator and another port."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(SettingsError) as raised:
            serving.listen(Settings(port=taken, tls_port=0))
    message = str(raised.value)
    assert f"cannot listen on 127.0.0.1:{taken} (--port)" in message
    assert f"any-llm-emulator env --port {taken}" in message and "--port 0" not in message
    assert "--port N" in message
