"""Opening and probing videos with PyAV: what is in the file, and where every frame lies.

Probing demuxes the video stream once without decoding it. That yields every frame's
presentation timestamp (PTS), decode timestamp and keyframe flag, which is what makes exact
"frame on screen at t" answers possible for variable-frame-rate files and files whose first PTS
is not 0, and what lets `frames.py` decode only from the right keyframe to each target.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from typing import Optional

import av
import numpy as np

from ..errors import UsageError, VideoError, reason
from ..records import VideoInfo
from ..timecodes import format_time
from .container import open_container, stream_by_index
from .indexing import (
    SEEK_WINDOWS,
    FrameIndex,
    StreamBounds,
    sample_table_index,
    scan_index,
    stream_bounds,
    window_index,
)


class ProbedVideo:
    """A probed video: the user-facing facts, and its frame index built as cheaply as its container allows.

    `index` is the complete index. MP4/MOV files have it from their sample tables at probe time;
    for other containers it is built by scanning every packet the first time something needs the
    whole frame list (uniform sampling, scenes, frame numbers). Frames at given times need only
    `index_for_times`, which for those containers reads just the packets around the times.
    """

    def __init__(
        self,
        info: VideoInfo,
        stream_index: int,
        index: Optional[FrameIndex] = None,
        bounds: Optional[StreamBounds] = None,
    ):
        self._info = info
        self.stream_index = stream_index  # FFmpeg's index of the video stream read
        self._index = index
        self.bounds = bounds  # first and last frame, when found without an index

    @property
    def info(self) -> VideoInfo:
        """What the video is; frame count and frame-rate facts appear once the complete index exists."""
        return self._info

    @property
    def has_index(self) -> bool:
        """Whether the complete index is already built (no packet scan needed)."""
        return self._index is not None

    @property
    def index(self) -> FrameIndex:
        """The complete frame index, scanning the packets now if the container did not give it."""
        if self._index is None:
            self._index = self._scan(self._info.index_note)
        return self._index

    def rescan(self, why: str) -> None:
        """Replace an index that disagreed with the packets by a packet scan, noting `why` in the info."""
        self.bounds = None
        self._index = self._scan(f"every packet was scanned: {why}")

    def _scan(self, note: Optional[str]) -> FrameIndex:
        with open_container(self._info.path) as container:
            index = scan_index(container, stream_by_index(container, self.stream_index), self._info.path)
        self._info = replace(self._info, **_index_facts(index), index_note=note)
        return index

    def index_for_times(self, times: Sequence[float]) -> FrameIndex:
        """An index that decides the frames on screen at `times`: the complete one if it is built,
        else only the packets around those times (frame numbers then are estimates)."""
        if self._index is not None or self.bounds is None:
            return self.index
        return window_index(self._info.path, self.stream_index, self.bounds, times)

    @property
    def frame_count(self) -> int:
        """Number of displayed frames (needs the complete index)."""
        return len(self.index.display_pts)

    def frame_time(self, number: int) -> float:
        """Presentation time of frame `number`, from the first frame (needs the complete index)."""
        index = self.index
        return round(index.seconds(int(index.display_pts[number])), 6)

    def estimated_frame_number(self, pts: int) -> int:
        """Frame number of the frame with this PTS from the nominal frame rate (no complete index)."""
        bounds = self.bounds
        if bounds is None:
            raise ValueError("frame numbers are estimated only for a video probed by its first and last frame")
        return max(0, int(round((pts - bounds.first_pts) / bounds.frame_ticks)))


def probe(path: str) -> ProbedVideo:
    """Read a video's geometry, timing and frame index; decode its first frame to prove it plays."""
    with open_container(path) as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise VideoError(f"{path} has no video stream (it has {', '.join(kinds)} streams)")
        _check_not_still(container, path)
        stream = _main_video_stream(container)
        index, note = sample_table_index(container, stream, path)
        bounds = None
        if index is None and "matroska" in container.format.name.split(","):
            # Matroska/WebM: seek with the file's cues, reading only the packets around asked times.
            bounds = stream_bounds(container, stream, path)
            if bounds is None:
                note = "it has no cues (the Matroska index) to seek by"
        if index is None and bounds is None:
            index = scan_index(container, stream, path)
        first = _first_frame(container, stream, path)
        info = _video_info(path, container, stream, index, bounds, first)
        if note:
            info = replace(info, index_note=f"every packet was scanned: {note}")
        return ProbedVideo(info, stream.index, index, bounds)


def _check_not_still(container, path: str) -> None:
    """A still image (PNG, JPEG, WebP, ...) opens as a one-picture stream timed by a made-up 25 fps: refused
    by name, with the way to make it a video."""
    name = container.format.name
    if name == "image2" or name.endswith("_pipe"):
        kind = name.replace("_pipe", "").replace("image2", "image").upper()
        raise VideoError(
            f"{path} is a still image ({kind}), not a video: keyframe-qa reads videos (to ask about a "
            f"picture, make it a one-frame video: ffmpeg -i {os.path.basename(path)} -frames:v 1 "
            f"still.mp4)"
        )


