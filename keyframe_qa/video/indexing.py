"""Where every frame lies: the stream's packets in decode order, with PTS, DTS, keyframe flag and size.

Three ways to know it, cheapest first:
- **sample table** (MP4/MOV): FFmpeg parsed the file's sample tables when it opened it; its index
  entries give every sample's DTS, size and keyframe flag, and `sample_tables.py` adds the `ctts`
  composition offsets and `stts` durations. No packet is read, so the cost does not grow with the
  file. The first GOP is demuxed and compared with the table; a table that disagrees is not used.
- **seek windows** (Matroska/WebM with cues, and any seekable container whose index FFmpeg knows):
  for each asked time, seek to the keyframe before it with the container's own index and read only
  the packets from there until no later packet can be shown at or before that time. That gives the
  exact frame on screen but not its rank in the whole file, so frame numbers are estimated from the
  frame rate (and said to be, in the JSON).
- **packet scan**: demux every packet of the stream. Exact for everything, and what the other two
  fall back to; its cost grows with the file's size. Frames that need the whole list (uniform
  sampling, scenes, a frame count) build it lazily, only when asked.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Optional

import av
import numpy as np

from ..errors import VideoError, reason
from .sample_tables import read_track_tables

SAMPLE_TABLE = "sample table"
SEEK_WINDOWS = "seek windows"
PACKET_SCAN = "packet scan"
_VERIFY_PACKETS = 64  # first packets compared with a sample table (decoding checks the rest)


@dataclass(frozen=True, eq=False)
class FrameIndex:
    """The video stream's packets in decode order (one packet per frame), in stream ticks."""

    time_base: Fraction
    pts: np.ndarray  # int64 PTS per packet, decode order
    dts: np.ndarray  # int64 DTS per packet (PTS where the container gives none)
    keyframe: np.ndarray  # bool per packet
    size: np.ndarray  # bytes per packet: a cheap estimate of its decode cost
    first_pts: int  # smallest PTS of the stream: time 0 for the user
    display_pts: np.ndarray  # int64 PTS sorted: position = frame_number when `complete`
    has_pts: bool  # False for raw streams without timestamps (decoded sequentially)
    last_duration: int  # how long the last frame stays on screen, in ticks
    source: str = PACKET_SCAN  # how it was built: SAMPLE_TABLE, SEEK_WINDOWS or PACKET_SCAN
    complete: bool = True  # every frame of the stream is here (False: only packets around asked times)

    def frame_number_at(self, seconds: float) -> int:
        """The frame on screen at `seconds` after the first frame: the last one with PTS <= t.

        A position in `display_pts`: the frame number when the index is complete.
        """
        position = bisect_right(self.display_pts, self.ticks_at(seconds)) - 1
        return max(position, 0)

    def ticks_at(self, seconds: float) -> int:
        """`seconds` after the first frame, in stream ticks, rounded down."""
        return ticks_at(seconds, self.time_base, self.first_pts)

    @cached_property
    def position_of_pts(self) -> dict[int, int]:
        """Decode position of the packet with each PTS (PTS identify packets after a seek)."""
        return {int(p): i for i, p in enumerate(self.pts)}

    def seconds(self, pts: int) -> float:
        """PTS in ticks to seconds relative to the first frame."""
        return float((pts - self.first_pts) * self.time_base)


PRINTED_HALF_UNIT = Fraction(1, 2_000_000)  # times are printed to 6 decimals: at most this below the real time


