"""Which frames to look at: user times, uniform sampling, one keyframe per scene, or the frames most
relevant to the question (relevant.py, which loads the scorer)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import UsageError
from ..options import OPTIONS, RELEVANCE, SCENE, check_record, default, option
from ..records import VideoInfo
from ..texts import check_prompt_text
from ..video.probe import ProbedVideo, check_times
from .scenes import SceneOptions, detect_scenes, keyframe_numbers, select_longest

# qwen-vl-utils' video sampling defaults, used when no selection is given.
DEFAULT_FPS = 2.0
MIN_FRAMES, MAX_FRAMES = 4, 768
# The budget caps the default sampling: every frame keeps at least this many visual tokens
# (images mode), or each pair of frames this many (video mode, one temporal patch).
MIN_TOKENS_PER_FRAME = {"images": 64, "video": 128}


@dataclass(frozen=True)
class SelectionRequest:
    """Which frames: at most one of times / scenes / every / num_frames / fps / relevant (none: the default
    sampling), checked when made. The options are declared in options.py; `mode` and `max_visual_tokens`
    come from the ask request (the default sampling's budget cap and even frame counts), `queries`, `device`
    and `dtype` too (--relevant's texts and where its scorer runs)."""

    times: Optional[tuple[float, ...]] = option("times")  # seconds from the first frame
    scenes: bool = option("scenes")  # one keyframe per scene
    every: Optional[float] = option("every")  # a frame every this many seconds
    num_frames: Optional[int] = option("num_frames")  # this many frames spread evenly
    fps: Optional[float] = option("fps")  # this many frames a second
    relevant: Optional[int] = option("relevant")  # this many frames most relevant to the queries
    candidates: str = option("candidates")  # --relevant's candidates: "keyframes" or a rate
    scorer: str = option("scorer")  # --relevant's image-text model
    queries: tuple[str, ...] = ()  # --relevant: the texts frames are scored against
    scene_options: SceneOptions = field(default_factory=SceneOptions)  # how scenes are found
    use_cache: bool = option("use_cache")  # reuse cached scenes and embeddings
    show_progress: bool = False  # a progress bar on stderr while detecting
    mode: str = option("mode")  # images or video: the default sampling's even counts
    max_visual_tokens: Optional[int] = option("max_visual_tokens")  # caps the default sampling
    device: str = option("device")  # where --relevant's scorer runs
    dtype: str = option("dtype")  # its dtype

    def __post_init__(self) -> None:
        check_record(self)
        chosen = [
            name
            for name, value in (
                ("--at", self.times),
                ("--scenes", self.scenes or None),
                ("--every", self.every),
                ("--num-frames", self.num_frames),
                ("--fps", self.fps),
                ("--relevant", self.relevant),
            )
            if value is not None
        ]
        if len(chosen) > 1:
            raise UsageError(f"choose frames one way: {' and '.join(chosen)} cannot be combined")
        if self.times is not None and not all(math.isfinite(t) for t in self.times):
            raise UsageError("--at times must be finite numbers of seconds")
        if self.times is not None and not self.times:
            raise UsageError("--at needs at least one time")
        # An option of a way of choosing frames that was not chosen would be ignored without a word.
        _check_unused(
            [name for name in SCENE if getattr(self.scene_options, name) != default(name)], "--scenes", self.scenes
        )
        _check_unused(
            [name for name in RELEVANCE if getattr(self, name) != default(name)],
            "--relevant",
            self.relevant is not None,
        )
        if self.relevant is not None:
            from .relevant import check_candidates

            check_candidates(self.candidates)

    @property
    def method(self) -> str:
        """How frames are chosen: at, scenes, every, num_frames, fps, relevant or default."""
        for name in ("times", "every", "num_frames", "fps", "relevant"):
            if getattr(self, name) is not None:
                return "at" if name == "times" else name
        return "scenes" if self.scenes else "default"


@dataclass(frozen=True)
class Selection:
    """The chosen frames, in the order they are shown to the model."""

    times: tuple[float, ...]  # seconds from the first frame, the times to read
    requested: tuple[Optional[float], ...]  # what the user asked for (None when sampled or per scene)
    scenes: tuple[Optional[int], ...]  # scene index per frame (None unless --scenes)
    record: dict  # the `selection` object of the JSON output
    relevance: Optional[tuple[float, ...]] = None  # --relevant: each frame's relevance in [0, 1]


def check_request(request: SelectionRequest, *, scorer=None) -> None:
    """The checks of a selection that are not pure (its values were checked when it was made): --relevant
    needs text to score against and an image-text scorer (its config is read unless `scorer`, an already
    loaded one, is given). Run once, before the video is read."""
    if request.relevant is not None:
        _check_relevant(request, read_scorer=scorer is None)


def _check_unused(names: list[str], way: str, chosen: bool) -> None:
    if names and not chosen:
        flags = [OPTIONS[name].cli_flag for name in names]
        raise UsageError(
            f"{' and '.join(flags)} {'goes' if len(flags) == 1 else 'go'} with {way}: add {way}, or "
            f"leave {'it' if len(flags) == 1 else 'them'} out"
        )


def _check_relevant(request: SelectionRequest, read_scorer: bool = True) -> None:
    """--relevant's own refusals, before the video is read: no text to score against, a bad candidate set,
    a scorer that is missing or is not an image-text model (its config is read, nothing loads)."""
    from ..model.scorer_checkpoint import inspect_scorer

    for query in request.queries:
        check_prompt_text(query, "the text --relevant scores against")
    if not request.queries or not all(isinstance(q, str) and q.strip() for q in request.queries):
        raise UsageError(
            "--relevant scores frames against text: give a question (or --find WHAT; with frames, --query TEXT)"
        )
    if read_scorer:
        inspect_scorer(request.scorer)


def select(
    video: ProbedVideo,
    request: SelectionRequest,
    frame_range: Optional[tuple[Optional[int], Optional[int]]] = None,
    *,
    scorer=None,
    load_scorer: Optional[Callable[[], Any]] = None,
) -> Selection:
    """Choose the frames of `video` that `request` asks for.

    `frame_range`: the checkpoint's video processor's (min_frames, max_frames), which the default
    sampling keeps to in video mode instead of qwen-vl-utils' 4 to 768. `scorer`: --relevant's scorer,
    already loaded, or `load_scorer`, which loads it (called only once the candidates are known to be
    enough): the job that runs the selection brings the scorer, this stage never loads a model."""
    if request.times is None:
        video.index  # noqa: B018 - sampling and scenes need every frame's time: built now if the container gave none
    info = video.info
    check_count(info, request)
    if request.times is not None:
        check_times(info, list(request.times))
        return Selection(tuple(request.times), tuple(request.times), (None,) * len(request.times), {"method": "at"})
    if request.scenes:
        return _by_scene(video, request)
    if request.relevant is not None:
        return _relevant(video, request, scorer, load_scorer)
    if request.every is not None:
        times = _every(info.duration, request.every)
        return _sampled(times, {"method": "every", "every": request.every})
    if request.fps is not None:
        times = _every(info.duration, 1.0 / request.fps)
        return _sampled(times, {"method": "fps", "fps": request.fps})
    if request.num_frames is not None:
        times = _spread(info.duration, request.num_frames)
        return _sampled(times, {"method": "num_frames", "num_frames": request.num_frames})
    return _default(video, request, frame_range if request.mode == "video" else None)


def planned_count(info: VideoInfo, request: SelectionRequest) -> Optional[int]:
    """How many frames the request picks, counted without building the list (None: decided later)."""
    if request.times is not None:
        return len(request.times)
    if request.every is not None:
        return _every_count(info.duration, request.every)
    if request.fps is not None:
        return _every_count(info.duration, 1.0 / request.fps)
    if request.num_frames is not None:
        return request.num_frames
    if request.relevant is not None:
        return request.relevant
    return None


def check_count(info: VideoInfo, request: SelectionRequest) -> None:
    """Refuse, before anything is built or decoded, a selection of more frames than the video has,
    or more than the visual-token budget can give one token each."""
    count = planned_count(info, request)
    if count is None:
        return
    option = _option(request)
    frames = info.frame_count
    if frames is not None and count > frames:
        interval = info.duration / frames if frames else 0.0
        hint = {
            "--every": f"use --every {interval:.6g} or more",
            "--fps": f"use --fps {info.fps:.6g} or less",
            "--num-frames": f"use --num-frames {frames} or fewer",
            "--relevant": f"use --relevant {frames} or fewer",
            "--at": f"give at most {frames} times",
        }[option]
        raise UsageError(
            f"{option} {_value(request)} would pick {count} frames, but {info.path} has only "
            f"{frames} ({info.fps:.6g} fps over {info.duration:.6g}s): {hint}"
        )
    budget = request.max_visual_tokens
    if budget is not None:
        slots = count if request.mode == "images" else math.ceil(count / 2)
        if slots > budget:
            raise UsageError(
                f"{option} picks {count} frames, more than --max-visual-tokens {budget} can give "
                f"one visual token each: raise --max-visual-tokens or pick fewer frames"
            )


def _option(request: SelectionRequest) -> str:
    """The flag of the way a counted selection chooses its frames (for its refusals)."""
    return "--at" if request.method == "at" else "--" + request.method.replace("_", "-")


def _value(request: SelectionRequest) -> str:
    if request.times is not None:
        return f"({len(request.times)} times)"
    value = (
        request.every
        if request.every is not None
        else request.fps
        if request.fps is not None
        else request.relevant
        if request.relevant is not None
        else request.num_frames
    )
    return f"{value:g}" if isinstance(value, float) else str(value)


def _every_count(duration: float, step: float) -> int:
    ratio = duration / step
    if not math.isfinite(ratio) or ratio > 2**53:
        return 2**53  # more than any video has; only compared, never built
    return max(1, math.ceil(ratio - 1e-9))


def _every(duration: float, step: float) -> list[float]:
    return [round(i * step, 6) for i in range(_every_count(duration, step))]


def _spread(duration: float, count: int) -> list[float]:
    """`count` times at the middles of equal parts of the video (never the very edges)."""
    return [round((i + 0.5) * duration / count, 6) for i in range(count)]


def _sampled(times: list[float], record: dict) -> Selection:
    return Selection(tuple(times), (None,) * len(times), (None,) * len(times), record)


def _default(
    video: ProbedVideo, request: SelectionRequest, frame_range: Optional[tuple[Optional[int], Optional[int]]] = None
) -> Selection:
    """qwen-vl-utils' rule: 2 fps, even count, 4 to 768 frames (or the checkpoint's own range), and no
    more than the budget feeds."""
    info = video.info
    low, high = frame_range or (None, None)
    source = "the checkpoint's" if low is not None or high is not None else "qwen-vl-utils'"
    least, most = low or MIN_FRAMES, high or MAX_FRAMES
    wanted = round(info.duration * DEFAULT_FPS / 2) * 2
    count = min(max(wanted, least), most, video.frame_count)
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
    record = {
        "method": "default",
        "fps": round(count / info.duration, 6) if info.duration else None,
        "num_frames": count,
        "note": f"no selection given: sampled like qwen-vl-utils ({DEFAULT_FPS:g} fps, {least} to {most} frames "
        f"({source} range), even count)" + (", capped by --max-visual-tokens" if capped else ""),
    }
    return _sampled(times, record)


def _by_scene(video: ProbedVideo, request: SelectionRequest) -> Selection:
    options = request.scene_options
    scenes = detect_scenes(
        video.info.path,
        options,
        use_cache=request.use_cache,
        show_progress=request.show_progress,
        frame_count=lambda: video.frame_count,
    )
    kept = select_longest(scenes, options.max_scenes)
    numbers = keyframe_numbers(video, kept, options.keyframe)
    times = tuple(video.frame_time(n) for n in numbers)
    record = {
        "method": "scenes",
        "detector": options.describe(),
        "keyframe": options.keyframe,
        "scenes_found": len(scenes),
        "max_scenes": options.max_scenes,
    }
    return Selection(times, (None,) * len(times), tuple(s.index for s in kept), record)


def _relevant(
    video: ProbedVideo, request: SelectionRequest, scorer=None, load_scorer: Optional[Callable[[], Any]] = None
) -> Selection:
    """The frames most relevant to the queries (relevant.py), scored by `scorer` (or the one `load_scorer`
    loads, once the candidates are known to be enough)."""
    from .relevant import relevant_candidates, relevant_selection

    candidates = relevant_candidates(video, request)  # too few refused before the scorer loads
    if scorer is None:
        if load_scorer is None:
            raise ValueError("a --relevant selection needs its scorer: pass scorer= or load_scorer=")
        scorer = load_scorer()
    numbers, relevance, record = relevant_selection(video, request, candidates, scorer)
    times = tuple(video.frame_time(n) for n in numbers)
    return Selection(times, (None,) * len(times), (None,) * len(times), record, tuple(relevance))