def check_times(info: VideoInfo, times: list[float]) -> None:
    """Reject times past the end, naming the duration so the user can fix them."""
    for t in times:
        if t < 0:
            raise UsageError(f"time {t:g}s is negative; {info.path} runs 0 to {format_time(info.duration)}")
        # A time exactly at the end is the last frame, as a player that stopped there shows it.
        if t > info.duration + 1e-6:
            raise UsageError(
                f"time {t:g}s ({format_time(t)}) is past the end of {info.path}, "
                f"which lasts {info.duration:.3f}s ({format_time(info.duration)})"
            )


def _main_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    # Cover art in MP4/MKV is a one-picture "video" stream marked attached_pic; prefer real video.
    candidates = [s for s in container.streams.video if not _is_attached_picture(s)]
    return candidates[0] if candidates else container.streams.video[0]


def _is_attached_picture(stream) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _first_frame(container, stream, path: str):
    """Decode the first frame: proves the stream plays and carries the display matrix.

    It rewinds the container the index was built with; raw streams cannot seek, so for them the
    file is opened again instead.
    """
    try:
        container.seek(0, stream=stream, backward=True)
    except av.error.FFmpegError:
        with open_container(path) as fresh:
            return _decode_first(fresh, stream_by_index(fresh, stream.index), path)
    return _decode_first(container, stream, path)


def _decode_first(container, stream, path: str):
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path} cannot be decoded ({reason(exc)})") from exc
    raise VideoError(f"{path} has a video stream but no frame could be decoded (truncated or corrupt?)")


def _video_info(
    path, container, stream, index: Optional[FrameIndex], bounds: Optional[StreamBounds], first_frame
) -> VideoInfo:
    coded_w, coded_h = first_frame.width, first_frame.height
    sar = _sample_aspect_ratio(stream, first_frame)
    rotation = clockwise_rotation(getattr(first_frame, "rotation", 0) or 0)
    width, height = display_size(coded_w, coded_h, sar, rotation)
    if index is not None:
        facts = _index_facts(index)
    elif bounds is None:
        raise ValueError("a video is described by its complete index or by its first and last frame")
    else:
        # Only the first and last frames are known: the count and the rate's regularity wait for a scan.
        end_ticks = bounds.last_pts + bounds.last_duration
        duration = float((end_ticks - bounds.first_pts) * bounds.time_base)
        facts = dict(
            duration=round(duration, 6),
            fps=round(float(1 / (bounds.frame_ticks * bounds.time_base)), 6),
            frame_count=None,
            variable_frame_rate=None,
            start_time=float(bounds.first_pts * bounds.time_base),
            index_source=SEEK_WINDOWS,
            frame_numbers="estimated from the frame rate",
        )
    return VideoInfo(
        path=path,
        container=container.format.name,
        codec=stream.codec_context.name,
        width=width,
        height=height,
        coded_width=coded_w,
        coded_height=coded_h,
        sample_aspect_ratio=(sar.numerator, sar.denominator),
        rotation=rotation,
        **facts,
    )


def _index_facts(index: FrameIndex) -> dict:
    """Duration, rate, count and regularity from a complete index."""
    end_ticks = int(index.display_pts[-1]) + index.last_duration
    duration = float((end_ticks - index.first_pts) * index.time_base)
    count = len(index.display_pts)
    intervals = np.diff(index.display_pts)
    vfr = bool(len(intervals) > 1 and (intervals.max() - intervals.min()) > 0.01 * np.median(intervals))
    return dict(
        duration=round(duration, 6),
        fps=round(count / duration, 6) if duration > 0 else 0.0,
        frame_count=count,
        variable_frame_rate=vfr,
        start_time=float(index.first_pts * index.time_base),
        index_source=index.source,
        frame_numbers="exact",
    )


def _sample_aspect_ratio(stream, frame) -> Fraction:
    # The container's value wins over the bitstream's, as in FFmpeg's av_guess_sample_aspect_ratio.
    for candidate in (
        stream.sample_aspect_ratio,
        getattr(frame, "sample_aspect_ratio", None),
        stream.codec_context.sample_aspect_ratio,
    ):
        if candidate and candidate.numerator > 0 and candidate.denominator > 0:
            return Fraction(candidate.numerator, candidate.denominator)
    return Fraction(1, 1)


def clockwise_rotation(counterclockwise_degrees: float) -> int:
    """Turn FFmpeg's display-matrix angle (counter-clockwise) into the clockwise turn a player applies."""
    return int(round(-counterclockwise_degrees / 90.0)) % 4 * 90


def display_size(coded_w: int, coded_h: int, sar: Fraction, rotation: int) -> tuple[int, int]:
    """Width and height a viewer sees: width stretched by the sample aspect ratio, then rotated."""
    width = max(1, int(round(coded_w * sar))) if sar != 1 else coded_w
    height = coded_h
    if rotation in (90, 270):
        width, height = height, width
    return width, height
