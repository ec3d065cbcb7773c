"""Render costs of generated endpoint files: first and cached renders, and a whole image output."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ROOT / "tests" / "data" / "fal-openapi"


def timed_ms(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20, help="cached renders and outputs to time")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    from emulator.endpoints.render import RenderCache, RenderSpec

    import_ms = (time.perf_counter() - start) * 1000
    cache = RenderCache()
    lines = ("fal-ai/flux/dev", "image 2048x2048, seed 1", "prompt: a benchmark")
    big = RenderSpec("image", 2048, 2048, seed=1, lines=lines)
    # The first render also loads Pillow; a second, different spec shows the render alone.
    first_ms = timed_ms(lambda: cache.get(big))
    second_ms = timed_ms(lambda: cache.get(RenderSpec("image", 2048, 2048, seed=2, lines=lines)))
    cached_ms = statistics.median(timed_ms(lambda: cache.get(big)) for _ in range(args.repeat))
    video = RenderSpec("video", 1280, 720, 5.0, seed=1, lines=lines)
    video_ms = timed_ms(lambda: cache.get(video))

    from emulator.endpoints.documents import load_document
    from emulator.endpoints.generate import OutputGenerator

    document = load_document(DOCUMENTS / "fal-ai__flux__dev.json")
    generator = OutputGenerator(seed=1, cache=cache)
    inputs = {"prompt": "a benchmark", "image_size": "square_hd", "output_format": "png", "num_images": 1}
    stored: dict[str, bytes] = {}

    def store(data: bytes, content_type: str, file_name: str) -> str:
        url = f"https://cdn.bench/{file_name}"
        stored[url] = data
        return url

    output_first_ms = timed_ms(lambda: generator.generate(document, inputs, store))
    output_ms = statistics.median(
        timed_ms(lambda: generator.generate(document, inputs, store)) for _ in range(args.repeat)
    )
    rows = [
        ("import emulator.endpoints.render", import_ms),
        ("2048x2048 PNG, first render (loads Pillow)", first_ms),
        ("2048x2048 PNG, another first render", second_ms),
        ("2048x2048 PNG, cached (median)", cached_ms),
        ("1280x720 5 s mp4, first render (loads PyAV)", video_ms),
        ("fal-ai/flux/dev output, square_hd, first", output_first_ms),
        ("fal-ai/flux/dev output, square_hd, cached render (median)", output_ms),
    ]
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:10.3f} ms")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
