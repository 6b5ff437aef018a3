"""The batch results file: JSON lines of ours, appended safely, resumable, one writer at a time.

`batch -o FILE` appends only to a file that is ours: empty, or one whose complete lines are all
keyframe-qa result objects. Anything else (a video given by mistake, notes, a log) is refused and left
byte for byte as it was. A last line cut off mid-write by a killed run is removed only when it is the
start of one of our lines. Reading for resume goes line by line with a cap on a line's length, so a
file of NUL bytes or one endless line cannot eat the memory. A lock (flock on the file itself, released
by the kernel if the process dies) keeps two runs from doing the same work.

Character devices and FIFOs (`/dev/null`, a pipe) and standard output are written straight, with no
resume and no lock: there is nothing to read back.
"""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO, Optional

from ..errors import KeyframeQAError, UsageError, reason
from ..files.paths import OutputPath, check_output_file
from .jsontext import dumps, path_of

# Every line we write starts with this, so a torn tail can be recognised as ours.
LINE_PREFIX = b'{"schema_version":1,'
# Lines written before LINE_PREFIX existed (error lines) began like this.
_OLD_ERROR_PREFIX = b'{"video":{"path":'
MAX_LINE_BYTES = 64 * 1024 * 1024  # far above any real result line; bounds memory on hostile files
_TAIL_CHUNK = 64 * 1024


class ResultsFileInUse(KeyframeQAError):
    """Another process holds the results file's lock (exit code 1)."""


def is_result(record) -> bool:
    """Whether a decoded JSON line is a keyframe-qa batch result (ok or error)."""
    return (
        isinstance(record, dict)
        and record.get("status") in ("ok", "error")
        and isinstance(record.get("settings"), str)
        and isinstance(record.get("video"), dict)
        and isinstance(record["video"].get("path"), str)
    )


class ResultsFile:
    """An open results file: the lines already finished, and an append that is durable per line."""

    def __init__(self, output: OutputPath, *, overwrite: bool = False, hold: bool = False):
        """`hold`: keep written lines in memory (and an --overwrite's emptying) until `release`; a run that
        fails before then leaves the file as it was, and removes it if this run created it."""
        self.output = output
        self.finished: set[tuple[str, str]] = set()  # (normalised video path, settings hash) answered ok
        self._handle: Optional[BinaryIO] = None
        self._held: Optional[list[bytes]] = [] if hold else None
        self._empty_first = False  # --overwrite: empty the file when the first line is written
        self._created = False
        self._failed = False  # a write failed (and was reported)
        try:
            if not output.is_regular:
                self._handle = sys.stdout.buffer if output.is_stdout else open(output.file, "ab", buffering=0)
                return
            os.makedirs(os.path.dirname(output.file), exist_ok=True)
            self._created = not os.path.lexists(output.file)
            # Opened for append without truncation: nothing is changed until the lock is ours and the
            # content has been checked.
            handle = open(output.file, "ab+")
        except OSError as exc:
            raise KeyframeQAError(f"cannot open {output.given}: {reason(exc, lower=True)}") from exc
        try:
            _lock(handle, output)
            self.finished = _read_finished(handle, output, repair=True, overwrite=False)
        except BaseException:
            handle.close()
            raise
        if overwrite:
            self.finished = set()
            self._empty_first = True
        self._handle = handle

    def release(self) -> None:
        """Write what was held and stop holding (idempotent)."""
        held, self._held = self._held, None
        for line in held or ():
            self._write_line(line)

    def write(self, record: dict) -> None:
        """Append one line in one write, then flush it to disk: a crash loses at most this line."""
        # schema_version first: every line starts with LINE_PREFIX, which is how a torn one is known.
        record = {"schema_version": 1, **record}
        line = dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"
        if self._held is not None:
            self._held.append(line)
            return
        self._write_line(line)

    def _write_line(self, line: bytes) -> None:
        if self._handle is None:
            raise ValueError("the results file is not open")
        try:
            if self._empty_first:
                self._handle.truncate(0)
                self._empty_first = False
            self._handle.write(line)
            self._handle.flush()
            if self.output.is_regular:
                os.fsync(self._handle.fileno())
        except OSError as exc:
            self._failed = True
            raise KeyframeQAError(f"cannot write {self.output.given}: {reason(exc, lower=True)}") from exc

    def close(self) -> None:
        """Close the file, which releases the lock. A file this run created and never wrote is removed."""
        if self._handle is not None and not self.output.is_stdout:
            if self._created and self.output.is_regular:
                try:
                    if os.fstat(self._handle.fileno()).st_size == 0 and os.path.exists(self.output.file):
                        os.unlink(self.output.file)
                except OSError:
                    pass
            try:
                self._handle.close()  # closing releases the lock
            except OSError as exc:
                # Flushing what a failed write left in the buffer fails again: that failure was reported.
                if not self._failed:
                    raise KeyframeQAError(f"cannot write {self.output.given}: {reason(exc, lower=True)}") from exc
        self._handle = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_results_file(output: OutputPath) -> None:
    """Refuse, before any work, a file that is not ours; reads it, changes nothing, takes no lock."""
    if not output.is_regular or not os.path.exists(output.file):
        return
    with open(output.file, "rb") as handle:
        _read_finished(handle, output, repair=False, overwrite=False)


