"""Exact frame extraction: the frame a viewer sees at time t, in display geometry.

Why PyAV is the reader for timestamps: with the packet index from `video.probe` it knows the
exact PTS of every frame, so "the last frame with PTS <= t" is decided from the container's own
timestamps (right for variable frame rate and for files whose first PTS is not 0), and the decode
can be planned: targets in decode order, one seek to the keyframe before each group of targets,
targets that share a GOP share one decode, and the non-reference frames nothing needs are skipped
by the decoder (`skip_frame = NONREF`) instead of being fully decoded. Independent runs decode on
parallel threads (one container each), which measured faster than one container with FFmpeg's
frame threading (benchmarks/extract.py).

Why decord is not the reader (measured: benchmarks/extract.py, numbers in benchmarks/README.md): it is
slower for sparse and for sampled frames, decodes every frame of a GOP, cannot skip non-reference frames,
and has returned wrong frames on B-frame and imprecise-metadata files
(dmlc/decord #31, #91, #365); it also ignores rotation and sample aspect ratio. So PyAV reads every
frame here, and decord (the decord2 package) serves the tests and the benchmark as an independent
reader.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import av
import numpy as np

from ..console import warn
from ..errors import VideoError
from ..records import Frame
from ..timecodes import format_time
from .container import open_container, stream_by_index
from .indexing import PACKET_SCAN
from .probe import FrameIndex, ProbedVideo


class IndexMismatch(VideoError):
    """The packets met while decoding are not the ones the index lists."""


@dataclass(frozen=True)
class _Target:
    frame_number: int  # presentation order
    pts: int
    decode_position: int


# Called from decoding threads with (PTS, decoded frame, damaged) for each frame asked for.
Sink = Callable[[int, av.VideoFrame, bool], None]


def read_frames(video: ProbedVideo, times: Sequence[float], **tags) -> list[Frame]:
    """Extract the frame on screen at each time, in display geometry, in the order given; `tags` are
    `iter_frames`' (what was asked, the scene or relevance of each frame, a `convert` run as each is decoded)."""
    return sorted(iter_frames(video, times, **tags), key=lambda frame: frame.index)


def iter_frames(
    video: ProbedVideo,
    times: Sequence[float],
    *,
    requested: Optional[Sequence[Optional[float]]] = None,
    scenes: Optional[Sequence[Optional[int]]] = None,
    convert: Optional[Callable[[Frame], Frame]] = None,
    relevance: Optional[Sequence[Optional[float]]] = None,
) -> Iterator[Frame]:
    """The frames on screen at `times`, yielded as they are decoded (`Frame.index` says which time).

    `requested` is what the user asked for (defaults to `times`); `scenes` tags frames chosen per scene,
    `relevance` those chosen by --relevant.

    Memory stays bounded whatever the number of frames: each decoded frame is turned into its
    display picture and passed to `convert` on the decoding thread (shrink it, write it to disk),
    and at most a few converted frames wait for the consumer. An index that turns out to disagree
    with the packets is replaced by a packet scan, once, and the frames not yet given are read again.
    """
    given: set[int] = set()
    for attempt in range(2):
        try:
            for frame in _stream_frames(video, times, requested, scenes, convert, given, relevance):
                given.add(frame.index)
                yield frame
            return
        except IndexMismatch as exc:
            if attempt:
                raise
            # An internal detail, not the user's concern: recorded in the JSON's video.index.note.
            video.rescan(str(exc))


def _stream_frames(
    video: ProbedVideo, times: Sequence[float], requested, scenes, convert, given: set[int], relevance=None
) -> Iterator[Frame]:
    index = video.index_for_times(times)
    orders_at: dict[int, list[int]] = {}  # PTS -> positions in `times` showing that frame
    position_of: dict[int, int] = {}  # PTS -> position in index.display_pts
    for order, t in enumerate(times):
        if order in given:
            continue
        position = index.frame_number_at(t)
        pts = int(index.display_pts[position])
        position_of[pts] = position
        orders_at.setdefault(pts, []).append(order)
    damaged: list[float] = []

    def make(pts: int, decoded: av.VideoFrame, corrupt: bool) -> list[Frame]:
        image = to_display(decoded, video)
        if corrupt:
            damaged.append(index.seconds(pts))
        made = []
        position = position_of[pts]
        for order in orders_at[pts]:
            frame = Frame(
                index=order,
                requested=(requested[order] if requested is not None else times[order]),
                timestamp=round(index.seconds(pts), 6),
                frame_number=position if index.complete else video.estimated_frame_number(pts),
                image=image,
                scene=(scenes[order] if scenes is not None else None),
                corrupt=corrupt,
                relevance=(relevance[order] if relevance is not None else None),
            )
            made.append(convert(frame) if convert is not None else frame)
        return made

    for batch in _through_queue(lambda sink: _decode(video, index, sorted(position_of.values()), sink), make):
        yield from batch
    if damaged:
        shown = ", ".join(format_time(t) for t in sorted(damaged)[:5])
        more = f" and {len(damaged) - 5} more" if len(damaged) > 5 else ""
        warn(
            f"{video.info.path}: the decoder reported errors in {len(damaged)} frame(s) at {shown}{more}; "
            f'they may look broken and are marked "corrupt" in the output'
        )


