"""keyframe-qa's on-disk caches (scene lists, relevance embeddings): safe on a shared machine.

A cache is read from outside, so nothing in it is trusted:
- Each kind of cache lives in `<cache dir>/<kind>/`, a folder created 0700. A folder owned by someone
  else, or writable by group or others, is not used at all (one warning): anyone who can write there
  could plant entries.
- Entries are opened without following links (O_NOFOLLOW), must be regular files of ours (same owner),
  at most MAX_ENTRY_BYTES, JSON whose `cache` stamp and `key` are exactly the ones we would write, and
  whose payload passes the kind's own check (types, and agreement with the video). Anything else is
  ignored with one warning that names the file, and replaced by the fresh result.
- Entries are written to a temporary file in that folder and renamed over the name, which replaces
  a planted link rather than writing through it.
A cache that cannot be used only costs speed: the result is computed as if there were none.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from typing import Optional, TypeVar

from ..console import warn

T = TypeVar("T")  # what a kind's check makes of an entry's payload

CACHE_ENV = "KEYFRAME_QA_CACHE_DIR"
# Far above a real entry: a scene list of 100,000 cuts is ~8 MB; the relevance embeddings of six hours at one
# candidate a second, 768 values each (SigLIP base, float16 in base64), ~44 MB.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
STAMP = "keyframe-qa"


class CacheEntryError(ValueError):
    """A cache entry that is not ours or not valid: the reason, for the warning."""


def cache_dir() -> str:
    """The cache root: $KEYFRAME_QA_CACHE_DIR, or the user cache folder."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    import platformdirs

    return platformdirs.user_cache_dir("keyframe-qa")


def kind_dir(kind: str, create: bool) -> Optional[str]:
    """`<cache dir>/<kind>`, created 0700 when `create`; None (with one warning) when it is not safe to use."""
    folder = os.path.join(cache_dir(), kind)
    if create:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError:
            return None  # an unwritable cache costs speed only
    try:
        status = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(status.st_mode):
        warn(f"the {kind} cache {folder} is not a folder; not using the cache")
        return None
    if status.st_uid != os.geteuid():
        warn(
            f"the {kind} cache {folder} belongs to another user (uid {status.st_uid}); not using it (set "
            f"{CACHE_ENV} to a folder of your own)"
        )
        return None
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        warn(
            f"the {kind} cache {folder} can be written by other users; not using it (chmod 700 it, or set "
            f"{CACHE_ENV} to a private folder)"
        )
        return None
    return folder


def read_entry(kind: str, name: str, key: dict, check: Callable[[object], T]) -> Optional[T]:
    """The checked payload of entry `name`, or None when there is none or it cannot be trusted.

    `check(payload)` returns the value to use or raises CacheEntryError (or TypeError/ValueError/KeyError)
    saying what is wrong; an entry that fails is warned about once, by file name, and left to be replaced.
    """
    folder = kind_dir(kind, create=False)
    if folder is None:
        return None
    path = os.path.join(folder, name)
    try:
        data = _read_own_file(path)
    except FileNotFoundError:
        return None
    except (OSError, CacheEntryError) as exc:
        _ignored(kind, path, exc)
        return None
    try:
        record = json.loads(data)
        if not isinstance(record, dict) or record.get("cache") != f"{STAMP} {kind}" or record.get("key") != key:
            raise CacheEntryError("not a keyframe-qa entry for this video and these settings")
        return check(record.get("payload"))
    except (CacheEntryError, TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        _ignored(kind, path, exc)
        return None


def write_entry(kind: str, name: str, key: dict, payload) -> None:
    """Store `payload` as entry `name` (atomically; a link at that name is replaced, never followed)."""
    folder = kind_dir(kind, create=True)
    if folder is None:
        return
    data = json.dumps({"cache": f"{STAMP} {kind}", "key": key, "payload": payload}).encode("utf-8")
    if len(data) > MAX_ENTRY_BYTES:  # it would be refused when read: not written, and said once
        warn(
            f"not caching this {kind} entry: {len(data) // (1024 * 1024)} MiB is more than the cache takes "
            f"({MAX_ENTRY_BYTES // (1024 * 1024)} MiB)"
        )
        return
    try:
        handle, temporary = tempfile.mkstemp(prefix=".entry-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, os.path.join(folder, name))
        except BaseException:
            if os.path.lexists(temporary):
                os.unlink(temporary)
            raise
    except OSError:
        pass  # a full or read-only disk: the cache only costs speed


def _read_own_file(path: str) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheEntryError("it is a symlink") from exc
        raise
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise CacheEntryError("it is not a regular file")
        if status.st_uid != os.geteuid():
            raise CacheEntryError("it belongs to another user")
        if status.st_size > MAX_ENTRY_BYTES:
            raise CacheEntryError(f"it is larger than {MAX_ENTRY_BYTES // (1024 * 1024)} MiB")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_ENTRY_BYTES:
                raise CacheEntryError(f"it is larger than {MAX_ENTRY_BYTES // (1024 * 1024)} MiB")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _ignored(kind: str, path: str, exc: Exception) -> None:
    reason = str(exc) or type(exc).__name__
    warn(f"ignoring the {kind} cache entry {path} ({' '.join(reason.split())[:200]}); it will be replaced")
