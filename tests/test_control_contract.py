"""schemathesis against control-openapi.yaml: whatever a caller sends the control API, never a 500."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from hypothesis import HealthCheck, settings

from emulator import Settings, create_app

ROOT = Path(__file__).resolve().parent.parent
# Rotating webhook keys writes to the data directory: a temporary one, removed at exit.
DATA_DIR = Path(tempfile.mkdtemp(prefix="control-contract-"))
atexit.register(shutil.rmtree, DATA_DIR, True)

document = yaml.safe_load((ROOT / "control-openapi.yaml").read_text())
document["servers"] = [{"url": "/_emulator"}]
schema = schemathesis.openapi.from_dict(document)
schema.app = create_app(Settings(profile="instant", seed=5, data_dir=DATA_DIR))
schema.config.generation.update(max_examples=30, allow_extra_parameters=False)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_control_api_never_answers_a_server_error(case: schemathesis.Case[Any]) -> None:
    """Generated control calls, valid and invalid, get a 2xx or a clear 4xx, never a 5xx."""
    response = case.call()
    assert response.status_code < 500, (response.status_code, response.text[:300])
