"""Generated outputs of fal endpoints: valid against their own Output schema, with real files."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

from emulator.core.faults import KNOWN_ERRORS
from emulator.core.fixture_files import Timing
from emulator.core.models import Failure
from emulator.endpoints.categories import billable_units, category_for, make_plan, progress_logs, run_seconds
from emulator.endpoints.documents import EndpointDocument, load_document, load_documents, parse_document
from emulator.endpoints.generate import NAMED_IMAGE_SIZES, OutputGenerator
from emulator.endpoints.inputs import InputValidator, example_input
from emulator.endpoints.render import MAX_IMAGE_PIXELS, RenderCache, RenderSpec, fit

DATA = Path(__file__).parent / "data" / "fal-openapi"
FILES = sorted(DATA.glob("*.json"))


class FileStore:
    """The storage callback, kept in a dict: a URL per content, the bytes and type by URL."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}

    def __call__(self, data: bytes, content_type: str, file_name: str) -> str:
        url = f"https://cdn.test/files/{hashlib.sha256(data).hexdigest()[:16]}/{file_name}"
        self.files[url] = (data, content_type, file_name)
        return url


def validated(document: EndpointDocument, inputs: dict[str, Any]) -> dict[str, Any]:
    body, errors = InputValidator(document).validate(inputs)
    assert errors == []
    return body


def output_validator(document: EndpointDocument) -> jsonschema.protocols.Validator:
    # Checked against the published document itself, not the emulator's resolved copy of it.
    schema = {"$ref": f"#/components/schemas/{document.output_name}", "components": document.raw["components"]}
    return jsonschema.Draft202012Validator(schema)


def file_objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get("url"), str):
            yield value
        else:
            for item in value.values():
                yield from file_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from file_objects(item)


def check_file(data: bytes, content_type: str, entry: dict[str, Any]) -> None:
    """The bytes are what the file object says: type, size, dimensions, duration."""
    assert entry.get("content_type", content_type) == content_type
    if "file_size" in entry:
        assert entry["file_size"] == len(data)
    if content_type.startswith("image/"):
        with Image.open(io.BytesIO(data)) as picture:
            assert Image.MIME[picture.format or ""] == content_type
            if "width" in entry:
                assert picture.size == (entry["width"], entry["height"])
    elif content_type == "video/mp4":
        assert data[4:8] == b"ftyp"
        # The index before the media (faststart), so a browser plays it while it loads.
        assert 0 < data.find(b"moov") < data.find(b"mdat")
        av = pytest.importorskip("av")
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            if "width" in entry:
                assert (stream.codec_context.width, stream.codec_context.height) == (entry["width"], entry["height"])
            frames = sum(1 for _ in container.decode(video=0))
            assert frames >= 1
            if "num_frames" in entry:
                assert frames == entry["num_frames"]
    elif content_type == "audio/wav":
        with wave.open(io.BytesIO(data)) as reader:
            seconds = reader.getnframes() / reader.getframerate()
        if "duration" in entry:
            assert seconds == pytest.approx(entry["duration"])
    else:
        pytest.fail(f"unexpected content type {content_type}")


@pytest.fixture(scope="module")
def documents() -> dict[str, EndpointDocument]:
    return {document.endpoint_id: document for document in load_documents([DATA])}


@pytest.fixture(scope="module")
def generator() -> OutputGenerator:
    return OutputGenerator(seed=11)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_the_output_validates_and_its_files_are_real(path: Path, generator: OutputGenerator) -> None:
    """The output of the example input fits the Output schema, and every file URL holds the file it describes."""
    document = load_document(path)
    store = FileStore()
    output = generator.generate(document, validated(document, example_input(document)), store)
    errors = [error.message for error in output_validator(document).iter_errors(output)]
    assert errors == []
    entries = list(file_objects(output))
    assert entries, "every published document's output has a file"
    for entry in entries:
        data, content_type, file_name = store.files[entry["url"]]
        assert entry.get("file_name", file_name) == file_name
        check_file(data, content_type, entry)


def test_the_produced_kind_follows_the_endpoint(documents: dict[str, EndpointDocument]) -> None:
    """Images for image categories, mp4 videos for video categories."""
    generator = OutputGenerator(seed=1)
    for endpoint, wanted in [
        ("fal-ai/flux/dev", "image/"),
        ("fal-ai/esrgan", "image/"),
        ("fal-ai/ideogram/v2", "image/"),
    ]:
        store = FileStore()
        document = documents[endpoint]
        generator.generate(document, validated(document, example_input(document)), store)
        assert all(content_type.startswith(wanted) for _, content_type, _ in store.files.values())
    store = FileStore()
    document = documents["fal-ai/kling-video/v1.6/pro/image-to-video"]
    output = generator.generate(document, validated(document, example_input(document)), store)
    assert store.files[output["video"]["url"]][1] == "video/mp4"


