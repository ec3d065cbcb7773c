"""`any-llm-emulator env` and the helper that points fal-client's storage URLs at the emulator."""

from __future__ import annotations

from pathlib import Path

import fal_client.client
import pytest

from emulator.runtime.cli import main
from emulator.runtime.client import point_fal_client
from tests.processes import parse_exports


def env_output(capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str]) -> str:
    assert main(["env", *argv], environ) == 0
    return capsys.readouterr().out


def test_env_prints_exports_and_the_js_snippet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default lines point at 127.0.0.1:8443 with a path prefix for run, and show fal.config for JS."""
    out = env_output(capsys, ["--data-dir", str(tmp_path)], {})
    exports = parse_exports(out)
    assert exports == {
        "FAL_KEY": "local:secret",
        "FAL_RUN_HOST": "127.0.0.1:8443/run",
        "FAL_QUEUE_RUN_HOST": "127.0.0.1:8443",
        "SSL_CERT_FILE": str(tmp_path / "tls" / "ca-bundle.pem"),
    }
    assert Path(exports["SSL_CERT_FILE"]).is_file()
    assert (
        '#   fal.config({ credentials: "local:secret", proxyUrl: {"url": "http://127.0.0.1:8000/api/fal/proxy"' in out
    )
    assert all(line.startswith(("export ", "#")) for line in out.splitlines())


def test_env_takes_the_same_options_and_variables_as_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ANY_LLM_EMULATOR_* variables and --host/--port/--tls-port shape the lines; 0.0.0.0 is dialled as 127.0.0.1."""
    environ = {"ANY_LLM_EMULATOR_TLS_PORT": "9443", "ANY_LLM_EMULATOR_DATA_DIR": str(tmp_path)}
    out = env_output(capsys, ["--host", "0.0.0.0", "--port", "9000"], environ)
    assert parse_exports(out)["FAL_QUEUE_RUN_HOST"] == "127.0.0.1:9443"
    assert "http://127.0.0.1:9000/api/fal/proxy" in out


def test_env_without_tls_says_the_python_client_needs_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --tls-port 0 only FAL_KEY is exported, a comment says why, and no CA is made."""
    out = env_output(capsys, ["--tls-port", "0", "--data-dir", str(tmp_path)], {})
    assert parse_exports(out) == {"FAL_KEY": "local:secret"}
    assert "only speaks https" in out
    assert not (tmp_path / "tls").exists()


def test_serve_help_lists_the_client_options(capsys: pytest.CaptureFixture[str]) -> None:
    """serve --help explains --tls-port, --data-dir and --max-upload-bytes with their variables."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for option in ("--tls-port", "--data-dir", "--max-upload-bytes", "ANY_LLM_EMULATOR_TLS_PORT"):
        assert option in text


def test_point_fal_client_sets_only_the_storage_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper derives REST_URL and CDN_URL from FAL_QUEUE_RUN_HOST and leaves the rest of the client alone."""
    monkeypatch.setattr(fal_client.client, "REST_URL", fal_client.client.REST_URL)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_client.client.CDN_URL)
    queue_format = fal_client.client.QUEUE_URL_FORMAT
    base = point_fal_client(environ={"FAL_QUEUE_RUN_HOST": "127.0.0.1:8443"})
    assert base == "https://127.0.0.1:8443"
    assert fal_client.client.REST_URL == "https://127.0.0.1:8443/rest"
    assert fal_client.client.CDN_URL == "https://127.0.0.1:8443/cdn"
    assert queue_format == fal_client.client.QUEUE_URL_FORMAT


def test_point_fal_client_without_the_environment_says_what_to_do() -> None:
    """Without FAL_QUEUE_RUN_HOST or a base URL the helper explains how to get one."""
    with pytest.raises(RuntimeError, match=r'eval "\$\(any-llm-emulator env\)"'):
        point_fal_client(environ={})
