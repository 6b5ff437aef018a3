"""Which frames to look at: user times, uniform sampling, or one keyframe per scene."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from .budget import DEFAULT_MAX_VISUAL_TOKENS
from .errors import UsageError
from .media import ProbedVideo, check_times
from .scenes import SceneOptions, check_options, detect_scenes, keyframe_numbers, select_longest

# qwen-vl-utils' video sampling defaults, used when no selection is given.
DEFAULT_FPS = 2.0
MIN_FRAMES, MAX_FRAMES = 4, 768
# The budget caps the default sampling: every frame keeps at least this many visual tokens
# (images mode), or each pair of frames this many (video mode, one temporal patch).
MIN_TOKENS_PER_FRAME = {"images": 64, "video": 128}


@dataclass(frozen=True)
class SelectionRequest:
    """At most one of times / scenes / every / num_frames / fps; none means the default sampling."""

    times: Optional[tuple[float, ...]] = None  # --at
    scenes: bool = False  # --scenes
    every: Optional[float] = None  # --every SECONDS
    num_frames: Optional[int] = None  # --num-frames N
    fps: Optional[float] = None  # --fps F
    scene_options: SceneOptions = field(default_factory=SceneOptions)
    use_cache: bool = True  # scene cache
    show_progress: bool = False  # progress bar on stderr during scene detection
    mode: str = "images"  # for the default sampling's budget cap and even frame counts
    max_visual_tokens: Optional[int] = DEFAULT_MAX_VISUAL_TOKENS


@dataclass(frozen=True)
class Selection:
    """The chosen frames, in the order they are shown to the model."""

    times: tuple[float, ...]  # seconds from the first frame, the times to read
    requested: tuple[Optional[float], ...]  # what the user asked for (None when sampled or per scene)
    scenes: tuple[Optional[int], ...]  # scene index per frame (None unless --scenes)
    record: dict  # the `selection` object of the JSON output


def check_request(request: SelectionRequest) -> None:
    """Usage errors for contradictory or impossible selections, before any decoding."""
    chosen = [name for name, value in (("--at", request.times), ("--scenes", request.scenes or None),
                                       ("--every", request.every), ("--num-frames", request.num_frames),
                                       ("--fps", request.fps)) if value is not None]
    if len(chosen) > 1:
        raise UsageError(f"choose frames one way: {' and '.join(chosen)} cannot be combined")
    if request.every is not None and not request.every > 0:
        raise UsageError("--every must be a positive number of seconds")
    if request.num_frames is not None and request.num_frames <= 0:
        raise UsageError("--num-frames must be at least 1")
    if request.fps is not None and not request.fps > 0:
        raise UsageError("--fps must be positive")
    if request.times is not None and not request.times:
        raise UsageError("--at needs at least one time")
    if request.scenes:
        check_options(request.scene_options)


def select(video: ProbedVideo, request: SelectionRequest) -> Selection:
    """Choose the frames of `video` that `request` asks for."""
    check_request(request)
    info = video.info
    if request.times is not None:
        check_times(info, list(request.times))
        return Selection(tuple(request.times), tuple(request.times), (None,) * len(request.times),
                         {"method": "at"})
    if request.scenes:
        return _by_scene(video, request)
    if request.every is not None:
        times = _every(info.duration, request.every)
        return _sampled(times, {"method": "every", "every": request.every})
    if request.fps is not None:
        times = _every(info.duration, 1.0 / request.fps)
        return _sampled(times, {"method": "fps", "fps": request.fps})
    if request.num_frames is not None:
        times = _spread(info.duration, request.num_frames)
        return _sampled(times, {"method": "num_frames", "num_frames": request.num_frames})
    return _default(video, request)


def _every(duration: float, step: float) -> list[float]:
    count = max(1, math.ceil(duration / step - 1e-9))
    return [round(i * step, 6) for i in range(count)]


def _spread(duration: float, count: int) -> list[float]:
    """`count` times at the middles of equal parts of the video (never the very edges)."""
    return [round((i + 0.5) * duration / count, 6) for i in range(count)]


def _sampled(times: list[float], record: dict) -> Selection:
    return Selection(tuple(times), (None,) * len(times), (None,) * len(times), record)


def _default(video: ProbedVideo, request: SelectionRequest) -> Selection:
    """qwen-vl-utils' rule: 2 fps, even count, 4 to 768 frames, and no more than the budget feeds."""
    info = video.info
    wanted = round(info.duration * DEFAULT_FPS / 2) * 2
    count = min(max(wanted, MIN_FRAMES), MAX_FRAMES, info.frame_count)
    capped = False
    if request.max_visual_tokens is not None:
        per_frame = MIN_TOKENS_PER_FRAME[request.mode]
        limit = request.max_visual_tokens // per_frame
        if request.mode == "video":
            limit *= 2  # one temporal patch holds two frames
        if count > limit:
            count, capped = max(1, limit), True
    if request.mode == "video" and count > 1 and count % 2:
        count -= 1
    times = _spread(info.duration, count)
    record = {"method": "default", "fps": round(count / info.duration, 6) if info.duration else None,
              "num_frames": count,
              "note": f"no selection given: sampled like qwen-vl-utils ({DEFAULT_FPS:g} fps, {MIN_FRAMES} to "
                      f"{MAX_FRAMES} frames, even count)" + (", capped by --max-visual-tokens" if capped else "")}
    return _sampled(times, record)


def _by_scene(video: ProbedVideo, request: SelectionRequest) -> Selection:
    options = request.scene_options
    scenes = detect_scenes(video.info.path, options, use_cache=request.use_cache,
                           show_progress=request.show_progress)
    kept = select_longest(scenes, options.max_scenes)
    numbers = keyframe_numbers(video, kept, options.keyframe)
    times = tuple(video.info.frame_times[n] for n in numbers)
    record = {"method": "scenes", "detector": options.describe(), "keyframe": options.keyframe,
              "scenes_found": len(scenes), "max_scenes": options.max_scenes}
    return Selection(times, (None,) * len(times), tuple(s.index for s in kept), record)
