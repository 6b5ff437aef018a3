"""Opening and probing videos with PyAV: what is in the file, and where every frame lies.

Probing demuxes the video stream once without decoding it. That yields every frame's
presentation timestamp (PTS), decode timestamp and keyframe flag, which is what makes exact
"frame on screen at t" answers possible for variable-frame-rate files and files whose first PTS
is not 0, and what lets `frames.py` decode only from the right keyframe to each target.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction

import av
import numpy as np

from .errors import UsageError, VideoError
from .records import VideoInfo
from .timecodes import format_time


@dataclass(frozen=True, eq=False)
class FrameIndex:
    """The video stream's packets in decode order (one packet per frame), in stream ticks."""

    time_base: Fraction
    pts: np.ndarray  # int64 PTS per packet, decode order
    dts: np.ndarray  # int64 DTS per packet (PTS where the container gives none)
    keyframe: np.ndarray  # bool per packet
    size: np.ndarray  # bytes per packet: a cheap estimate of its decode cost
    first_pts: int  # smallest PTS: time 0 for the user
    display_pts: np.ndarray  # int64 PTS sorted: position = frame_number
    has_pts: bool  # False for raw streams without timestamps (decoded sequentially)
    last_duration: int  # how long the last frame stays on screen, in ticks

    def frame_number_at(self, seconds: float) -> int:
        """The frame on screen at `seconds` after the first frame: the last one with PTS <= t."""
        # Exact arithmetic: 0.4 s at time base 1/10 must land on tick 4, not 3.9999.
        ticks = Fraction(repr(seconds)) / self.time_base + self.first_pts
        position = bisect_right(self.display_pts, int(ticks // 1)) - 1
        return max(position, 0)

    @cached_property
    def position_of_pts(self) -> dict[int, int]:
        """Decode position of the packet with each PTS (PTS identify packets after a seek)."""
        return {int(p): i for i, p in enumerate(self.pts)}

    def seconds(self, pts: int) -> float:
        """PTS in ticks to seconds relative to the first frame."""
        return float((pts - self.first_pts) * self.time_base)


@dataclass(frozen=True)
class ProbedVideo:
    """A probed video: the user-facing facts plus the index the frame reader needs."""

    info: VideoInfo
    index: FrameIndex
    stream_index: int


def check_path(path: str) -> None:
    """Fail early, with a clear message, for paths that cannot be videos."""
    if not os.path.exists(path):
        raise VideoError(f"video not found: {path}")
    if os.path.isdir(path):
        raise VideoError(f"{path} is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoError(f"cannot read {path}: permission denied")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path} is empty (0 bytes)")


def open_container(path: str) -> av.container.InputContainer:
    """Open `path` with PyAV, turning library errors into VideoError."""
    check_path(path)
    try:
        return av.open(path, mode="r")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path} is not a readable video: damaged, truncated or not a video ({_reason(exc)})") from exc


def probe(path: str) -> ProbedVideo:
    """Read a video's geometry, timing and frame index; decode its first frame to prove it plays."""
    with open_container(path) as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise VideoError(f"{path} has no video stream (it has {', '.join(kinds)} streams)")
        stream = _main_video_stream(container)
        index = _build_index(container, stream, path)
        first = _first_frame(container, stream, path)
        info = _video_info(path, container, stream, index, first)
        return ProbedVideo(info=info, index=index, stream_index=stream.index)


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


def stream_by_index(container, stream_index: int):
    """The container's stream whose FFmpeg index is `stream_index`."""
    for stream in container.streams:
        if stream.index == stream_index:
            return stream
    raise VideoError(f"stream {stream_index} is missing from {container.name}")


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().rstrip(".") or type(exc).__name__


def _main_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    # Cover art in MP4/MKV is a one-picture "video" stream marked attached_pic; prefer real video.
    candidates = [s for s in container.streams.video if not _is_attached_picture(s)]
    return candidates[0] if candidates else container.streams.video[0]


def _is_attached_picture(stream) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _build_index(container, stream, path: str) -> FrameIndex:
    pts_list: list[int] = []
    dts_list: list[int] = []
    key_list: list[bool] = []
    size_list: list[int] = []
    durations: list[int] = []
    missing_pts = False
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue  # flush packets, and packets an edit list hides from the viewer
            if packet.pts is None:
                missing_pts = True
                break
            pts_list.append(packet.pts)
            dts_list.append(packet.dts if packet.dts is not None else packet.pts)
            key_list.append(bool(packet.is_keyframe))
            size_list.append(packet.size)
            durations.append(packet.duration or 0)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path} is truncated or corrupt ({_reason(exc)})") from exc

    if missing_pts:
        return _index_by_decoding(path, stream.index)
    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
    if not pts_list:
        raise VideoError(f"{path} has a video stream with no frames")
    pts = np.asarray(pts_list, dtype=np.int64)
    display = np.unique(pts)  # duplicates would be the same displayed frame
    return FrameIndex(
        time_base=time_base,
        pts=pts,
        dts=np.asarray(dts_list, dtype=np.int64),
        keyframe=np.asarray(key_list, dtype=bool),
        size=np.asarray(size_list, dtype=np.int64),
        first_pts=int(display[0]),
        display_pts=display,
        has_pts=True,
        last_duration=_last_frame_duration(display, pts, durations),
    )


