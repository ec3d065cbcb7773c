"""Real files for generated outputs: PNG/JPEG/WebP images, MP4 videos and WAV audio.

Every file says what it is (the endpoint, the prompt, its size and seed), so a person who opens
one in a demo sees where it came from. Pillow and PyAV are imported only when something is
rendered, so an emulator that never renders a file never pays for loading them. Renders are
pure functions of a :class:`RenderSpec`, kept in a bounded LRU :class:`RenderCache`.
"""

from __future__ import annotations

import io
import math
import os
import struct
import tempfile
import textwrap
import threading
import wave
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image as Picture

__all__ = [
    "IMAGE_FORMATS",
    "MAX_IMAGE_PIXELS",
    "MAX_VIDEO_PIXELS",
    "RenderCache",
    "RenderSpec",
    "Rendered",
    "render",
]

# output_format → (Pillow format, content type, file extension)
IMAGE_FORMATS = {
    "png": ("PNG", "image/png", "png"),
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "jpg": ("JPEG", "image/jpeg", "jpg"),
    "webp": ("WEBP", "image/webp", "webp"),
}
# Bounds on one render, so a request for a 14142x14142 image cannot take the machine's memory;
# a larger request is rendered scaled down, and the file object reports the real size.
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_VIDEO_PIXELS = 1920 * 1080
MAX_SECONDS = 60.0
VIDEO_FPS = 8  # few frames keep encoding fast; players do not mind the rate
AUDIO_RATE = 16_000


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """Everything a render depends on: two equal specs give byte-identical files."""

    kind: str  # "image", "video" or "audio"
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    seed: int = 0
    lines: tuple[str, ...] = ()
    image_format: str = "png"


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered file and the facts a file object reports about it."""

    data: bytes
    content_type: str
    extension: str
    width: int | None = None
    height: int | None = None
    seconds: float | None = None
    fps: float | None = None
    frames: int | None = None


def fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size scaled down (keeping its shape) to at most ``max_pixels``; at least 16x16."""
    width, height = max(16, int(width)), max(16, int(height))
    if width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        width, height = max(16, int(width * scale)), max(16, int(height * scale))
    return width, height


def render(spec: RenderSpec) -> Rendered:
    """Render one file."""
    if spec.kind == "video":
        return _video(spec)
    if spec.kind == "audio":
        return _audio(spec)
    return _image(spec)


def _colour(seed: int) -> tuple[int, int, int]:
    # A hue per seed, dark enough for white text to read on it.
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((seed % 360) / 360.0, 0.55, 0.45)
    return int(r * 255), int(g * 255), int(b * 255)


def _picture(spec: RenderSpec, width: int, height: int) -> Picture:
    """A Pillow image: a coloured card with a frame and the spec's lines written on it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), _colour(spec.seed))
    draw = ImageDraw.Draw(image)
    edge = max(2, min(width, height) // 64)
    draw.rectangle([edge, edge, width - 1 - edge, height - 1 - edge], outline=(255, 255, 255), width=edge)
    size = max(10, min(width, height) // 22)
    font = ImageFont.load_default(size=size)
    chars = max(10, int((width - 6 * edge) / (size * 0.6)))
    y = 3 * edge
    for index, line in enumerate(spec.lines):
        for part in textwrap.wrap(line, chars) or [""]:
            if y + size > height - 3 * edge:
                return image
            draw.text((3 * edge, y), part, font=font, fill=(255, 255, 255) if index else (255, 230, 120))
            y += int(size * 1.3)
    return image


def _image(spec: RenderSpec) -> Rendered:
    width, height = fit(spec.width, spec.height, MAX_IMAGE_PIXELS)
    pillow_format, content_type, extension = IMAGE_FORMATS.get(spec.image_format, IMAGE_FORMATS["png"])
    picture = _picture(spec, width, height)
    out = io.BytesIO()
    # A flat card compresses well at the fastest level; level 6 only makes big renders slower.
    options = {"compress_level": 1} if pillow_format == "PNG" else {"quality": 85}
    picture.save(out, format=pillow_format, **options)
    return Rendered(out.getvalue(), content_type, extension, width, height)


def _video(spec: RenderSpec) -> Rendered:
    import av
    from PIL import ImageDraw

    # H.264 in yuv420p needs even dimensions.
    width, height = fit(spec.width, spec.height, MAX_VIDEO_PIXELS)
    width, height = width - width % 2, height - height % 2
    seconds = min(max(spec.seconds, 1.0 / VIDEO_FPS), MAX_SECONDS)
    frames = max(1, round(seconds * VIDEO_FPS))
    base = _picture(spec, width, height)
    bar = max(4, height // 40)
    # The mp4 muxer moves the index to the front (faststart, so browsers play it while loading)
    # in a second pass over a real file; an in-memory buffer cannot be reopened for it.
    with tempfile.TemporaryDirectory(prefix="emulator-video-") as folder:
        path = os.path.join(folder, "out.mp4")
        with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=VIDEO_FPS, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for index in range(frames):
                frame = base.copy()
                draw = ImageDraw.Draw(frame)
                # A bar that fills as the video plays: the picture visibly moves.
                done = int(width * (index + 1) / frames)
                draw.rectangle([0, height - bar, done, height], fill=(255, 230, 120))
                video_frame = av.VideoFrame.from_image(frame)  # type: ignore[no-untyped-call]
                for packet in stream.encode(video_frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with open(path, "rb") as handle:
            data = handle.read()
    return Rendered(data, "video/mp4", "mp4", width, height, frames / VIDEO_FPS, float(VIDEO_FPS), frames)


def _audio(spec: RenderSpec) -> Rendered:
    seconds = min(max(spec.seconds, 0.1), MAX_SECONDS)
    count = round(seconds * AUDIO_RATE)
    pitch = 220.0 + (spec.seed % 48) * 10.0
    step = 2 * math.pi * pitch / AUDIO_RATE
    # One second of tone, repeated: a whole number of periods per second keeps the joins clean.
    second = struct.pack(f"<{AUDIO_RATE}h", *(int(8000 * math.sin(step * n)) for n in range(AUDIO_RATE)))
    samples = (second * (count // AUDIO_RATE + 1))[: count * 2]
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(AUDIO_RATE)
        writer.writeframes(samples)
    return Rendered(out.getvalue(), "audio/wav", "wav", seconds=count / AUDIO_RATE)


class RenderCache:
    """Renders by spec, least recently used dropped first, bounded in entries and bytes."""

    def __init__(self, max_entries: int = 128, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[RenderSpec, Rendered] = OrderedDict()
        self._bytes = 0
        # Renders may run in worker threads; the lock guards only the bookkeeping.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, spec: RenderSpec) -> Rendered:
        """The file for a spec: from the cache, else rendered now and kept."""
        with self._lock:
            found = self._items.get(spec)
            if found is not None:
                self._items.move_to_end(spec)
                self.hits += 1
                return found
            self.misses += 1
        rendered = render(spec)
        with self._lock:
            if spec not in self._items and len(rendered.data) <= self.max_bytes:
                self._items[spec] = rendered
                self._bytes += len(rendered.data)
                while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                    _, dropped = self._items.popitem(last=False)
                    self._bytes -= len(dropped.data)
        return rendered