def test_the_same_input_and_seed_give_the_same_output(documents: dict[str, EndpointDocument]) -> None:
    """Two generators with one seed, each with its own cache, produce identical outputs and bytes."""
    document = documents["fal-ai/flux/dev"]
    inputs = validated(document, {"prompt": "a red fox", "output_format": "png"})
    first, second = FileStore(), FileStore()
    a = OutputGenerator(seed=5).generate(document, inputs, first)
    b = OutputGenerator(seed=5).generate(document, inputs, second)
    assert a == b and first.files == second.files


def test_a_different_seed_gives_a_different_output(documents: dict[str, EndpointDocument]) -> None:
    """The input's seed, and without one the emulator's seed, change the output and its image."""
    document = documents["fal-ai/flux/dev"]
    generator = OutputGenerator(seed=5)
    one = generator.generate(document, validated(document, {"prompt": "a fox", "seed": 1}), FileStore())
    two = generator.generate(document, validated(document, {"prompt": "a fox", "seed": 2}), FileStore())
    assert (one["seed"], two["seed"]) == (1, 2)
    assert one["images"][0]["url"] != two["images"][0]["url"]
    unseeded = validated(document, {"prompt": "a fox"})
    assert OutputGenerator(seed=5).generate(document, unseeded, FileStore()) != OutputGenerator(seed=6).generate(
        document, unseeded, FileStore()
    )


@pytest.mark.parametrize("name", sorted(NAMED_IMAGE_SIZES))
def test_named_image_sizes_render_at_fals_pixel_sizes(
    documents: dict[str, EndpointDocument], generator: OutputGenerator, name: str
) -> None:
    """Each named size decodes at fal's width and height, which the file object reports."""
    document = documents["fal-ai/flux/schnell"]
    store = FileStore()
    output = generator.generate(document, validated(document, {"prompt": "p", "image_size": name}), store)
    image = output["images"][0]
    with Image.open(io.BytesIO(store.files[image["url"]][0])) as picture:
        assert picture.size == NAMED_IMAGE_SIZES[name] == (image["width"], image["height"])


def test_a_custom_size_count_and_format_are_honoured(documents: dict[str, EndpointDocument]) -> None:
    """``image_size`` as width/height, ``num_images`` and ``output_format`` shape the images."""
    document = documents["fal-ai/flux/dev"]
    store = FileStore()
    inputs = {"prompt": "p", "image_size": {"width": 320, "height": 200}, "num_images": 3, "output_format": "png"}
    output = OutputGenerator().generate(document, validated(document, inputs), store)
    assert len(output["images"]) == 3 and output["has_nsfw_concepts"] == [False] * 3
    assert len({image["url"] for image in output["images"]}) == 3
    for image in output["images"]:
        assert (image["width"], image["height"], image["content_type"]) == (320, 200, "image/png")
        check_file(store.files[image["url"]][0], "image/png", image)
    assert output["prompt"] == "p"


def test_an_aspect_ratio_shapes_the_image(documents: dict[str, EndpointDocument]) -> None:
    """An endpoint sized by aspect ratio renders that shape."""
    document = documents["fal-ai/ideogram/v2"]
    store = FileStore()
    output = OutputGenerator().generate(document, validated(document, {"prompt": "p", "aspect_ratio": "9:16"}), store)
    with Image.open(io.BytesIO(store.files[output["images"][0]["url"]][0])) as picture:
        assert picture.size == (576, 1024)


def test_sync_mode_returns_data_uris_and_stores_nothing(documents: dict[str, EndpointDocument]) -> None:
    """With sync_mode the file is inline as a data URI of the same image."""
    document = documents["fal-ai/flux/schnell"]
    store = FileStore()
    inputs = validated(document, {"prompt": "p", "sync_mode": True, "image_size": "square", "output_format": "png"})
    image = OutputGenerator().generate(document, inputs, store)["images"][0]
    assert store.files == {}
    head, _, payload = image["url"].partition(",")
    assert head == "data:image/png;base64"
    check_file(base64.b64decode(payload), "image/png", image)


