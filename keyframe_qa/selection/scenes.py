"""Shots found by PySceneDetect, cached per video, and one keyframe chosen per shot.

Detection runs PySceneDetect's own SceneManager on its OpenCV backend, the same path as its
`detect()` and its CLI's default `detect-content`, so the cuts are exactly the ones PySceneDetect
reports for the same detector and parameters. A video with no cut is one scene.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Optional, Union

from ..errors import UsageError, VideoError
from ..options import DETECTOR_NAMES, MAX_RATE, OPTIONS, check_record, option
from ..video.container import check_path
from ..video.probe import ProbedVideo

# name -> (PySceneDetect class name, threshold keyword, default threshold)
DETECTORS = {
    "content": ("ContentDetector", "threshold", 27.0),
    "adaptive": ("AdaptiveDetector", "adaptive_threshold", 3.0),
    "threshold": ("ThresholdDetector", "threshold", 12.0),
    "hash": ("HashDetector", "threshold", 0.35),
    "histogram": ("HistogramDetector", "threshold", 0.20),
}
assert tuple(DETECTORS) == DETECTOR_NAMES  # the option's choices are these detectors


@dataclass(frozen=True)
class SceneOptions:
    """How to find scenes and pick their keyframes (the scene options, declared in options.py), checked
    when made: each value against its declaration, and the shortest scene's text read."""

    detector: str = option("detector")  # PySceneDetect's detector: content, adaptive, threshold, hash, histogram
    threshold: Optional[float] = option("threshold")  # None: the detector's own default
    min_scene_len: str = option("min_scene_len")  # frames ("15") or seconds ("0.6s")
    keyframe: str = option("keyframe")  # which frame stands for a scene: first, middle or sharpest
    max_scenes: Optional[int] = option("max_scenes")  # keep the N longest scenes; None: all

    def __post_init__(self) -> None:
        check_record(self)
        parse_min_scene_len(self.min_scene_len)

    @property
    def effective_threshold(self) -> float:
        """The threshold used: the option, or the detector's default."""
        return self.threshold if self.threshold is not None else DETECTORS[self.detector][2]

    def describe(self) -> dict:
        """The detector record for JSON output."""
        return {
            "name": self.detector,
            "threshold": self.effective_threshold,
            "min_scene_len": _min_len_record(self.min_scene_len),
        }


@dataclass(frozen=True)
class Scene:
    """One shot. Frames count from 0; `end_frame` and `end` are exclusive."""

    index: int
    start_frame: int
    end_frame: int
    start: float  # seconds from the first frame
    end: float


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"


def parse_min_scene_len(text: str) -> Union[int, float]:
    """'15' -> 15 frames; '0.6s' -> 0.6 seconds (each within the option's limits: seconds up to its
    `high`, frames up to that many seconds at the fastest rate)."""
    option = OPTIONS["min_scene_len"]
    raw = str(text).strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|seconds)?", raw)
    if not match:
        raise UsageError(f"cannot read --min-scene-len {text!r}: give frames (15) or seconds (0.6s)")
    number, unit = match.groups()
    if not unit and "." in number:
        raise UsageError(f"--min-scene-len {text!r}: frames are whole numbers; add 's' for seconds")
    if len(number) > 40:  # longer than any length that fits (and than int() reads quickly)
        number = "9" * 40
    value: Union[int, float] = float(number) if unit else int(number)
    seconds = float(option.high or 0)  # declared in OPTIONS
    high = int(seconds) if unit else int(seconds * MAX_RATE)
    if value <= 0 or value > high:
        raise UsageError(
            f"--min-scene-len must be above 0 and at most {high} {'seconds' if unit else 'frames'}"
            f"{' (a week at 1000 fps)' if not unit else ' (a week)'}, not {_shown(text)}"
        )
    return value


def make_detector(options: SceneOptions):
    """The PySceneDetect detector object for these options."""
    import scenedetect

    class_name, threshold_keyword, _ = DETECTORS[options.detector]
    detector_class = getattr(scenedetect, class_name)
    return detector_class(
        **{threshold_keyword: options.effective_threshold, "min_scene_len": parse_min_scene_len(options.min_scene_len)}
    )