def ticks_at(seconds: float, time_base: Fraction, first_pts: int) -> int:
    """`seconds` after the first frame (PTS `first_pts`), in ticks of `time_base`, rounded down.

    A time as keyframe-qa prints it (6 decimals) names the frame it was printed from: frame 1 of a 30 fps
    video is at 1/30 s, printed 0.033333, which is below it, so half a printed unit is added first (frames
    are never a microsecond apart)."""
    # Exact arithmetic: 0.4 s at time base 1/10 must land on tick 4, not 3.9999.
    return int(((Fraction(repr(seconds)) + PRINTED_HALF_UNIT) / time_base + first_pts) // 1)


@dataclass(frozen=True)
class StreamBounds:
    """First and last frame of a stream, found without reading the packets between them."""

    time_base: Fraction
    first_pts: int  # smallest PTS
    last_pts: int  # largest PTS
    last_duration: int  # how long the last frame is shown, ticks
    frame_ticks: Fraction  # nominal ticks per frame, from the stream's frame rate (for estimates)


def scan_index(container, stream, path: str, *, source: str = PACKET_SCAN) -> FrameIndex:
    """Demux every packet of `stream` (the packet scan). Raw streams without PTS are decoded instead."""
    pts_list: list[int] = []
    dts_list: list[int] = []
    key_list: list[bool] = []
    size_list: list[int] = []
    durations: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue  # flush packets, and packets an edit list hides from the viewer
            if packet.pts is None:
                return index_by_decoding(path, stream.index)
            pts_list.append(packet.pts)
            dts_list.append(packet.dts if packet.dts is not None else packet.pts)
            key_list.append(bool(packet.is_keyframe))
            size_list.append(packet.size)
            durations.append(packet.duration or 0)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path} is truncated or corrupt ({reason(exc)})") from exc
    if not pts_list:
        raise VideoError(f"{path} has a video stream with no frames")
    pts = np.asarray(pts_list, dtype=np.int64)
    return _complete_index(
        _time_base(stream),
        pts,
        np.asarray(dts_list, dtype=np.int64),
        np.asarray(key_list, dtype=bool),
        np.asarray(size_list, dtype=np.int64),
        np.asarray(durations, dtype=np.int64),
        source,
    )


def sample_table_index(container, stream, path: str) -> tuple[Optional[FrameIndex], str]:
    """The complete index from an MP4/MOV's sample tables, without reading packets.

    Returns (index, "") or (None, why not), in which case the caller scans packets. The container is
    left positioned after the first GOPs (callers seek before decoding).
    """
    if "mov" not in container.format.name.split(","):
        return None, ""
    try:
        tables = read_track_tables(path, stream.id)
    except (OSError, ValueError, struct.error) as exc:
        return None, f"its MP4 sample tables could not be read ({exc})"
    if tables is None:
        return None, "its MP4 sample tables were not found"
    if tables.fragmented or tables.sample_count == 0:
        return None, "it is a fragmented MP4 (the samples are listed in movie fragments)"
    if tables.edits > 1:
        return None, f"its edit list has {tables.edits} entries"
    entries = stream.index_entries
    count = len(entries)
    if count != tables.sample_count:
        return None, f"FFmpeg's index has {count} entries for {tables.sample_count} samples"
    rows = entries[0:count]
    dts = np.fromiter((e.timestamp for e in rows), dtype=np.int64, count=count)
    keep = ~np.fromiter((e.is_discard for e in rows), dtype=bool, count=count)
    keyframe = np.fromiter((e.is_keyframe for e in rows), dtype=bool, count=count)
    size = np.fromiter((e.size for e in rows), dtype=np.int64, count=count)
    ends = np.fromiter((e.pos + e.size for e in rows), dtype=np.int64, count=count)
    if count and int(ends.max()) > os.path.getsize(path):
        return None, "the file ends before the samples its table lists (truncated?)"
    offsets = tables.composition_offsets if tables.composition_offsets is not None else np.zeros(count, np.int64)
    durations = tables.sample_durations
    if len(offsets) != count or durations is None or len(durations) != count:
        return None, "its ctts or stts table does not cover every sample"
    keep &= size > 0
    dts, keyframe, size, pts, durations = dts[keep], keyframe[keep], size[keep], (dts + offsets)[keep], durations[keep]
    if len(dts) == 0:
        return None, "its sample table lists no frames"
    shift = _verify_against_packets(container, stream, pts, dts, keyframe)
    if shift is None:
        return None, "its sample table disagrees with the packets"
    return _complete_index(_time_base(stream), pts + shift, dts, keyframe, size, durations, SAMPLE_TABLE), ""