class _Stopped(Exception):
    """The consumer stopped reading: decoding threads unwind with this."""


def _through_queue(produce: Callable[[Sink], None], make: Callable) -> Iterator:
    """Run `produce` on a thread; every frame it sinks is passed to `make` there and queued for us.

    The queue is small, so decoding waits for the consumer instead of piling up pictures.
    """
    results: queue.Queue = queue.Queue(maxsize=2 * cpu_count())
    stop = threading.Event()
    finished = object()

    def put(item) -> None:
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped()

    def sink(pts: int, decoded: av.VideoFrame, corrupt: bool) -> None:
        if stop.is_set():
            raise _Stopped()
        put(make(pts, decoded, corrupt))

    def run() -> None:
        try:
            produce(sink)
            put(finished)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the consumer, which raises it
            try:
                put(exc)
            except _Stopped:
                pass

    worker = threading.Thread(target=run, name="keyframe-qa-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = results.get()
            if item is finished:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def read_frame_numbers(
    video: ProbedVideo, numbers: Iterable[int], damaged: Optional[set] = None
) -> dict[int, np.ndarray]:
    """Decode the given frames (presentation order numbers) into display-geometry RGB arrays.

    Frames the decoder flagged as corrupt, or decoded after a decoding error since their keyframe,
    have their numbers added to `damaged` when it is given.
    """
    index = video.index
    wanted = sorted(set(numbers))
    number_of_pts = {int(index.display_pts[n]): n for n in wanted}
    images: dict[int, np.ndarray] = {}

    def sink(pts: int, decoded: av.VideoFrame, corrupt: bool) -> None:
        images[number_of_pts[pts]] = to_display(decoded, video)
        if corrupt and damaged is not None:
            damaged.add(number_of_pts[pts])

    _decode(video, index, wanted, sink)
    return images


def _decode(video: ProbedVideo, index: FrameIndex, wanted: list[int], sink: Sink) -> None:
    """Decode the frames at these positions of `index.display_pts`, sinking each once."""
    if not wanted:
        return
    if not index.has_pts:
        _decode_sequentially(video, wanted, sink)
    else:
        _decode_planned(video, index, wanted, sink)


def to_display(frame: av.VideoFrame, video: ProbedVideo) -> np.ndarray:
    """RGB array as a viewer sees the frame: sample aspect ratio corrected, rotation applied."""
    info = video.info
    stretched_w = info.height if info.rotation in (90, 270) else info.width
    options: dict[str, Any] = {"format": "rgb24"}
    colorspace = source_colorspace(frame)
    if colorspace:
        options["src_colorspace"] = colorspace
    if stretched_w != frame.width:
        # One swscale pass converts colour and stretches non-square pixels to square ones.
        options.update(width=stretched_w, height=frame.height, interpolation="BICUBIC")
    image: np.ndarray = frame.to_ndarray(**options)
    if info.rotation:
        # np.rot90 turns counter-clockwise for positive k; the player turns clockwise.
        image = np.ascontiguousarray(np.rot90(image, k=-(info.rotation // 90)))
    return image


_UNSPECIFIED_COLORSPACE = 2  # AVCOL_SPC_UNSPECIFIED


def source_colorspace(frame: av.VideoFrame) -> Optional[str]:
    """YUV->RGB matrix for a frame: its own tag, or for untagged video what players assume.

    FFmpeg converts untagged YUV with BT.601 coefficients, but players (mpv, browsers) show
    untagged HD (wider than 1024 or taller than 576) with BT.709, so that is what a viewer sees.
    None means "use the frame's own tag".
    """
    if frame.format.name.startswith(("rgb", "bgr", "gbr", "gray")):
        return None
    if int(frame.colorspace) != _UNSPECIFIED_COLORSPACE:
        return None
    return player_matrix(frame.width, frame.height)


def player_matrix(width: int, height: int) -> str:
    """The YUV matrix players assume for untagged video of this size: BT.709 for HD, else BT.601."""
    return "ITU709" if width > 1024 or height > 576 else "ITU601"


def _plan_runs(index: FrameIndex, wanted: list[int]) -> list[tuple[int, int, list[_Target]]]:
    """Group targets into decode runs: (start keyframe position, last position, targets)."""
    position_of_pts = index.position_of_pts
    key_positions = np.nonzero(index.keyframe)[0]
    targets = []
    for number in wanted:
        pts = int(index.display_pts[number])
        targets.append(_Target(number, pts, position_of_pts[pts]))
    targets.sort(key=lambda t: t.decode_position)

    runs: list[tuple[int, int, list[_Target]]] = []
    for target in targets:
        start = _start_keyframe(index, key_positions, target)
        if runs and start <= runs[-1][1]:
            # Decoding on from the current run is never more work than seeking back to `start`.
            first, last, members = runs[-1]
            # min(): an open GOP's leading frame needs the keyframe before the one its run began at.
            runs[-1] = (min(first, start), max(last, target.decode_position), members + [target])
        else:
            runs.append((start, target.decode_position, [target]))
    return runs


def _start_keyframe(index: FrameIndex, key_positions: np.ndarray, target: _Target) -> int:
    earlier = key_positions[key_positions <= target.decode_position]
    if len(earlier) == 0:
        return 0
    start = int(earlier[-1])
    # Open GOP: a frame decoded after a keyframe but shown before it may reference the previous
    # GOP, so start one keyframe earlier.
    if target.pts < int(index.pts[start]) and len(earlier) > 1:
        start = int(earlier[-2])
    elif target.pts < int(index.pts[start]):
        start = 0
    return start


def _decode_planned(video: ProbedVideo, index: FrameIndex, wanted: list[int], sink: Sink) -> None:
    runs = _plan_runs(index, wanted)
    # Runs start at keyframes, so they are independent: decode them on parallel threads, each with
    # its own container. PyAV releases the GIL while demuxing and decoding, and whole runs in
    # parallel beat FFmpeg's frame threading here, whose pipeline fills and drains on every short run.
    workers = min(len(runs), cpu_count())
    groups = _balance(runs, workers, index.size)
    decoder_threads = max(1, cpu_count() // len(groups))
    if len(groups) == 1:
        _decode_runs(video, index, groups[0], decoder_threads, sink)
    else:
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            for _ in pool.map(lambda group: _decode_runs(video, index, group, decoder_threads, sink), groups):
                pass


def cpu_count() -> int:
    """CPUs this process may run on (its affinity, where the system says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _balance(runs: list, workers: int, size: np.ndarray) -> list[list]:
    """Split runs into `workers` groups of about equal decode cost.

    Cost is the compressed bytes of a run's packets (closer to decode work than a frame count:
    keyframes are large, skipped non-reference frames small). Longest first, then single moves
    and swaps between the heaviest and lightest group while they lower the heaviest load.
    """
    cost = {id(run): int(size[run[0] : run[1] + 1].sum()) for run in runs}
    groups: list[list] = [[] for _ in range(max(1, workers))]
    for run in sorted(runs, key=lambda r: cost[id(r)], reverse=True):
        min(groups, key=lambda g: sum(cost[id(r)] for r in g)).append(run)

    def load(group):
        return sum(cost[id(r)] for r in group)

    for _ in range(4 * len(runs)):
        heavy, light = max(groups, key=load), min(groups, key=load)
        gap = load(heavy) - load(light)
        best = None  # (new gap, run from heavy, run from light or None)
        for a in heavy:
            if 0 < cost[id(a)] < gap and (best is None or abs(gap - 2 * cost[id(a)]) < best[0]):
                best = (abs(gap - 2 * cost[id(a)]), a, None)
            for b in light:
                delta = cost[id(a)] - cost[id(b)]
                if 0 < delta < gap and (best is None or abs(gap - 2 * delta) < best[0]):
                    best = (abs(gap - 2 * delta), a, b)
        if best is None or best[0] >= gap:
            break
        _, a, b = best
        heavy.remove(a)
        light.append(a)
        if b is not None:
            light.remove(b)
            heavy.append(b)
    return [sorted(group) for group in groups if group]


def _decode_runs(video: ProbedVideo, index: FrameIndex, runs: list, decoder_threads: int, sink: Sink) -> None:
    """Decode a list of runs with one container, sinking each frame asked for."""
    with open_container(video.info.path) as container:
        stream = stream_by_index(container, video.stream_index)
        stream.codec_context.thread_type = "AUTO" if decoder_threads > 1 else "NONE"
        stream.codec_context.thread_count = decoder_threads
        for start, last, members in runs:
            needed = {t.pts for t in members}
            found = _decode_run(container, stream, index, start, last, needed, sink, skip_nonref=True)
            if needed - found:
                # Safety net: if a decoder ignored the per-packet skip setting, decode everything.
                found |= _decode_run(container, stream, index, start, last, needed - found, sink, skip_nonref=False)
            missing = needed - found
            if missing:
                when = format_time(index.seconds(min(missing)))
                raise VideoError(f"{video.info.path}: the frame at {when} could not be decoded (corrupt file?)")


def _decode_run(
    container, stream, index: FrameIndex, start: int, last: int, needed: set[int], sink: Sink, *, skip_nonref: bool
) -> set[int]:
    """Seek to the keyframe at decode position `start` and decode through position `last`.

    Returns the PTS found (and sunk). Packets are identified by their PTS, so where the demuxer's
    seek lands does not matter as long as it is at or before the keyframe; if it overshoots (some
    formats seek imprecisely), the run is retried from the start of the file.
    """
    context = stream.codec_context
    try:
        for seek_target in (int(index.dts[start]), None):
            found = _decode_from(container, stream, index, seek_target, start, last, needed, sink, skip_nonref)
            if found is not None:
                return found
        return set()
    finally:
        context.skip_frame = "DEFAULT"


def _decode_from(
    container,
    stream,
    index: FrameIndex,
    seek_target: Optional[int],
    start: int,
    last: int,
    needed: set[int],
    sink: Sink,
    skip_nonref: bool,
) -> Optional[set[int]]:
    """One attempt of `_decode_run`: the PTS sunk, or None when the seek landed after the keyframe.

    Each frame asked for is sunk as soon as the decoder gives it, so a long run holds no pictures.

    A frame is marked damaged when the decoder flags it corrupt, or when a packet failed to decode
    since the last keyframe (later frames may reference what was lost).
    """
    context = stream.codec_context
    position_of_pts = index.position_of_pts
    if seek_target is None:
        container.seek(0)  # the container's start, in AV_TIME_BASE
    else:
        container.seek(seek_target, stream=stream, backward=True)
    found: set[int] = set()
    started = False
    errors = False
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            continue
        position = position_of_pts.get(int(packet.pts))
        if position is None:
            # Outside a seek window a packet may be unlisted; anywhere else the index is wrong.
            if index.source != PACKET_SCAN and (started or index.complete) and not packet.is_discard:
                raise IndexMismatch(f"its {index.source} does not list the packet at PTS {packet.pts}")
            continue
        if not started:
            if position < start:
                continue  # before our keyframe: not needed, not decoded
            if position > start:
                return None
            started = True
        if position > last:
            break
        if packet.is_keyframe:
            errors = False
        context.skip_frame = "NONREF" if skip_nonref and int(packet.pts) not in needed else "DEFAULT"
        frames, failed = _decode_packet(context, packet)
        errors = errors or failed
        for frame in frames:
            # A concealed error marks its frame corrupt; frames predicted from it inherit the damage.
            errors = errors or bool(frame.is_corrupt)
            if frame.pts in needed and frame.pts not in found:
                found.add(frame.pts)
                sink(frame.pts, frame, errors)
    context.skip_frame = "DEFAULT"
    frames, failed = _decode_packet(context, None)  # drain the decoder's delayed frames
    for frame in frames:
        if frame.pts in needed and frame.pts not in found:
            found.add(frame.pts)
            sink(frame.pts, frame, errors or failed or bool(frame.is_corrupt))
    return found


def _decode_packet(context, packet) -> tuple[list[av.VideoFrame], bool]:
    """Frames out of one packet, and whether the decoder reported an error."""
    try:
        return context.decode(packet), False
    except av.error.EOFError:
        return [], False
    except av.error.InvalidDataError:
        return [], True  # a damaged packet: later frames may still decode; missing targets are reported


def _decode_sequentially(video: ProbedVideo, wanted: list[int], sink: Sink) -> None:
    """For streams without timestamps: decode in order; frame n is the n-th frame shown (its PTS is n)."""
    remaining = set(wanted)
    with open_container(video.info.path) as container:
        stream = stream_by_index(container, video.stream_index)
        stream.codec_context.thread_type = "AUTO"
        try:
            for number, frame in enumerate(container.decode(stream)):
                if number in remaining:
                    remaining.discard(number)
                    sink(number, frame, bool(frame.is_corrupt))
                    if not remaining:
                        break
        except av.error.FFmpegError as exc:
            raise VideoError(f"{video.info.path} could not be decoded ({exc})") from exc
    if remaining:
        raise VideoError(f"{video.info.path}: frame {min(remaining)} could not be decoded (corrupt file?)")
