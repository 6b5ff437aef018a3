"""Every path keyframe-qa writes: checked before any work starts, written without destroying anything.

What a path is decides how it is written:
- `-`, `/dev/stdout` (and `/dev/fd/1`): standard output.
- a character device or a FIFO (`/dev/null`, `/dev/full`, a named pipe, `/dev/fd/N` of a pipe): written
  straight into, never replaced (renaming over `/dev/null` as root would replace the device node).
- a regular file, or a path that does not exist yet: written to a temporary file beside it and renamed
  over it, so a reader sees the old file or the new one, never half of one. A symlink is followed: its
  target is replaced and the link kept. An existing file keeps its permission bits.
- an existing file in a folder we cannot write, but which is itself writable: rewritten in place.

Refused up front, as usage errors: folders, block devices, sockets, any input of the same run (the
video, a manifest, a config), read-only files, and paths under folders we cannot create or write.

Names keyframe-qa chooses itself (frame images inside `--out`, `--save-frames`, `--annotate`) follow
stricter rules (`write_chosen_name`): the name must be absent or a regular file of ours to replace;
a symlink, anything that is not a regular file, or an input of the run (compared by device and inode)
stops the run, and the rename never follows a link.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import KeyframeQAError, UsageError, reason

STDOUT = "-"
# Paths that name our own standard output: written to sys.stdout, never reopened (reopening a
# shell's `> out.json` with O_TRUNC or renaming over it would lose what was there or what we write).
_STDOUT_ALIASES = {"/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"}
_FD_PREFIXES = ("/dev/fd/", "/proc/self/fd/")


@dataclass(frozen=True)
class OutputPath:
    """Where one output goes and how it is written."""

    given: str  # the path as the user gave it, for messages
    path: Optional[str]  # the file actually written (symlinks resolved); None for stdout
    kind: str  # "stdout", "stream" (device, FIFO: written straight), "file" (atomic), "inplace"
    option: str  # the option that named it ("-o", "--html"), for messages

    @property
    def is_stdout(self) -> bool:
        """Whether this output is standard output."""
        return self.kind == "stdout"

    @property
    def file(self) -> str:
        """The path written, for an output that is not standard output."""
        if self.path is None:
            raise ValueError(f"{self.option} writes standard output, which has no path")
        return self.path

    @property
    def is_regular(self) -> bool:
        """A regular file on disk (or one to be created): something that can be read back."""
        return self.kind in ("file", "inplace")


def names_stdout(given: Optional[str]) -> bool:
    """Whether an output option names standard output (`-`, `/dev/stdout`, or nothing given)."""
    return given is None or given == STDOUT or given in _STDOUT_ALIASES


def check_stdout(option: str = "-o") -> None:
    """A usage error, before any work, when standard output is closed (`>&-`: Python then has no sys.stdout,
    and the result would be lost at the end)."""
    if sys.stdout is None:
        raise UsageError(f"standard output is closed: give {option} FILE to write the result to a file")


def check_output_file(given: str, option: str, inputs: Iterable[str] = ()) -> OutputPath:
    """Decide how `given` will be written, refusing what must not be written. Writes nothing."""
    if names_stdout(given):
        check_stdout(option)
        return OutputPath(given or STDOUT, None, "stdout", option)
    if not given or not given.strip():
        raise UsageError(f"{option} needs a path (or - for standard output)")
    path = os.path.abspath(os.path.expanduser(given))
    if given.endswith(("/", os.sep)) and not os.path.isdir(path):
        # abspath drops the slash: `-o dir/` would otherwise write a file named `dir`.
        raise UsageError(f"{option} {given} ends with / and so names a folder; give a file path")
    if path.startswith(_FD_PREFIXES) or path == "/dev/stderr":
        return OutputPath(given, path, _stream_kind(path, given, option), option)
    real = os.path.realpath(path)  # through symlinks: the target is written, the link kept
    try:
        status = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):  # the latter: a parent is a file
        _check_creatable(os.path.dirname(real), given, option)
        return OutputPath(given, real, "file", option)
    except OSError as exc:
        raise UsageError(f"cannot use {option} {given}: {reason(exc, lower=True)}") from exc
    if stat.S_ISDIR(status.st_mode):
        raise UsageError(f"{option} {given} is a folder; give a file path")
    if stat.S_ISCHR(status.st_mode) or stat.S_ISFIFO(status.st_mode):
        return OutputPath(given, real, _stream_kind(real, given, option), option)
    if not stat.S_ISREG(status.st_mode):
        what = "a block device" if stat.S_ISBLK(status.st_mode) else "not a regular file"
        raise UsageError(f"{option} {given} is {what}; keyframe-qa writes only files, pipes and character devices")
    for source in inputs:
        if same_file(real, source):
            raise UsageError(
                f"{option} {given} is an input of this run ({source}); it would be overwritten: choose another path"
            )
    if not os.access(real, os.W_OK):
        raise UsageError(f"cannot write {option} {given}: the file is read-only (permission denied)")
    folder = os.path.dirname(real)
    if os.access(folder, os.W_OK | os.X_OK):
        return OutputPath(given, real, "file", option)
    return OutputPath(given, real, "inplace", option)


def check_output_dir(given: str, option: str) -> str:
    """A folder we will write files into: existing and writable, or creatable. Returns its absolute path."""
    if not given or not given.strip():
        raise UsageError(f"{option} needs a folder")
    path = os.path.abspath(os.path.expanduser(given))
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"{option} {given} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write into {option} {given}: permission denied")
        _try_writing(path, f"cannot write into {option} {given}")
        return path
    _check_creatable(os.path.dirname(path), given, option)
    return path


def check_distinct(outputs: Sequence[Optional[OutputPath]]) -> None:
    """Two options may not write the same file (or both write to standard output)."""
    seen: dict[str, OutputPath] = {}
    for output in outputs:
        if output is None:
            continue
        key = "<stdout>" if output.is_stdout else output.file
        if key in seen and not (output.kind == "stream" and key == os.devnull):
            first = seen[key]
            where = "standard output" if output.is_stdout else output.given
            raise UsageError(f"{first.option} and {output.option} would both write {where}; give them different paths")
        seen[key] = output


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def write_output(output: OutputPath, data: Union[str, bytes]) -> None:
    """Write a whole output the way its kind needs (see the module docstring)."""
    # JSON is made valid Unicode before it gets here (jsontext.py); for other text (HTML, CSV) a name
    # that is not UTF-8 shows U+FFFD rather than failing the write.
    payload = data.encode("utf-8", "replace") if isinstance(data, str) else data
    try:
        if output.is_stdout:
            sys.stdout.flush()
            buffer = getattr(sys.stdout, "buffer", None)
            if buffer is None:  # a text-only stdout (an embedding application's): give it text
                sys.stdout.write(payload.decode("utf-8"))
            else:
                buffer.write(payload)
            sys.stdout.flush()
        elif output.kind == "stream":
            with open(output.file, "ab", buffering=0) as handle:  # append: never truncates what is behind it
                _write_all(handle, payload)
        elif output.kind == "inplace":
            with open(output.file, "r+b") as handle:
                handle.truncate(0)
                _write_all(handle, payload)
                os.fsync(handle.fileno())
        else:
            _replace_atomically(output.file, payload)
    except OSError as exc:
        raise KeyframeQAError(f"cannot write {output.given}: {reason(exc, lower=True)}") from exc


def check_chosen_name(path: str, option: str, inputs: Iterable[str] = ()) -> None:
    """Refuse to write a file whose name keyframe-qa chose (a frame image in an output folder) when
    something other than a regular file of ours stands there: a symlink (it could point at anything,
    an input included), a folder, a device, or an input of this run (same device and inode)."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KeyframeQAError(f"cannot write {path} ({option}): {reason(exc, lower=True)}") from exc
    if stat.S_ISLNK(status.st_mode):
        raise KeyframeQAError(
            f"{path} ({option}) is a symlink; keyframe-qa never writes through a link in a name "
            f"it chose: remove it or choose another folder"
        )
    if not stat.S_ISREG(status.st_mode):
        raise KeyframeQAError(f"{path} ({option}) exists and is not a regular file; remove it or choose another folder")
    for source in inputs:
        try:
            other = os.stat(source)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (status.st_dev, status.st_ino):
            raise KeyframeQAError(
                f"{path} ({option}) is an input of this run ({source}); it would be overwritten: choose another folder"
            )


