"""control-openapi.yaml documents exactly the control routes the app serves."""

from __future__ import annotations

from pathlib import Path

import yaml
from starlette.routing import Mount, Route

from emulator import Settings, create_app

ROOT = Path(__file__).resolve().parent.parent


def served_control_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(profile="instant"))
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/_emulator")
    return {
        (route.path, method)
        for route in mount.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }


def test_every_control_route_is_documented_and_nothing_else() -> None:
    """The second spec file and the mounted control routes list the same paths and methods."""
    spec = yaml.safe_load((ROOT / "control-openapi.yaml").read_text())
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    assert documented == served_control_routes()


def test_control_paths_stay_out_of_the_emulated_api() -> None:
    """openapi.yaml (the emulated fal API) has no /_emulator path."""
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert not [path for path in spec["paths"] if "_emulator" in path]
