"""fal's published endpoint documents: loading, refusing what is not one, combining, serving, inputs."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator import ManualClock
from emulator.core.storage import Storage
from emulator.endpoints.documents import (
    DocumentError,
    EndpointDocument,
    combined_document,
    load_document,
    load_documents,
    parse_document,
    served_document,
)
from emulator.endpoints.inputs import FileInputCheck, FilePolicy, InputValidator, example_input, file_inputs
from emulator.endpoints.registry import EndpointRegistry

DATA = Path(__file__).parent / "data" / "fal-openapi"
FILES = sorted(DATA.glob("*.json"))
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def documents() -> dict[str, EndpointDocument]:
    return {document.endpoint_id: document for document in load_documents([DATA])}


def flux() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "fal-ai__flux__dev.json").read_text())
    return data


def test_the_folder_holds_the_twenty_two_documents() -> None:
    """The test data is the 22 published documents, one file each."""
    assert len(FILES) == 22


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_published_document_loads(path: Path) -> None:
    """Each document gives its endpoint id (as its file is named), its category and both schemas."""
    document = load_document(path)
    assert document.endpoint_id == path.stem.replace("__", "/")
    assert document.category == document.raw["info"]["x-fal-metadata"]["category"]
    assert document.input_name.endswith("Input") and document.output_name.endswith("Output")
    assert "$ref" not in json.dumps(document.input_schema) + json.dumps(document.output_schema)


def test_a_folder_loads_every_document_in_it(documents: dict[str, EndpointDocument]) -> None:
    """Loading the folder gives one document per endpoint."""
    assert len(documents) == 22
    assert documents["fal-ai/flux/dev"].category == "text-to-image"
    assert documents["fal-ai/flux/dev"].app_id == "fal-ai/flux"


def test_a_yaml_document_loads_like_its_json(tmp_path: Path) -> None:
    """The same document written as YAML loads to the same endpoint."""
    path = tmp_path / "flux.yaml"
    # Status codes unquoted, as people write them by hand: YAML reads them as integers.
    path.write_text(yaml.safe_dump(flux()).replace("'200':", "200:"))
    document = load_document(path)
    assert document.endpoint_id == "fal-ai/flux/dev"
    assert document.input_schema == load_document(DATA / "fal-ai__flux__dev.json").input_schema


def test_the_endpoint_id_falls_back_to_the_post_path() -> None:
    """Without x-fal-metadata the POST path names the endpoint."""
    data = flux()
    del data["info"]["x-fal-metadata"]
    document = parse_document(data, "flux.json")
    assert document.endpoint_id == "fal-ai/flux/dev"
    assert document.category is None


def _without_paths(data: dict[str, Any]) -> None:
    del data["paths"]


def _without_post(data: dict[str, Any]) -> None:
    del data["paths"]["/fal-ai/flux/dev"]


def _without_output(data: dict[str, Any]) -> None:
    del data["paths"]["/fal-ai/flux/dev/requests/{request_id}"]


def _without_input_schema(data: dict[str, Any]) -> None:
    del data["components"]["schemas"]["FluxDevInput"]


def _with_dangling_ref(data: dict[str, Any]) -> None:
    data["components"]["schemas"]["FluxDevOutput"]["properties"]["images"]["items"]["$ref"] = (
        "#/components/schemas/Nowhere"
    )


def _with_circular_ref(data: dict[str, Any]) -> None:
    data["components"]["schemas"]["Image"]["properties"]["child"] = {"$ref": "#/components/schemas/Image"}


def _without_id(data: dict[str, Any]) -> None:
    del data["info"]["x-fal-metadata"]
    data["paths"]["/flux"] = data["paths"].pop("/fal-ai/flux/dev")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_without_paths, "no paths"),
        (_without_post, "no POST operation"),
        (_without_output, "no Output schema"),
        (_without_input_schema, "components.schemas has no 'FluxDevInput'"),
        (_with_dangling_ref, "'#/components/schemas/Nowhere' points at nothing"),
        (_with_circular_ref, "circular $ref Image -> Image"),
        (_without_id, "no endpoint id"),
    ],
)
def test_a_document_that_is_not_fal_shaped_is_refused_in_one_line(tmp_path: Path, damage: Any, words: str) -> None:
    """The error is one line that names the file and what is missing."""
    data = flux()
    damage(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DocumentError) as caught:
        load_document(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert words in message


@pytest.mark.parametrize(
    ("text", "words"),
    [("{not json", "not valid JSON"), ("[1, 2]", "the top level is list"), ('{"openapi": "2.0"}', "openapi: 3.x")],
)
def test_unreadable_or_foreign_files_are_refused_in_one_line(tmp_path: Path, text: str, words: str) -> None:
    """Broken JSON, a non-object and a Swagger 2 file each give one line naming the file."""
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(DocumentError, match=words) as caught:
        load_document(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_two_documents_for_one_endpoint_are_refused(tmp_path: Path) -> None:
    """A second document for an endpoint id names both files."""
    (tmp_path / "a.json").write_text(json.dumps(flux()))
    (tmp_path / "b.json").write_text(json.dumps(flux()))
    with pytest.raises(DocumentError, match=r"b\.json: endpoint fal-ai/flux/dev is already defined by .*a\.json"):
        load_documents([tmp_path])


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    """A path that does not exist is named in the error."""
    with pytest.raises(DocumentError, match="no such file or folder"):
        load_documents([tmp_path / "absent"])


def test_the_combined_document_covers_every_endpoint(documents: dict[str, EndpointDocument]) -> None:
    """Every endpoint's four paths are in the combined document and every $ref resolves in it."""
    combined = combined_document(documents.values(), servers=[{"url": "http://127.0.0.1:8000"}])
    assert len(combined["paths"]) == 4 * 22
    assert combined["servers"] == [{"url": "http://127.0.0.1:8000"}]
    text = json.dumps(combined)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in combined["components"]["schemas"], ref