def detect_scenes(
    path: str,
    options: SceneOptions = SceneOptions(),
    *,
    use_cache: bool = True,
    show_progress: bool = False,
    frame_count: Optional[Callable[[], int]] = None,
) -> list[Scene]:
    """All scenes of the video, in order (cached per video file and detector settings; see files/cache.py).

    `frame_count`, when given, says how many frames the video has: a cached list that runs past it
    disagrees with the video and is detected again.
    """
    from ..files import cache

    check_path(path)
    if use_cache:
        key = _cache_key(path, options)
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32] + ".json"
        cached = cache.read_entry("scenes", name, key, lambda payload: _checked_scenes(payload, frame_count))
        if cached is not None:
            return cached
    scenes = _detect(path, options, show_progress)
    if use_cache:
        cache.write_entry("scenes", name, key, [asdict(s) for s in scenes])
    return scenes


def select_longest(scenes: Sequence[Scene], count: Optional[int]) -> list[Scene]:
    """The `count` longest scenes, kept in time order (ties: the earlier scene)."""
    if count is None or count >= len(scenes):
        return list(scenes)
    ranked = sorted(scenes, key=lambda s: (-(s.end - s.start), s.start))[:count]
    return sorted(ranked, key=lambda s: s.start)


def keyframe_numbers(video: ProbedVideo, scenes: Sequence[Scene], how: str = "middle") -> list[int]:
    """One frame number per scene: its first frame, its middle frame, or its sharpest candidate."""
    count = video.frame_count
    if how == "first":
        return [min(s.start_frame, count - 1) for s in scenes]
    if how == "middle":
        return [min((s.start_frame + max(s.start_frame, s.end_frame - 1)) // 2, count - 1) for s in scenes]
    if how == "sharpest":
        return _sharpest(video, scenes)
    raise UsageError(f"unknown --keyframe {how!r}: use first, middle or sharpest")


SHARPEST_CANDIDATES = 5


def sharpness(image) -> float:
    """Variance of the Laplacian of the grey image: higher means more fine detail in focus."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _sharpest(video: ProbedVideo, scenes: Sequence[Scene]) -> list[int]:
    from ..video.frames import read_frame_numbers

    count = video.frame_count
    candidates = {s.index: _candidates(s, count) for s in scenes}
    images = read_frame_numbers(video, sorted({n for c in candidates.values() for n in c}))
    chosen = []
    for scene in scenes:
        numbers = candidates[scene.index]
        # max() keeps the first of equals: ties go to the earlier frame.
        chosen.append(max(numbers, key=lambda n: sharpness(images[n])))
    return chosen


def _candidates(scene: Scene, frame_count: int) -> list[int]:
    """A few frames spread over the scene, away from the cuts (frames next to a cut may blend shots)."""
    first, last = scene.start_frame, min(scene.end_frame, frame_count) - 1
    length = last - first + 1
    margin = max(1, length // 10) if length > 4 else 0
    low, high = first + margin, last - margin
    if high <= low:
        return [(first + last) // 2]
    steps = min(SHARPEST_CANDIDATES, high - low + 1)
    return sorted({low + round(i * (high - low) / max(1, steps - 1)) for i in range(steps)})


def _detect(path: str, options: SceneOptions, show_progress: bool) -> list[Scene]:
    from scenedetect import SceneManager, open_video

    from ..console import is_terminal
    from ..video.container import open_container

    # Open it with PyAV first: a file that is not a video fails here with our one-line error, before
    # OpenCV's FFmpeg prints its own log lines about it.
    open_container(path).close()
    try:
        with _utf8_path(path) as readable_path:
            video = _with_more_decoder_threads(open_video(readable_path, backend="opencv"))
            manager = SceneManager()
            manager.add_detector(make_detector(options))
            # PySceneDetect's bar on a terminal only; redrawn into a log file it is noise.
            manager.detect_scenes(video=video, show_progress=show_progress and is_terminal(sys.stderr))
            found = manager.get_scene_list(start_in_scene=True)
    except (UsageError, VideoError):
        raise
    except Exception as exc:  # noqa: BLE001 - PySceneDetect raises several unrelated types for bad files
        raise VideoError(f"scene detection failed on {path}: {exc}") from exc
    return [
        Scene(
            index=i,
            start_frame=int(start.frame_num),
            end_frame=int(end.frame_num),
            start=round(float(start.seconds), 6),
            end=round(float(end.seconds), 6),
        )
        for i, (start, end) in enumerate(found)
    ]


@contextlib.contextmanager
def _utf8_path(path: str):
    """A name OpenCV can take for `path`. OpenCV crashes the process (a segfault) on a file name that is
    not valid UTF-8 (a latin-1 `caf\\xe9.mp4`), so such a file is opened here and OpenCV reads it through
    /proc/self/fd/N, a name of plain digits for the same open file."""
    try:
        path.encode("utf-8")
        yield path
        return
    except UnicodeEncodeError:
        pass
    descriptor = os.open(path, os.O_RDONLY)
    try:
        alias = f"/proc/self/fd/{descriptor}"
        if not os.path.exists(alias):
            raise VideoError(
                f"cannot detect scenes in {path!r}: its name is not valid UTF-8, which OpenCV cannot "
                f"open on this system; rename the file"
            )
        yield alias
    finally:
        os.close(descriptor)


def decoder_threads() -> int:
    """Decoder threads for detection: more than the cores, capped at FFmpeg's own limit of 16.

    Detection reads every frame on one thread that also converts it to BGR. With one frame thread per
    core, the decoder idles while that conversion runs; with more frames in flight it keeps every core
    busy (measured by benchmarks/scenes.py).
    Threads do not change the frames: H.264 and the other FFmpeg decoders are bit-exact at any count.
    """
    return max(1, min(16, 4 * (os.cpu_count() or 1)))


def _with_more_decoder_threads(video):
    """`video` (PySceneDetect's OpenCV stream, just opened) reading through a capture with
    `decoder_threads()` threads; unchanged where this OpenCV build cannot set the count."""
    import cv2

    path = video.path
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, decoder_threads()])
    if not capture.isOpened():
        return video
    # The same orientation handling PySceneDetect sets on its own capture.
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1.0)
    # PySceneDetect opens its capture without a way to pass open parameters; swapping it before the
    # first read keeps the rest of its stream (frame rate, positions) as it computed them.
    video.capture.release()
    video._cap = capture
    return video


def _cache_key(path: str, options: SceneOptions) -> dict:
    import scenedetect

    status = os.stat(path)
    return {
        "path": os.path.abspath(path),
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
        "detector": options.detector,
        "threshold": options.effective_threshold,
        "min_scene_len": _min_len_record(options.min_scene_len),
        "scenedetect": scenedetect.__version__,
    }


_SCENE_FIELDS = {"index": int, "start_frame": int, "end_frame": int, "start": float, "end": float}


def _checked_scenes(payload, frame_count: Optional[Callable[[], int]]) -> list[Scene]:
    """A cached scene list, if it is one we could have written for this video (else CacheEntryError)."""
    from ..files.cache import CacheEntryError

    if not isinstance(payload, list) or not payload:
        raise CacheEntryError("no scene list in it")
    scenes = []
    for position, record in enumerate(payload):
        if not isinstance(record, dict) or set(record) != set(_SCENE_FIELDS):
            raise CacheEntryError(f"scene {position} does not have the fields {', '.join(_SCENE_FIELDS)}")
        for field, kind in _SCENE_FIELDS.items():
            value = record[field]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (kind is int and not isinstance(value, int))
                or not math.isfinite(value)
            ):
                raise CacheEntryError(f"scene {position}: {field} is not {'an integer' if kind is int else 'a number'}")
        scenes.append(Scene(**{field: kind(record[field]) for field, kind in _SCENE_FIELDS.items()}))
    for position, scene in enumerate(scenes):
        previous = scenes[position - 1] if position else None
        if (
            scene.index != position
            or scene.start_frame >= scene.end_frame
            or scene.start > scene.end
            or scene.start_frame < 0
            or scene.start < 0
            or (previous is not None and (scene.start_frame != previous.end_frame or scene.start < previous.end))
        ):
            raise CacheEntryError(f"scene {position} does not follow on from the one before")
    if frame_count is not None and scenes[-1].end_frame > frame_count():
        raise CacheEntryError(f"its scenes end at frame {scenes[-1].end_frame}, past the video's last frame")
    return scenes


def _min_len_record(text: str) -> dict:
    value = parse_min_scene_len(text)
    return {"seconds": value} if isinstance(value, float) else {"frames": value}
