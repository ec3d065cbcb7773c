"""The built-in endpoints (any-llm, openrouter/router) are fal documents, served and replaced like loaded ones."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.catalog import ANY_MODEL_PATTERN, MODEL_SCHEMA, load_spec
from emulator.core.openai_compat import ENDPOINTS as OPENAI_ENDPOINTS
from emulator.endpoints.documents import BUILTIN_DIR, builtin_documents, parse_document
from tests.conftest import AUTH
from tests.helpers import drive

pytestmark = pytest.mark.anyio

# The endpoints with fal's queue and run surfaces; fal's OpenAI-compatible ids have the queue's and
# their own run surface (openapi.yaml's OpenAI-compatible paths).
NATIVE_IDS = (
    "fal-ai/any-llm",
    "fal-ai/any-llm/vision",
    "fal-ai/any-llm/enterprise",
    "openrouter/router",
    "openrouter/router/vision",
    "openrouter/router/enterprise",
    "openrouter/router/audio",
    "openrouter/router/video",
    "openrouter/router/video/enterprise",
)
BUILTIN_IDS = (*NATIVE_IDS, *sorted(OPENAI_ENDPOINTS))
BASE = "http://emulator.test"
DATA = Path(__file__).parent / "data" / "fal-openapi"


@pytest.fixture
def core(tmp_path: Path, clock: ManualClock) -> Emulator:
    return Emulator.build(Settings(profile="instant", seed=5, data_dir=tmp_path), clock=clock)


@pytest.fixture
async def client(core: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        yield http


def test_every_built_in_endpoint_has_one_document_in_the_package() -> None:
    """Each built-in id is one JSON file in emulator/endpoints/builtin/, and there is no other."""
    files = sorted(BUILTIN_DIR.glob("*.json"))
    assert [path.name for path in files] == sorted(e.replace("/", "__") + ".json" for e in BUILTIN_IDS)
    assert sorted(document.endpoint_id for document in builtin_documents()) == sorted(BUILTIN_IDS)


def test_the_any_llm_documents_share_one_model_list() -> None:
    """The three any-llm documents declare the same model enum, default and description: one list of names."""
    models = [
        document.raw["components"]["schemas"][MODEL_SCHEMA]
        for document in builtin_documents()
        if document.endpoint_id.startswith("fal-ai/any-llm")
    ]
    assert len(models) == 3
    assert all(model == models[0] for model in models)
    assert models[0]["default"] == "google/gemini-2.5-flash-lite"


def test_the_router_documents_share_their_common_fields() -> None:
    """Every openrouter/router input has the router's common fields, identical, and the same output with usage."""
    router = [
        d for d in builtin_documents() if d.endpoint_id.startswith("openrouter/router") and d.endpoint_id in NATIVE_IDS
    ]
    base = router[0].input_schema["properties"]
    assert router[0].input_schema["required"] == ["model", "prompt"]
    for document in router:
        properties = document.input_schema["properties"]
        assert {name: properties[name] for name in base} == base, document.endpoint_id
        assert {"model", "prompt"} <= set(document.input_schema["required"])
        assert document.output_schema == router[0].output_schema
    assert "usage" in router[0].output_schema["properties"]


@pytest.mark.parametrize("endpoint_id", BUILTIN_IDS)
async def test_each_built_in_document_is_served_where_fal_serves_it(
    client: httpx.AsyncClient, endpoint_id: str
) -> None:
    """The documents path answers the built-in document, which passes the same check as --endpoints documents."""
    served = await client.get("/api/openapi/queue/openapi.json", params={"endpoint_id": endpoint_id})
    assert served.status_code == 200, served.text
    data = served.json()
    document = parse_document(data, "served")
    assert document.endpoint_id == endpoint_id
    assert document.category in ("llm", "vision")
    assert data["servers"] == [{"url": BASE}]
    assert set(data["paths"]) == {
        f"/{endpoint_id}",
        f"/{endpoint_id}/requests/{{request_id}}",
        f"/{endpoint_id}/requests/{{request_id}}/status",
        f"/{endpoint_id}/requests/{{request_id}}/cancel",
    }
    if endpoint_id in NATIVE_IDS:
        assert "prompt" in document.input_schema["required"]
        assert document.output_schema["required"] == ["output"]
    else:  # an OpenAI request in, OpenAI's JSON out
        assert "model" in document.input_schema["required"]
        assert document.output_schema["properties"]["object"]


def test_the_openai_documents_give_a_shared_schema_one_form() -> None:
    """A schema two OpenAI-compatible documents both hold (a message, a content part) is the same in each."""
    seen: dict[str, Any] = {}
    for document in builtin_documents():
        if document.endpoint_id in OPENAI_ENDPOINTS:
            for name, schema in document.raw["components"]["schemas"].items():
                assert seen.setdefault(name, schema) == schema, (document.endpoint_id, name)
    assert {"OpenAIMessage", "OpenAIChatRequest", "OpenAIEmbeddings"} <= set(seen)