def test_clashing_component_names_are_kept_apart(documents: dict[str, EndpointDocument]) -> None:
    """Two documents' different ``File`` schemas both survive, each document referring to its own."""
    pixverse = documents["fal-ai/pixverse/v5.6/image-to-video"]
    kling = documents["fal-ai/kling-video/v1.6/pro/image-to-video"]
    combined = combined_document([kling, pixverse])
    schemas = combined["components"]["schemas"]
    assert schemas["File"] == kling.raw["components"]["schemas"]["File"]
    renamed = "fal-ai.pixverse.v5.6.image-to-video.File"
    assert schemas[renamed] == pixverse.raw["components"]["schemas"]["File"]
    output = schemas["PixverseV56ImageToVideoOutput"]["properties"]["video"]["allOf"][0]
    assert output == {"$ref": f"#/components/schemas/{renamed}"}


def test_the_combined_document_extends_a_base_without_changing_it() -> None:
    """Endpoints are added to a copy of the base document."""
    base = {"openapi": "3.0.3", "info": {"title": "base", "version": "1"}, "paths": {"/x": {}}}
    original = copy.deepcopy(base)
    combined = combined_document([load_document(DATA / "fal-ai__esrgan.json")], base=base)
    assert base == original
    assert "/x" in combined["paths"] and "/fal-ai/esrgan" in combined["paths"]
    assert combined["info"]["title"] == "base"


def test_a_served_document_is_the_published_one(documents: dict[str, EndpointDocument]) -> None:
    """The served document equals the file; servers are replaced only on request, in a copy."""
    document = documents["fal-ai/esrgan"]
    assert served_document(document) == json.loads((DATA / "fal-ai__esrgan.json").read_text())
    assert json.loads(document.json_text) == document.raw
    moved = served_document(document, servers=[{"url": "http://emulator.test"}])
    assert moved["servers"] == [{"url": "http://emulator.test"}]
    assert document.raw["servers"] == [{"url": "https://queue.fal.run"}]


# -- inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_the_example_input_passes_its_own_validation(path: Path) -> None:
    """An input built from the schema's examples and defaults is valid, and gets the defaults filled in."""
    document = load_document(path)
    body, errors = InputValidator(document).validate(example_input(document))
    assert errors == []
    for name, default in document.input_defaults.items():
        assert name in body and (body[name] == default or name in document.input_schema.get("required", []))


def test_invalid_inputs_get_fastapi_style_details(documents: dict[str, EndpointDocument]) -> None:
    """A wrong type, an out-of-range number, a bad enum and a missing field are each reported at their loc."""
    validator = InputValidator(documents["fal-ai/flux/dev"])
    body = {"num_images": 9, "image_size": "huge", "seed": "x"}
    _, errors = validator.validate(body)
    by_loc = {tuple(error["loc"]): error for error in errors}
    assert by_loc[("body", "prompt")]["type"] == "missing"
    assert by_loc[("body", "num_images")]["type"] == "less_than_equal"
    assert ("body", "image_size") in by_loc
    assert ("body", "seed") in by_loc


def test_a_raw_body_that_is_not_json_is_a_json_error(documents: dict[str, EndpointDocument]) -> None:
    """Broken JSON gives the json_invalid detail."""
    _, errors = InputValidator(documents["fal-ai/flux/dev"]).validate_body(b"{nope")
    assert errors[0]["type"] == "json_invalid"


def data_uri(field: str, kind: str | None) -> str:
    if kind == "image":
        return "data:image/png;base64," + base64.b64encode(PNG).decode()
    return f"data:{kind or 'application'}/octet-stream;base64," + base64.b64encode(b"\x00" * 8).decode()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_an_example_input_with_data_uris_passes_the_strict_file_check(path: Path) -> None:
    """With its file fields given as data URIs, every endpoint's example input loads offline and strict."""
    document = load_document(path)
    body, errors = InputValidator(document).validate(example_input(document, file_url=data_uri))
    assert errors == []
    assert FileInputCheck(None, policy=FilePolicy.STRICT)(document.endpoint_id, body) is None