def finished_keys(path: str) -> set[tuple[str, str]]:
    """(video path, settings) of the lines already answered in a results file (read only)."""

    output = check_output_file(path, "-o")
    if not os.path.exists(path):
        return set()
    with open(path, "rb") as handle:
        return _read_finished(handle, output, repair=False, overwrite=False)


def key_path(path: str) -> str:
    """How a video path is compared across runs."""
    return os.path.normcase(os.path.abspath(path))


def _read_finished(handle, output: OutputPath, *, repair: bool, overwrite: bool) -> set[tuple[str, str]]:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    if size == 0:
        return set()
    complete_end = _end_of_complete_lines(handle, size)
    finished: set[tuple[str, str]] = set()
    handle.seek(0)
    number = 0
    while handle.tell() < complete_end:
        line = handle.readline(MAX_LINE_BYTES + 1)
        number += 1
        if len(line) > MAX_LINE_BYTES:
            _not_ours(output, f"line {number} is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            _not_ours(output, f"line {number} is not JSON")
        if not is_result(record):
            _not_ours(output, f"line {number} is not a keyframe-qa result")
        video = path_of(record["video"])
        if record["status"] == "ok" and video is not None:
            finished.add((key_path(video), record["settings"]))
    if complete_end < size:
        handle.seek(complete_end)
        tail = handle.read(min(size - complete_end, MAX_LINE_BYTES + 1))
        if not _is_our_torn_line(tail):
            _not_ours(output, "its last line is not a keyframe-qa result")
        if repair:
            # Our own line, cut off when a run died mid-write: drop it so the next line starts clean.
            handle.truncate(complete_end)
    if overwrite and repair:
        handle.truncate(0)
        return set()
    return finished


def _end_of_complete_lines(handle, size: int) -> int:
    """Offset just after the last newline (0 if none), found by reading backwards in chunks."""
    position = size
    while position > 0:
        start = max(0, position - _TAIL_CHUNK)
        handle.seek(start)
        chunk = handle.read(position - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
        if size - position > MAX_LINE_BYTES:
            return 0  # no newline for too long: the whole file is one (torn) line
    return 0


def _is_our_torn_line(tail: bytes) -> bool:
    if len(tail) > MAX_LINE_BYTES or b"\x00" in tail:
        return False
    for prefix in (LINE_PREFIX, _OLD_ERROR_PREFIX):
        if tail.startswith(prefix) or prefix.startswith(tail):
            return True
    return False


def _not_ours(output: OutputPath, why: str) -> None:
    raise UsageError(
        f"{output.given} is not a keyframe-qa results file ({why}); it was left untouched. "
        f"Give -o a new path or an earlier results file"
    )


def _lock(handle, output: OutputPath) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ResultsFileInUse(
            f"{output.given} is being written by another keyframe-qa batch "
            f"({_holder(handle.fileno())}); wait for it to finish or give another -o"
        ) from None
    except OSError:
        return  # a filesystem without flock: carry on unlocked rather than refuse to run


def _holder(fd: int) -> str:
    """Who holds the flock on `fd`'s file, from /proc/locks (Linux); a plain phrase elsewhere."""
    try:
        status = os.fstat(fd)
        inode = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for entry in locks:
                fields = entry.split()
                if "FLOCK" in fields and len(fields) > 5 and fields[5] == inode and fields[4] != str(os.getpid()):
                    pid = fields[4]
                    return f"process {pid}{_command(pid)}"
    except OSError:
        pass
    return "another process"


def _command(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().split(b"\x00")
    except OSError:
        return ""
    text = " ".join(w.decode("utf-8", "replace") for w in words if w)
    return f": {text[:120]}" if text else ""