def test_a_video_lasts_the_requested_duration(documents: dict[str, EndpointDocument]) -> None:
    """``duration`` and ``aspect_ratio`` of a video endpoint give the mp4's length and shape."""
    av = pytest.importorskip("av")
    document = documents["fal-ai/kling-video/v1.6/pro/image-to-video"]
    store = FileStore()
    inputs = validated(document, {**example_input(document), "duration": "10", "aspect_ratio": "9:16"})
    output = OutputGenerator().generate(document, inputs, store)
    data = store.files[output["video"]["url"]][0]
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (720, 1280)
        assert float(stream.duration * stream.time_base) == pytest.approx(10.0, abs=0.2)


AUDIO_DOCUMENT = {
    "openapi": "3.0.4",
    "info": {
        "title": "t",
        "version": "1",
        "x-fal-metadata": {"endpointId": "test/speech", "category": "text-to-speech"},
    },
    "paths": {
        "/test/speech": {
            "post": {
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SpeechInput"}}}
                }
            }
        },
        "/test/speech/requests/{request_id}": {
            "get": {
                "responses": {
                    "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/SpeechOutput"}}}}
                }
            }
        },
    },
    "components": {
        "schemas": {
            "SpeechInput": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "duration": {"type": "number", "default": 3}},
                "required": ["text"],
            },
            "SpeechOutput": {
                "type": "object",
                "properties": {"audio": {"$ref": "#/components/schemas/File"}, "words": {"type": "integer"}},
                "required": ["audio", "words"],
            },
            "File": {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "content_type": {"type": "string"},
                    "file_size": {"type": "integer"},
                    "duration": {"type": "number"},
                },
                "required": ["url"],
            },
        }
    },
}


def test_an_audio_endpoint_returns_a_wav_of_the_stated_duration() -> None:
    """A speech endpoint's file is a WAV as long as the input's duration; other fields follow the schema."""
    document = parse_document(json.loads(json.dumps(AUDIO_DOCUMENT)))
    store = FileStore()
    output = OutputGenerator().generate(document, validated(document, {"text": "hi", "duration": 2.5}), store)
    assert list(output_validator(document).iter_errors(output)) == []
    audio = output["audio"]
    assert audio["content_type"] == "audio/wav" and audio["duration"] == 2.5
    check_file(store.files[audio["url"]][0], "audio/wav", audio)
    assert isinstance(output["words"], int)


def test_scalar_values_come_from_examples_enums_and_bounds() -> None:
    """An example that fits is used; otherwise an enum member, or a number within its bounds."""
    data = json.loads(json.dumps(AUDIO_DOCUMENT))
    props = data["components"]["schemas"]["SpeechOutput"]["properties"]
    props["words"] = {"type": "integer", "minimum": 5, "maximum": 9}
    props["voice"] = {"type": "string", "enum": ["a", "b"]}
    props["label"] = {"type": "string", "examples": ["hello"]}
    props["bad"] = {"type": "integer", "examples": ["not an integer"], "minimum": 100, "maximum": 100}
    data["components"]["schemas"]["SpeechOutput"]["required"] = ["audio", "words", "voice", "label", "bad"]
    document = parse_document(data)
    output = OutputGenerator().generate(document, {"text": "hi"}, FileStore())
    assert 5 <= output["words"] <= 9 and output["voice"] in ("a", "b")
    assert output["label"] == "hello" and output["bad"] == 100


def test_renders_are_cached_and_the_cache_is_bounded() -> None:
    """A second request for the same render is a hit; the cache never holds more than its bound."""
    cache = RenderCache(max_entries=2)
    spec = RenderSpec("image", 64, 48, seed=1, lines=("x",))
    first = cache.get(spec)
    assert cache.get(spec) is first and (cache.hits, cache.misses) == (1, 1)
    for seed in range(2, 6):
        cache.get(RenderSpec("image", 64, 48, seed=seed))
    assert len(cache) == 2


def test_an_oversized_request_is_rendered_within_the_pixel_bound() -> None:
    """A 14142x14142 request keeps its shape and stays under the bound."""
    width, height = fit(14142, 7071, MAX_IMAGE_PIXELS)
    assert width * height <= MAX_IMAGE_PIXELS
    assert abs(width / height - 2.0) < 0.01


# -- categories -------------------------------------------------------------------------------


def test_a_video_takes_a_minute_and_an_image_seconds_when_realistic(documents: dict[str, EndpointDocument]) -> None:
    """Realistic timing follows the category; instant takes no time."""
    image = documents["fal-ai/flux/dev"]
    video = documents["bytedance/seedance-2.0/text-to-video"]
    image_seconds = run_seconds(category_for(image), "realistic", {"prompt": "p"}, image.input_defaults)
    video_seconds = run_seconds(category_for(video), "realistic", {"prompt": "p"}, video.input_defaults)
    assert 1 <= image_seconds <= 10
    assert 45 <= video_seconds <= 90
    assert run_seconds(category_for(video), "instant", {"prompt": "p"}) == 0.0


