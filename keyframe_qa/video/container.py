"""Opening a video file with PyAV: the checks before it, and finding a stream in it again.

The first step of the video stage; `indexing` and `probe` build on it (container -> indexing -> probe
-> frames, one way).
"""

from __future__ import annotations

import os
import stat

import av

from ..errors import VideoError, reason


def check_path(path: str) -> None:
    """Fail early, with a clear message, for paths that cannot be videos."""
    if not os.path.exists(path):
        raise VideoError(f"video not found: {path}")
    if os.path.isdir(path):
        raise VideoError(f"{path} is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoError(f"cannot read {path}: permission denied")
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        what = (
            "a named pipe (FIFO)"
            if stat.S_ISFIFO(mode)
            else "a character device"
            if stat.S_ISCHR(mode)
            else "a block device"
            if stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise VideoError(
            f"{path} is {what}, not a video file: keyframe-qa seeks in the video, so it reads files "
            f"only (save the stream to a file first)"
        )
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path} is empty (0 bytes)")


def open_container(path: str) -> av.container.InputContainer:
    """Open `path` with PyAV, turning library errors into VideoError."""
    check_path(path)
    try:
        return av.open(path, mode="r")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path} is not a readable video: damaged, truncated or not a video ({reason(exc)})") from exc


def stream_by_index(container, stream_index: int):
    """The container's stream whose FFmpeg index is `stream_index`."""
    for stream in container.streams:
        if stream.index == stream_index:
            return stream
    raise VideoError(f"stream {stream_index} is missing from {container.name}")
