"""The MP4/MOV sample tables of one track, read from the file's `moov` box without touching media data.

FFmpeg's mov demuxer already parses the sample tables when a file is opened and exposes every
sample's decode timestamp, size and keyframe flag as the stream's index entries. What it does not
expose is the composition (presentation) offset of each sample, the `ctts` table, which B-frames
need. This module reads just the boxes on the way to it: box headers are read and skipped with
seeks, so a 1.6 GB file costs a few reads wherever its `moov` box lies.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Optional

import numpy as np

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}
_MAX_TABLE = 256 * 1024 * 1024  # a ctts box larger than this is not a real one: refuse it


@dataclass(frozen=True)
class TrackTables:
    """What the index needs of one track's tables."""

    track_id: int  # tkhd track_ID (FFmpeg's stream.id for MP4)
    sample_count: int  # samples in the track's stsz (0 for a fragmented file)
    composition_offsets: Optional[np.ndarray]  # int64 per sample from ctts; None without a ctts box
    sample_durations: Optional[np.ndarray]  # int64 per sample from stts (decode-time deltas)
    edits: int  # entries in the track's edit list (0 without one)
    fragmented: bool  # the file has an mvex box: samples live in movie fragments, not in these tables


def read_track_tables(path: str, track_id: int) -> Optional[TrackTables]:
    """The tables of track `track_id`, or None when the file has no readable `moov` or no such track."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for kind, start, end in _boxes(handle, 0, size):
            if kind == b"moov":
                return _track_in_moov(handle, start, end, track_id)
    return None


def _track_in_moov(handle: BinaryIO, start: int, end: int, track_id: int) -> Optional[TrackTables]:
    fragmented = False
    for kind, _body, _body_end in _boxes(handle, start, end):
        if kind == b"mvex":
            fragmented = True
    for kind, body, body_end in _boxes(handle, start, end):
        if kind != b"trak":
            continue
        tables = _read_trak(handle, body, body_end)
        if tables.get("track_id") == track_id:
            offsets = tables.get("ctts")
            return TrackTables(
                track_id=track_id,
                sample_count=int(tables.get("stsz", 0)),
                composition_offsets=offsets,
                sample_durations=tables.get("stts"),
                edits=int(tables.get("elst", 0)),
                fragmented=fragmented,
            )
    return None


def _read_trak(handle: BinaryIO, start: int, end: int) -> dict:
    """tkhd track_ID, stsz sample count, ctts offsets and elst entry count of one trak box."""
    found: dict = {}
    for kind, body, body_end in _walk(handle, start, end):
        if kind == b"tkhd":
            version = _read(handle, body, 1)[0]
            skip = 16 if version == 1 else 8  # creation and modification times
            found["track_id"] = struct.unpack(">I", _read(handle, body + 4 + skip, 4))[0]
        elif kind == b"stsz":
            found["stsz"] = struct.unpack(">I", _read(handle, body + 8, 4))[0]
        elif kind == b"elst":
            found["elst"] = struct.unpack(">I", _read(handle, body + 4, 4))[0]
        elif kind == b"ctts":
            found["ctts"] = _read_runs(handle, body, body_end, "ctts")
        elif kind == b"stts":
            found["stts"] = _read_runs(handle, body, body_end, "stts")
    return found


def _read_runs(handle: BinaryIO, body: int, body_end: int, name: str) -> np.ndarray:
    """A run-length table of (sample count, value) pairs, expanded to one value per sample."""
    version = _read(handle, body, 1)[0]
    count = struct.unpack(">I", _read(handle, body + 4, 4))[0]
    if count * 8 > min(body_end - body - 8, _MAX_TABLE):
        raise ValueError(f"{name} entry count exceeds its box")
    if version not in (0, 1):
        raise ValueError(f"{name} version {version}")
    table = np.frombuffer(_read(handle, body + 8, count * 8), dtype=">u4").reshape(count, 2)
    runs = table[:, 0].astype(np.int64)
    # ctts version 1 offsets are signed; version 0 writers put negative offsets in them too, and FFmpeg
    # reads them as signed.
    values = table[:, 1].astype(np.uint32).view(np.int32).astype(np.int64)
    if runs.sum() > _MAX_TABLE:
        raise ValueError(f"{name} describes more samples than any real file has")
    return np.repeat(values, runs)


def _walk(handle: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Every box under [start, end), descending into the containers that lead to the sample tables."""
    for kind, body, body_end in _boxes(handle, start, end):
        yield kind, body, body_end
        if kind in _CONTAINERS:
            yield from _walk(handle, body, body_end)


def _boxes(handle: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of each box directly inside [start, end)."""
    position = start
    while position + 8 <= end:
        header = _read(handle, position, 8)
        size, kind = struct.unpack(">I4s", header)
        body = position + 8
        if size == 1:  # 64-bit size follows the type
            size = struct.unpack(">Q", _read(handle, body, 8))[0]
            body += 8
        elif size == 0:  # the box runs to the end of its parent
            size = end - position
        if size < body - position or position + size > end:
            return  # a damaged header: stop rather than read garbage
        yield kind, body, position + size
        position += size


def _read(handle: BinaryIO, offset: int, count: int) -> bytes:
    handle.seek(offset)
    data = handle.read(count)
    if len(data) != count:
        raise ValueError("box runs past the end of the file")
    return data