def test_billable_units_count_megapixels_and_seconds(documents: dict[str, EndpointDocument]) -> None:
    """Images bill per started megapixel each, videos per second, LLMs as any-llm does."""
    flux = documents["fal-ai/flux/dev"]
    assert billable_units(category_for(flux), {"num_images": 2, "image_size": "square_hd"}) == 4
    assert billable_units(category_for(flux), {"image_size": "landscape_4_3"}) == 1
    kling = documents["fal-ai/kling-video/v1.6/pro/image-to-video"]
    assert billable_units(category_for(kling), {"duration": "10"}) == 10
    assert category_for("llm").is_llm
    assert billable_units(category_for("llm"), {"model": "openai/gpt-4o"}) == 10


def test_progress_logs_run_from_start_to_end_in_order(documents: dict[str, EndpointDocument]) -> None:
    """Log offsets rise from zero to the run's length, and the last line says what was made."""
    document = documents["fal-ai/flux/dev"]
    logs = progress_logs(category_for(document), document.endpoint_id, {"num_inference_steps": 28}, 4.0)
    offsets = [offset for offset, _, _ in logs]
    assert offsets == sorted(offsets) and offsets[0] == 0.0 and offsets[-1] == 4.0
    assert "28/28" in logs[-2][2] and logs[-1][2].startswith("Generated 1 image")


def test_a_plan_carries_the_output_to_the_end_of_the_run(documents: dict[str, EndpointDocument]) -> None:
    """The plan has no tokens, lasts the category's time and ends with the generated output."""
    document = documents["fal-ai/esrgan"]
    plan = make_plan(document, {"image_url": "x"}, {"image": {"url": "u"}}, profile="realistic")
    assert plan.tokens == () and plan.output == {"image": {"url": "u"}} and plan.failure is None
    assert plan.duration == run_seconds(category_for(document), "realistic", {}, document.input_defaults)
    assert make_plan(document, {}, {}, profile="instant").duration == 0.0


def test_a_lost_runner_keeps_the_first_half_of_the_progress_and_a_refused_input_none(
    documents: dict[str, EndpointDocument],
) -> None:
    """Lost half way, a run keeps the lines due before that point, even when it takes no time; refused, none."""
    document = documents["fal-ai/flux/dev"]
    lost = KNOWN_ERRORS["runner_disconnected"]
    for profile in ("instant", "realistic"):
        whole = make_plan(document, {"prompt": "p"}, {}, profile=profile)
        plan = make_plan(document, {"prompt": "p"}, {}, profile=profile, failure=lost, lost_after=0.5)
        assert plan.duration == whole.duration / 2 and plan.failure is lost and plan.output == {}
        # The start line and the 25% and 50% lines, as the whole run has them; then the error.
        assert plan.logs[:3] == whole.logs[:3] and "50%" in plan.logs[2][2]
        assert plan.logs[3:] == ((plan.duration, "ERROR", "Runner disconnected"),)
    refused = make_plan(document, {}, {}, profile="realistic", failure=Failure(422, [{"msg": "no"}]))
    assert refused.duration == 0.0 and [level for _, level, _ in refused.logs] == ["ERROR"]


def test_a_fixtures_timing_and_logs_lay_out_a_loaded_endpoints_run(documents: dict[str, EndpointDocument]) -> None:
    """first_token_after is the run's length (or when a fixture's error comes) in any profile; logs spread over it."""
    document = documents["fal-ai/flux/dev"]
    timing = Timing(first_token_after=8.0)
    for profile in ("instant", "realistic"):
        plan = make_plan(document, {}, {"images": []}, profile=profile, timing=timing, logs=(("Warm", "WARN"),))
        assert plan.duration == 8.0 and plan.logs[-1][2] == "Generated 1 image (1024x768) in 8.00s"
        assert (4.0, "WARN", "Warm") in plan.logs
        failed = make_plan(
            document, {}, {}, profile=profile, failure=KNOWN_ERRORS["runner_disconnected"], timing=timing
        )
        assert failed.duration == 8.0 and failed.logs[-1] == (8.0, "ERROR", "Runner disconnected")


def test_loading_the_endpoint_modules_does_not_load_pillow_or_pyav() -> None:
    """Pillow and PyAV load only when a file is rendered, so start-up does not pay for them."""
    code = (
        "import sys, emulator.endpoints.documents, emulator.endpoints.inputs, emulator.endpoints.generate, "
        "emulator.endpoints.categories, emulator.endpoints.render; "
        "print(sorted(m for m in ('PIL', 'PIL.Image', 'av') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
