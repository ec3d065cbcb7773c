"""The official JS client (@fal-ai/client), unmodified: node's own test runner on ``tests/js``.

The node suite starts its own emulator processes (plain http, through the proxy path) with
this interpreter; ``make test`` installs the client from the committed lock file first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = [pytest.mark.process, pytest.mark.js]

JS_DIR = ROOT / "tests" / "js"


def test_the_js_client_suite_passes() -> None:
    """`node --test` passes: subscribe, queue, streams, run, storage, auto-upload and ValidationError."""
    node = shutil.which("node")
    assert node is not None, "node (20 or later) is needed for the JS client suite"
    assert (JS_DIR / "node_modules" / "@fal-ai" / "client").is_dir(), "run `make test` (it runs npm ci in tests/js)"
    env = {**os.environ, "EMULATOR_PYTHON": sys.executable}
    done = subprocess.run([node, "--test"], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", done.stdout, re.M))
    assert int(counts["tests"]) >= 10 and counts["pass"] == counts["tests"] and counts["fail"] == "0", report