def _index_by_decoding(path: str, stream_index: int) -> FrameIndex:
    """Raw streams (e.g. .h264) carry no timestamps: frames are numbered in the order they are shown
    and timed by the stream's frame rate, as a player of such a file does."""
    count = 0
    with open_container(path) as container:
        stream = stream_by_index(container, stream_index)
        rate = stream.guessed_rate or stream.average_rate or stream.base_rate or 25
        try:
            for _ in container.decode(stream):
                count += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path} is truncated or corrupt ({_reason(exc)})") from exc
    if count == 0:
        raise VideoError(f"{path} has a video stream with no decodable frames")
    pts = np.arange(count, dtype=np.int64)  # one tick per frame at a time base of 1/rate
    return FrameIndex(
        time_base=1 / Fraction(rate),
        pts=pts,
        dts=pts.copy(),
        keyframe=np.zeros(count, dtype=bool),
        size=np.ones(count, dtype=np.int64),
        first_pts=0,
        display_pts=pts.copy(),
        has_pts=False,
        last_duration=1,
    )


def _last_frame_duration(display: np.ndarray, pts: np.ndarray, durations: list[int]) -> int:
    """How long the last frame stays on screen, in ticks."""
    last = int(display[-1])
    if durations:
        position = int(np.nonzero(pts == last)[0][-1])
        if durations[position] > 0:
            return durations[position]
    if len(display) > 1:
        return int(np.median(np.diff(display)))
    return 0


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
        raise VideoError(f"{path} cannot be decoded ({_reason(exc)})") from exc
    raise VideoError(f"{path} has a video stream but no frame could be decoded (truncated or corrupt?)")


def _video_info(path, container, stream, index: FrameIndex, first_frame) -> VideoInfo:
    coded_w, coded_h = first_frame.width, first_frame.height
    sar = _sample_aspect_ratio(stream, first_frame)
    rotation = clockwise_rotation(getattr(first_frame, "rotation", 0) or 0)
    width, height = display_size(coded_w, coded_h, sar, rotation)
    end_ticks = int(index.display_pts[-1]) + index.last_duration
    duration = float((end_ticks - index.first_pts) * index.time_base)
    frame_times = tuple(index.seconds(int(p)) for p in index.display_pts)
    count = len(frame_times)
    fps = count / duration if duration > 0 else float(stream.average_rate or 0)
    intervals = np.diff(index.display_pts)
    vfr = bool(len(intervals) > 1 and (intervals.max() - intervals.min()) > 0.01 * np.median(intervals))
    return VideoInfo(
        path=path,
        container=container.format.name,
        codec=stream.codec_context.name,
        duration=round(duration, 6),
        fps=round(fps, 6),
        width=width,
        height=height,
        coded_width=coded_w,
        coded_height=coded_h,
        sample_aspect_ratio=(sar.numerator, sar.denominator),
        rotation=rotation,
        frame_count=count,
        frame_times=frame_times,
        variable_frame_rate=vfr,
        start_time=float(index.first_pts * index.time_base),
    )


def _sample_aspect_ratio(stream, frame) -> Fraction:
    # The container's value wins over the bitstream's, as in FFmpeg's av_guess_sample_aspect_ratio.
    for candidate in (stream.sample_aspect_ratio, getattr(frame, "sample_aspect_ratio", None),
                      stream.codec_context.sample_aspect_ratio):
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