def test_file_fields_are_found_at_any_depth() -> None:
    """``*_url`` and each item of ``*_urls`` are file inputs, nested ones too; other strings are not."""
    found = list(
        file_inputs(
            {
                "prompt": "a cat",
                "image_url": "a",
                "image_urls": ["b", "c"],
                "ip_adapter": {"mask_image_url": "d"},
                "loras": [{"path": "e"}],
                "webhook_url": "https://example.com/hook",
            }
        )
    )
    assert [(loc, value) for loc, _, value in found] == [
        (["body", "image_url"], "a"),
        (["body", "image_urls", 0], "b"),
        (["body", "image_urls", 1], "c"),
        (["body", "ip_adapter", "mask_image_url"], "d"),
    ]


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(tmp_path, clock=ManualClock(), max_bytes=1 << 20)


def upload(storage: Storage, data: bytes, content_type: str) -> str:
    key = storage.new_key(content_type, None)
    writer = storage.writer(key)
    writer.write(data)
    storage.commit(key, writer, content_type, None)
    return f"http://127.0.0.1:8000/cdn/files/{key}"


def problem_types(check: FileInputCheck, inputs: dict[str, Any]) -> list[str]:
    return [error["type"] for error in check.problems(inputs)]


def test_data_uris_and_uploads_are_accepted(storage: Storage) -> None:
    """An image data URI, an uploaded image and an uploaded video pass, in either policy."""
    video = upload(storage, b"\x00\x00\x00\x18ftypmp42rest", "video/mp4")
    inputs = {
        "image_url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "image_urls": [upload(storage, PNG, "image/png")],
        "video_url": video,
        "audio_url": "data:audio/wav;base64,UklGRg==",
    }
    for policy in FilePolicy:
        assert problem_types(FileInputCheck(storage, policy=policy), inputs) == []


def test_other_urls_are_accepted_offline_and_refused_when_strict(storage: Storage) -> None:
    """A public URL the emulator cannot see passes offline; strict refuses it with fal's download error."""
    inputs = {"image_url": "https://example.com/cat.png", "video_url": "https://v3.fal.media/files/a/b.mp4"}
    assert problem_types(FileInputCheck(storage), inputs) == []
    failure = FileInputCheck(storage, policy=FilePolicy.STRICT)("fal-ai/esrgan", inputs)
    assert failure is not None and failure.status_code == 422
    assert [error["type"] for error in failure.detail] == ["file_download_error"] * 2
    assert failure.detail[0]["loc"] == ["body", "image_url"]
    assert "reaches no network" in failure.detail[0]["ctx"]["reason"]


@pytest.mark.parametrize("policy", list(FilePolicy))
def test_broken_file_inputs_are_refused_in_any_policy(storage: Storage, policy: FilePolicy) -> None:
    """A loopback URL of no upload, a non-image upload as an image, bad data URIs and non-URLs are 422s."""
    text = upload(storage, b"plain text", "text/plain")
    inputs = {
        "image_url": "http://127.0.0.1:8000/cdn/files/koala/none.png",
        "end_image_url": text,
        "image_urls": ["data:image/png;base64,!!!"],
        "video_url": "data:video/mp4;base64,!!!",
        "audio_url": "ftp://example.com/a.wav",
        "tail_image_url": 7,
    }
    assert problem_types(FileInputCheck(storage, policy=policy), inputs) == [
        "file_download_error",
        "image_load_error",
        "image_load_error",
        "file_load_error",
        "url_parsing",
        "string_type",
    ]


def test_the_registry_adds_replaces_and_removes_endpoints(documents: dict[str, EndpointDocument]) -> None:
    """A document added for a known id replaces the endpoint, and the combined document follows at once."""
    registry = EndpointRegistry([documents["fal-ai/flux/dev"], documents["fal-ai/esrgan"]])
    assert registry.endpoint_ids == {"fal-ai/flux/dev", "fal-ai/esrgan"}
    assert "/fal-ai/esrgan" in registry.combined()["paths"]
    endpoint = registry.get("fal-ai/flux/dev")
    assert endpoint is not None and endpoint.category.produces == "image"
    assert [e.endpoint_id for e in registry.for_app("fal-ai/flux")] == ["fal-ai/flux/dev"]
    data = flux()
    data["info"]["x-fal-metadata"]["category"] = "image-to-image"
    registry.add(parse_document(data))
    replaced = registry.get("fal-ai/flux/dev")
    assert replaced is not None and replaced.category.name == "image-to-image" and len(registry) == 2
    registry.add(documents["fal-ai/recraft-v3"])
    assert "/fal-ai/recraft-v3" in registry.combined()["paths"]
    assert registry.remove("fal-ai/esrgan") and not registry.remove("fal-ai/esrgan")
    assert "/fal-ai/esrgan" not in registry.combined()["paths"]
    assert registry.served("fal-ai/esrgan") is None
    assert registry.served("fal-ai/recraft-v3") == documents["fal-ai/recraft-v3"].raw