async def test_the_combined_document_covers_each_endpoint_once(tmp_path: Path, clock: ManualClock) -> None:
    """/openapi.json has one submit, run and stream operation per endpoint, built-in or loaded, and no copied schema."""
    settings = Settings(profile="instant", seed=5, data_dir=tmp_path, endpoints=(DATA / "fal-ai__esrgan.json",))
    core = Emulator.build(settings, clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        combined = (await http.get("/openapi.json")).json()
        as_yaml = await http.get("/openapi.yaml")
    assert as_yaml.status_code == 200
    operations = [
        (operation["x-emulator-action"], operation["x-emulator-endpoint"])
        for item in combined["paths"].values()
        for operation in item.values()
        if "x-emulator-endpoint" in operation and operation["x-emulator-action"] != "openai"
    ]
    expected = [(a, e) for e in (*NATIVE_IDS, "fal-ai/esrgan") for a in ("submit", "run", "run_stream")]
    expected += [("submit", e) for e in OPENAI_ENDPOINTS]
    assert sorted(operations) == sorted(expected)
    schemas = combined["components"]["schemas"]
    assert not [name for name in schemas if name.startswith(("fal-ai.", "openrouter."))]
    assert "x-emulator-endpoint-paths" not in combined
    text = json.dumps(combined)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.removeprefix("#/components/").split("/", 1)[1] in combined["components"][ref.split("/")[2]], ref


async def test_a_loaded_document_replaces_a_built_in_one_at_run_time(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A document PUT for openrouter/router takes over its input check, its documents and the combined document."""
    document = copy.deepcopy(next(d.raw for d in builtin_documents() if d.endpoint_id == "openrouter/router"))
    document["components"]["schemas"]["RouterInput"] = {
        "type": "object",
        "required": ["question"],
        "properties": {"question": {"type": "string"}},
    }
    before = await drive(clock, client.post("/run/openrouter/router", json={"question": "why?"}))
    assert before.status_code == 422
    put = await client.put("/_emulator/endpoints", content=json.dumps(document))
    assert put.status_code == 200, put.text
    assert put.json()["replaced"] is True
    after = await drive(clock, client.post("/run/openrouter/router", json={"question": "why?"}))
    assert after.status_code == 200, after.text
    old = await drive(clock, client.post("/run/openrouter/router", json={"model": "a/b", "prompt": "hi"}))
    assert [item["loc"] for item in old.json()["detail"]] == [["body", "question"]]
    served = (await client.get("/api/openapi/queue/openapi.json", params={"endpoint_id": "openrouter/router"})).json()
    assert served["components"]["schemas"]["RouterInput"]["required"] == ["question"]
    combined = (await client.get("/openapi.json")).json()
    body = combined["paths"]["/openrouter/router"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert combined["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["required"] == ["question"]
    listed = [item["endpoint_id"] for item in (await client.get("/_emulator/endpoints")).json()["endpoints"]]
    assert listed.count("openrouter/router") == 1
    assert set(BUILTIN_IDS) <= set(listed)


async def test_built_in_endpoints_keep_the_llm_behaviour(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A built-in endpoint answers generated text (router with usage), not an output generated from its schema."""
    any_llm = await drive(clock, client.post("/run/fal-ai/any-llm", json={"prompt": "echo: same words"}))
    assert any_llm.json()["output"] == "echo: same words"
    assert set(any_llm.json()) <= {"output", "reasoning", "partial", "error"}
    router = await drive(clock, client.post("/run/openrouter/router", json={"model": "a/b", "prompt": "echo: hi"}))
    assert router.json()["output"] == "echo: hi"
    assert router.json()["usage"]["total_tokens"] > 0


async def test_the_vision_endpoints_check_their_images_when_they_run(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A built-in vision endpoint still refuses an image that does not load, at image_urls' index."""
    body: dict[str, Any] = {"prompt": "what is this?", "image_urls": ["data:image/png;base64,bm90IGFuIGltYWdl"]}
    response = await drive(clock, client.post("/run/fal-ai/any-llm/vision", json=body))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image_urls", 0]


async def test_any_model_opens_the_served_any_llm_documents(tmp_path: Path, clock: ManualClock) -> None:
    """With --any-model the any-llm documents served per endpoint take a pattern, as the check does."""
    core = Emulator.build(Settings(profile="instant", any_model=True, data_dir=tmp_path), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        served = await http.get("/api/openapi/queue/openapi.json", params={"endpoint_id": "fal-ai/any-llm/vision"})
        ran = await drive(clock, http.post("/run/fal-ai/any-llm", json={"prompt": "hi", "model": "new/model"}))
    model = served.json()["components"]["schemas"][MODEL_SCHEMA]
    assert model["pattern"] == ANY_MODEL_PATTERN and "enum" not in model
    assert ran.status_code == 200, ran.text


def test_the_spec_without_a_served_request_builds_no_document() -> None:
    """Loading the spec leaves the whole document and its texts unbuilt until something serves them."""
    spec = load_spec()
    assert spec._built == {}
    assert spec.operation("submit", "openrouter/router/audio") is not None
    assert "/openrouter/router/audio" in spec.document["paths"]
    assert set(spec._built) == {"document"}