def _verify_against_packets(container, stream, pts, dts, keyframe) -> Optional[int]:
    """Compare the first packets with the table; the PTS shift FFmpeg applies (dts_shift), or None.

    FFmpeg shifts every PTS of a track by one constant when its composition offsets go negative;
    that constant is read off the first packet and must hold for all the packets compared.
    """
    shift = None
    position = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue
            if position >= len(pts) or position >= _VERIFY_PACKETS or packet.pts is None:
                break
            if shift is None:
                shift = int(packet.pts) - int(pts[position])
            packet_dts = packet.dts if packet.dts is not None else packet.pts
            if (
                int(packet.pts) != int(pts[position]) + shift
                or int(packet_dts) != int(dts[position])
                or bool(packet.is_keyframe) != bool(keyframe[position])
            ):
                return None
            position += 1
    except av.error.FFmpegError:
        return None
    return shift if position > 0 else None


def stream_bounds(container, stream, path: str) -> Optional[StreamBounds]:
    """First and last PTS from the first and last GOPs, seeking with the container's index.

    None when the container cannot seek by an index of its own (then the packets are scanned).
    """
    if len(stream.index_entries) == 0:
        return None
    time_base = _time_base(stream)
    try:
        container.seek(0)
        first = _window_packets(container, stream, target=None)
        if not first:
            return None
        first_pts = min(p for p, _ in first)
        end = _end_ticks(container, stream)
        container.seek(end, stream=stream, backward=True)
        tail = []
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None and not packet.is_discard:
                tail.append((int(packet.pts), int(packet.duration or 0)))
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path} is truncated or corrupt ({reason(exc)})") from exc
    if not tail:
        return None
    last_pts, last_duration = max(tail)
    rate = stream.guessed_rate or stream.average_rate or stream.base_rate
    frame_ticks = (1 / Fraction(rate) / time_base) if rate else Fraction(max(last_duration, 1))
    if last_duration <= 0:
        last_duration = max(1, int(round(frame_ticks)))
    return StreamBounds(time_base, first_pts, last_pts, last_duration, frame_ticks)


def window_index(path: str, stream_index: int, bounds: StreamBounds, times: Sequence[float]) -> FrameIndex:
    """An index of only the packets that decide and decode the frames on screen at `times`.

    For each time: seek (backward) to the keyframe before it with the container's index, then
    demux without decoding until a packet's DTS passes the time: DTS only grows and no frame is
    shown before it is decoded, so no later packet can be the frame on screen. If the keyframe
    reached is shown after the time, the frame lies before it (or is one of its leading frames), so
    the seek goes one keyframe further back.
    """
    from .container import open_container, stream_by_index

    rows: dict[int, tuple[int, int, bool, int]] = {}  # pts -> (file position, dts, keyframe, size)
    with open_container(path) as container:
        stream = stream_by_index(container, stream_index)
        for seconds in sorted(set(times)):
            target = ticks_at(seconds, bounds.time_base, bounds.first_pts)
            for pts, row in _window(container, stream, target, path):
                rows.setdefault(pts, row)
    if not rows:
        raise VideoError(f"{path}: no frames were found at the asked times")
    # Decode order is file order for one stream.
    ordered = sorted(rows.items(), key=lambda item: item[1][0])
    presented = np.asarray([p for p, _ in ordered], dtype=np.int64)
    dts = np.asarray([r[1] for _, r in ordered], dtype=np.int64)
    keyframe = np.asarray([r[2] for _, r in ordered], dtype=bool)
    size = np.asarray([r[3] for _, r in ordered], dtype=np.int64)
    return FrameIndex(
        time_base=bounds.time_base,
        pts=presented,
        dts=dts,
        keyframe=keyframe,
        size=size,
        first_pts=bounds.first_pts,
        display_pts=np.unique(presented),
        has_pts=True,
        last_duration=bounds.last_duration,
        source=SEEK_WINDOWS,
        complete=False,
    )


