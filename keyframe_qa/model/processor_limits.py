"""A checkpoint's own processor limits (and its resize filter), read from its processor config without torch.

A Qwen-VL checkpoint's processor config states how large a frame its model is given: the image
processor's `size` (`shortest_edge`/`longest_edge`, which for these processors are pixel counts, not
sides), or the older `min_pixels`/`max_pixels`; the video processor's own `size`, and `min_frames`/
`max_frames`. Many fine-tuned checkpoints ship the Qwen README's 1,280-token cap (1,003,520 pixels).
The checkpoint's processor (and a server running it) never gives the model more, so neither do we:
these are the per-frame defaults where no option says otherwise.

Files, in the order transformers reads them: `processor_config.json` (sections `image_processor`,
`video_processor`), then `preprocessor_config.json` (the image processor) and
`video_preprocessor_config.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")


@dataclass(frozen=True)
class ProcessorLimits:
    """The limits a checkpoint's processor config states (None where it states nothing)."""

    image_min_pixels: Optional[int] = None  # smallest model-input area of an image
    image_max_pixels: Optional[int] = None  # largest model-input area of an image
    video_min_pixels: Optional[int] = None  # smallest model-input area of a video frame
    video_max_pixels: Optional[int] = None  # largest model-input area of a video frame
    min_frames: Optional[int] = None  # fewest frames its video sampling takes
    max_frames: Optional[int] = None  # most frames its video sampling takes
    resample: Optional[int] = None  # the image processor's resize filter (a PIL filter number)

    def pixels(self, mode: str) -> tuple[Optional[int], Optional[int]]:
        """(min, max) pixels per frame for `mode` ("images" or "video")."""
        if mode == "video":
            return self.video_min_pixels, self.video_max_pixels
        return self.image_min_pixels, self.image_max_pixels


def read_limits(files: dict[str, str]) -> ProcessorLimits:
    """The limits stated by the processor files found (`name -> path`); unreadable files state nothing."""
    image: dict = {}
    video: dict = {}
    combined = _load(files.get("processor_config.json"))
    if isinstance(combined.get("image_processor"), dict):
        image = combined["image_processor"]
    if isinstance(combined.get("video_processor"), dict):
        video = combined["video_processor"]
    if not image:
        image = _load(files.get("preprocessor_config.json"))
    if not video:
        video = _load(files.get("video_preprocessor_config.json"))
    image_min, image_max = _pixel_limits(image)
    video_min, video_max = _pixel_limits(video)
    resample = image.get("resample")
    return ProcessorLimits(
        image_min,
        image_max,
        video_min,
        video_max,
        _positive(video.get("min_frames")),
        _positive(video.get("max_frames")),
        resample if isinstance(resample, int) and not isinstance(resample, bool) else None,
    )


def _pixel_limits(config: dict) -> tuple[Optional[int], Optional[int]]:
    # As the processors read them: top-level min_pixels/max_pixels override `size`.
    given = config.get("size")
    size: dict = given if isinstance(given, dict) else {}
    low = (
        _positive(config.get("min_pixels")) or _positive(size.get("shortest_edge")) or _positive(size.get("min_pixels"))
    )
    high = (
        _positive(config.get("max_pixels")) or _positive(size.get("longest_edge")) or _positive(size.get("max_pixels"))
    )
    return low, high


def _positive(value) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != int(value):
        return None
    return int(value)


def _load(path: Optional[str]) -> dict:
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
