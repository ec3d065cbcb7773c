"""Loaded endpoints in a real emulator process: the official Python client, and a bad document at start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ROOT, emulator_process, run_scenario

pytestmark = pytest.mark.process

DATA = ROOT / "tests" / "data" / "fal-openapi"


@pytest.fixture(scope="module")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A client environment for an instant-profile emulator with every fal document loaded."""
    options = ["--profile", "instant", "--endpoints", str(DATA)]
    with emulator_process(tmp_path_factory.mktemp("endpoints"), options) as server:
        yield server.client_environment()


def _only_file(answer: dict[str, Any]) -> dict[str, Any]:
    assert len(answer["files"]) == 1
    found: dict[str, Any] = answer["files"][0]
    assert found["status"] == 200
    assert found["type"] == found["file"]["content_type"]
    if "file_size" in found["file"]:
        assert found["size"] == found["file"]["file_size"]
    return found


def test_subscribe_runs_image_image_to_image_and_video_endpoints(server_env: dict[str, str]) -> None:
    """fal_client.subscribe gets flux, esrgan (on an uploaded image) and kling outputs whose files download."""
    answer = run_scenario(server_env, "loaded_endpoints")
    assert answer["image_url"].startswith(f"https://{server_env['FAL_QUEUE_RUN_HOST']}/cdn/files/")
    image = _only_file(answer["fal-ai/flux/schnell"])
    assert image["pixels"] == [512, 512] == [image["file"]["width"], image["file"]["height"]]
    upscaled = _only_file(answer["fal-ai/esrgan"])
    assert upscaled["type"] == "image/png"
    assert upscaled["pixels"] == [upscaled["file"]["width"], upscaled["file"]["height"]]
    video = _only_file(answer["fal-ai/kling-video/v1.6/pro/image-to-video"])
    assert video["type"] == "video/mp4"


def test_a_bad_document_stops_the_server_with_one_line(tmp_path: Path) -> None:
    """serve with a document that is not fal's shape exits 2 with one line naming the file and the problem."""
    bad = tmp_path / "broken.json"
    bad.write_text('{"openapi": "3.0.4", "info": {"title": "x"}, "paths": {}}')
    argv = [sys.executable, "-m", "emulator", "serve", "--port", "0", "--tls-port", "0"]
    argv += ["--data-dir", str(tmp_path / "data"), "--endpoints", str(bad)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(bad) in lines[0] and "not a fal endpoint document" in lines[0]