def chosen_dir(path: str, option: str) -> str:
    """A folder whose name keyframe-qa chose (a dataset's `data/`, a page's `_files/`): made if it is not
    there; refused if a symlink (it could lead anywhere) or anything but a folder stands under the name."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        try:
            os.mkdir(path)
        except OSError as exc:
            raise KeyframeQAError(f"cannot make {path} ({option}): {reason(exc, lower=True)}") from exc
        return path
    if stat.S_ISLNK(status.st_mode):
        raise KeyframeQAError(f"{path} ({option}) is a symlink; keyframe-qa never writes through a link in a name it "
                              f"chose: remove it or choose another folder")  # fmt: skip
    if not stat.S_ISDIR(status.st_mode):
        raise KeyframeQAError(f"{path} ({option}) exists and is not a folder; remove it or choose another name")
    return path


def write_chosen_name(path: str, data: bytes, option: str, inputs: Iterable[str] = ()) -> str:
    """Write a file whose name keyframe-qa chose, inside a folder the user named (see
    `check_chosen_name`): checked, then written to a temporary file and renamed over the name, which
    replaces a directory entry and never follows a link planted after the check."""
    check_chosen_name(path, option, inputs)
    try:
        _replace_atomically(path, data, follow=False)
    except OSError as exc:
        raise KeyframeQAError(f"cannot write {path} ({option}): {reason(exc, lower=True)}") from exc
    return path


def write_file(path: str, data: Union[str, bytes], option: str = "output", inputs: Iterable[str] = ()) -> str:
    """Check and write one file (inside an output folder, say); returns the path written."""
    write_output(check_output_file(path, option, inputs), data)
    return path


def _replace_atomically(path: str, payload: bytes, *, follow: bool = True, mode: Optional[int] = None) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    if mode is None:
        try:
            # An existing file keeps its permissions (a link's own bits are meaningless: not followed).
            found = os.stat(path) if follow else os.lstat(path)
            mode = stat.S_IMODE(found.st_mode) if stat.S_ISREG(found.st_mode) else None
        except FileNotFoundError:
            pass
    if mode is None:
        mode = 0o666 & ~_umask()  # as a plain open() would create it (mkstemp makes 0600)
    handle, temporary = tempfile.mkstemp(prefix=".keyframe-qa-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            _write_all(out, payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _write_all(handle, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = handle.write(view)
        if written is None:  # a non-blocking descriptor that is full: fail rather than spin
            raise BlockingIOError(11, "the output would block")
        view = view[written:]


def _stream_kind(path: str, given: str, option: str) -> str:
    if not os.access(path, os.W_OK):
        raise UsageError(f"cannot write {option} {given}: permission denied")
    return "stream"


def _check_creatable(folder: str, given: str, option: str) -> None:
    """The nearest existing ancestor of `folder` must be a folder we can write into."""
    ancestor = folder
    while not os.path.lexists(ancestor):
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    if not os.path.isdir(ancestor):
        raise UsageError(f"cannot create {option} {given}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create {option} {given}: the folder {ancestor} is not writable (permission denied)")
    _try_writing(ancestor, f"cannot create {option} {given} in {ancestor}")


def _try_writing(folder: str, failure: str) -> None:
    """Make and remove an empty folder of our own in `folder`: permissions alone do not tell (root may
    write anywhere by them, yet not into /proc or a read-only mount), and the run must not fail there
    after the model has loaded. Nothing is left behind."""

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".keyframe-qa-check-", dir=folder))
    except OSError as exc:
        raise UsageError(f"{failure}: {reason(exc, lower=True)}") from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