def _window(container, stream, target: int, path: str) -> list[tuple[int, tuple[int, int, bool, int]]]:
    """Packets from the keyframe before `target` until DTS passes it: (pts, (file position, dts, key, size))."""
    seek_to = target
    for _ in range(64):
        container.seek(max(seek_to, 0), stream=stream, backward=True)
        packets = _window_packets(container, stream, target)
        if not packets or not packets[0][1][2]:
            break  # nothing read, or the index led to a frame that is not a keyframe: not to be trusted
        first_pts, first_dts = packets[0][0], packets[0][1][1]
        if first_pts <= target:
            return packets
        earlier = min(seek_to, first_dts, first_pts) - 1  # one keyframe further back
        if seek_to <= 0 or earlier < 0:
            break
        seek_to = earlier
    # From the start of the file: always right, only slower.
    container.seek(0)
    packets = _window_packets(container, stream, target)
    if not packets:
        raise VideoError(f"{path}: no frame could be read near {target}")
    return packets


def _window_packets(container, stream, target: Optional[int]) -> list:
    """(pts, (file position, dts, keyframe, size)) from the current position until DTS passes `target`.

    With `target` None: until DTS passes the smallest PTS seen (enough to know the first frame).
    The file position orders packets of different windows in decode order (DTS may be missing
    right after a seek, where the demuxer has nothing to guess it from).
    """
    packets: list = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard or packet.pts is None:
            continue
        dts = int(packet.dts) if packet.dts is not None else None
        limit = target if target is not None else (min(p for p, _ in packets) if packets else None)
        if dts is not None and limit is not None and dts > limit and packets:
            break
        position = int(packet.pos) if packet.pos is not None and packet.pos >= 0 else len(packets)
        packets.append(
            (
                int(packet.pts),
                (position, dts if dts is not None else int(packet.pts), bool(packet.is_keyframe), int(packet.size)),
            )
        )
    return packets


def _end_ticks(container, stream) -> int:
    """A timestamp at or past the stream's end, in stream ticks."""
    time_base = _time_base(stream)
    candidates = []
    if stream.duration:
        candidates.append(int(stream.duration) + int(stream.start_time or 0))
    if container.duration:
        candidates.append(int(Fraction(container.duration, av.time_base) / time_base) + int(stream.start_time or 0))
    return max(candidates) if candidates else 2**62


def index_by_decoding(path: str, stream_index: int) -> FrameIndex:
    """Raw streams (e.g. .h264) carry no timestamps: frames are numbered in the order they are shown
    and timed by the stream's frame rate, as a player of such a file does."""
    from .container import open_container, stream_by_index

    count = 0
    with open_container(path) as container:
        stream = stream_by_index(container, stream_index)
        rate = stream.guessed_rate or stream.average_rate or stream.base_rate or 25
        try:
            for _ in container.decode(stream):
                count += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path} is truncated or corrupt ({reason(exc)})") from exc
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


def _complete_index(
    time_base: Fraction,
    pts: np.ndarray,
    dts: np.ndarray,
    keyframe: np.ndarray,
    size: np.ndarray,
    durations: np.ndarray,
    source: str,
) -> FrameIndex:
    display = np.unique(pts)  # duplicates would be the same displayed frame
    return FrameIndex(
        time_base=time_base,
        pts=pts,
        dts=dts,
        keyframe=keyframe,
        size=size,
        first_pts=int(display[0]),
        display_pts=display,
        has_pts=True,
        last_duration=_last_frame_duration(display, pts, durations),
        source=source,
    )


def _last_frame_duration(display: np.ndarray, pts: np.ndarray, durations: np.ndarray) -> int:
    """How long the last frame stays on screen, in ticks."""
    last = int(display[-1])
    if len(durations):
        position = int(np.nonzero(pts == last)[0][-1])
        if durations[position] > 0:
            return int(durations[position])
    if len(display) > 1:
        return int(np.median(np.diff(display)))
    return 0


def _time_base(stream) -> Fraction:
    return Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
