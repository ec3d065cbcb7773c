"""`any-llm-emulator env` and the helper that points fal-client's storage URLs at the emulator."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import fal_client.client
import pytest

from emulator.config import Settings
from emulator.runtime.cli import main
from emulator.runtime.client import point_fal_client
from emulator.runtime.clientenv import banner, env_command
from emulator.runtime.testing import ServerThread, bind_loopback, serve_in_thread
from tests.processes import parse_exports

pytestmark = pytest.mark.socket


def env_output(capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str]) -> str:
    assert main(["env", *argv], environ) == 0
    return capsys.readouterr().out


@contextlib.contextmanager
def running(data_dir: Path, *, tls: bool = True, **changes: object) -> Iterator[ServerThread]:
    settings = Settings(profile="instant", data_dir=data_dir).replace(**changes)
    tls_socket = bind_loopback() if tls else None
    try:
        with serve_in_thread(settings, tls=tls_socket) as server:
            yield server
    finally:
        if tls_socket is not None:
            tls_socket.close()


def test_env_asks_the_running_server_for_its_ports_and_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """env prints the TLS port and CA bundle the server at --port really uses, not the defaults."""
    with running(tmp_path) as server:
        port = server.base_url.rsplit(":", 1)[1]
        tls_port = str(server.https_url).rsplit(":", 1)[1]
        out = env_output(capsys, ["--port", port], {})
    exports = parse_exports(out)
    assert exports == {
        "FAL_KEY": "local:secret",
        "FAL_RUN_HOST": f"127.0.0.1:{tls_port}/run",
        "FAL_QUEUE_RUN_HOST": f"127.0.0.1:{tls_port}",
        "SSL_CERT_FILE": str(tmp_path / "tls" / "ca-bundle.pem"),
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/run/openrouter/router/openai/v1",
        "OPENAI_API_KEY": "local:secret",
    }
    assert Path(exports["SSL_CERT_FILE"]).is_file()
    assert f'proxyUrl: {{"url": "http://127.0.0.1:{port}/api/fal/proxy"' in out
    assert all(line.startswith(("export ", "#")) for line in out.splitlines())


def test_env_reads_the_port_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ANY_LLM_EMULATOR_PORT says where env asks, as it says where serve listens."""
    with running(tmp_path) as server:
        port = server.base_url.rsplit(":", 1)[1]
        out = env_output(capsys, [], {"ANY_LLM_EMULATOR_PORT": port})
    assert parse_exports(out)["SSL_CERT_FILE"] == str(tmp_path / "tls" / "ca-bundle.pem")


def test_env_without_tls_says_the_python_client_needs_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """For a server without TLS only the keys and the OpenAI base URL are exported, and a comment says why."""
    with running(tmp_path, tls=False) as server:
        out = env_output(capsys, ["--port", server.base_url.rsplit(":", 1)[1]], {})
    assert parse_exports(out) == {
        "FAL_KEY": "local:secret",
        "OPENAI_BASE_URL": f"{server.base_url}/run/openrouter/router/openai/v1",
        "OPENAI_API_KEY": "local:secret",
    }
    assert "only speaks https" in out


def test_env_without_a_server_fails_with_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    """With nothing listening at --port, env exits 1 saying no emulator answers there and how to start one."""
    with contextlib.closing(bind_loopback()) as unused:  # bound, never listening: connections are refused
        port = unused.getsockname()[1]
        assert main(["env", "--port", str(port)], {}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no emulator answers at http://127.0.0.1:{port}" in captured.err
    assert "any-llm-emulator serve" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_env_passes_the_control_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server with a control token answers env only with the token, and without it env says so."""
    with running(tmp_path, control_token="s3cret") as server:
        port = server.base_url.rsplit(":", 1)[1]
        assert main(["env", "--port", port], {}) == 1
        assert "needs its control token" in capsys.readouterr().err
        out = env_output(capsys, ["--port", port], {"ANY_LLM_EMULATOR_CONTROL_TOKEN": "s3cret"})
    assert "SSL_CERT_FILE" in parse_exports(out)


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


def test_the_banner_prints_the_exact_env_line_of_this_installation(tmp_path: Path) -> None:
    """serve's banner names this venv's script and the non-default options env needs to find the server."""
    settings = Settings(port=9000, tls_port=9443, control_token="t0k", data_dir=tmp_path)
    script = Path(sys.executable).parent / "any-llm-emulator"
    assert script.exists()
    expected = f"{script} env --port 9000 --control-token t0k"
    assert env_command(settings) == expected
    assert f'eval "$({expected})"' in banner(settings, tmp_path / "tls" / "ca-bundle.pem")
    assert env_command(Settings(data_dir=tmp_path)) == f"{script} env"
