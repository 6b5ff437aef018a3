"""What a batch runs on: videos from files, folders, globs and manifests, each with the settings it is
answered with, and the hash that lets a rerun skip what is done."""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Optional

from ..console import status
from ..errors import UsageError
from ..options import OPTIONS
from ..selection.select import SelectionRequest
from ..timecodes import parse_time_list
from .ask import AskRequest

VIDEO_EXTENSIONS = {
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".ts",
    ".mts",
    ".m2ts",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".3gp",
    ".ogv",
}
MANIFEST_EXTENSIONS = {".csv", ".jsonl"}
UNHASHED = tuple(name for name, option in OPTIONS.items() if not option.hashed)
ADDED_LATER = ("when",)  # request fields added after results files existed
SEARCH_SETTINGS = ("precision", "refine", "window_frames")  # --when's, hashed only with it
MAX_MANIFEST_ROW_BYTES = 16 * 1024 * 1024  # far above any real row (a 10 MB question is refused later, by size)


@dataclass(frozen=True)
class BatchItem:
    """One video to answer, with the per-video settings a manifest may give."""

    video: str
    times: Optional[tuple[float, ...]] = None  # manifest `at`
    questions: tuple[str, ...] = ()  # manifest `question(s)`; empty: the batch's questions
    error: Optional[str] = None  # a manifest row that could not be read: recorded, not run
    when: Optional[str] = None  # find the moments this happens first (`ask --when`), for this video alone


def collect_items(inputs: Sequence[str]) -> list[BatchItem]:
    """Videos from files, folders (recursive, by extension), globs and manifests, in a stable order."""
    items: list[BatchItem] = []
    for raw in inputs:
        path = os.path.expanduser(raw)
        if os.path.isdir(path):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(path)
                for name in names
                if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS
            )
            items.extend(BatchItem(video=f) for f in found)
        elif os.path.isfile(path) and os.path.splitext(path)[1].lower() in MANIFEST_EXTENSIONS:
            items.extend(read_manifest(path))
        elif os.path.exists(path):
            items.append(BatchItem(video=path))
        elif glob.has_magic(path):
            matches = sorted(m for m in glob.glob(path, recursive=True) if os.path.isfile(m))
            if not matches:
                raise UsageError(f"no files match {raw}")
            items.extend(BatchItem(video=m) for m in matches)
        else:
            raise UsageError(f"no such file or folder: {raw}")
    if not items:
        raise UsageError(
            "no videos found in the inputs (folders are searched for " + ", ".join(sorted(VIDEO_EXTENSIONS)) + ")"
        )
    return items


def distinct_items(items: Sequence[BatchItem]) -> tuple[list[BatchItem], int]:
    """(the items with each video asked the same way once, how many were dropped): the same file named
    several ways (a path, `./path`, a symlink, a hard link) with the same times and questions is answered
    once, under the first name it was given."""
    seen: set = set()
    identities: dict[str, object] = {}  # a manifest names one video in many rows: one stat each
    kept = []
    for item in items:
        identity = identities.get(item.video)
        if identity is None:
            try:
                status = os.stat(item.video)
                identity = (status.st_dev, status.st_ino)
            except (OSError, ValueError):
                identity = item.video  # not there (its error says so): compared by name
            identities[item.video] = identity
        key = (identity, item.times, item.questions, item.error, item.when)
        if key in seen:
            continue
        seen.add(key)
        kept.append(item)
    return kept, len(items) - len(kept)


LARGE_MANIFEST_BYTES = 1 << 20  # a manifest this large says that it is being read, and how long it took


def read_manifest(path: str) -> list[BatchItem]:
    """Rows of a .csv (header: video, at, question) or .jsonl manifest; paths relative to it.

    A row is read up to MAX_MANIFEST_ROW_BYTES: a longer one is that row's error line, never held whole."""
    base = os.path.dirname(os.path.abspath(path))
    started = time.perf_counter()
    try:
        large = os.path.getsize(path) > LARGE_MANIFEST_BYTES
    except OSError:
        large = False
    if large:
        status(f"reading the manifest {path} ({os.path.getsize(path) / (1 << 20):.0f} MiB)")
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which must not join the header.
        with open(path, encoding="utf-8-sig", newline="") as handle:
            if path.lower().endswith(".csv"):
                csv.field_size_limit(MAX_MANIFEST_ROW_BYTES)
                rows: list[object] = list(csv.DictReader(handle))
            else:
                rows = list(_jsonl_rows(handle))
    except (OSError, ValueError, csv.Error) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from exc
    items = []
    for number, row in enumerate(rows, start=1):
        if isinstance(row, _TooLong):
            items.append(
                BatchItem(
                    video=f"{path}#row{number}",
                    error=f"{path} row {number}: longer than {MAX_MANIFEST_ROW_BYTES // (1024 * 1024)} MiB",
                )
            )
            continue
        if not isinstance(row, dict) or not row.get("video"):
            raise UsageError(f"{path} row {number}: needs a `video` column")
        video = str(row["video"])
        video = video if os.path.isabs(video) else os.path.join(base, video)
        try:
            times = _manifest_times(row.get("at"))
            questions = _manifest_questions(row)
        except UsageError as exc:
            items.append(BatchItem(video=video, error=f"{path} row {number}: {exc}"))
            continue
        items.append(BatchItem(video=video, times=times, questions=questions))
    if large:
        status(f"read {len(items):,} rows of {path} in {time.perf_counter() - started:.1f} s")
    return items


class _TooLong:
    """A manifest line past the cap (its text is skipped, not kept)."""


def _jsonl_rows(handle) -> Iterable[object]:
    number = 0
    while True:
        line = handle.readline(MAX_MANIFEST_ROW_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_MANIFEST_ROW_BYTES and not line.endswith("\n"):
            while line and not line.endswith("\n"):  # skip the rest of it, a bounded piece at a time
                line = handle.readline(MAX_MANIFEST_ROW_BYTES)
            number += 1
            yield _TooLong()
            continue
        if not line.strip():
            continue
        number += 1
        try:
            yield json.loads(line)
        except RecursionError:
            raise ValueError(f"line {number} is nested too deeply") from None
        except ValueError as exc:
            raise ValueError(f"line {number} is not JSON ({exc})") from None


def _manifest_times(value) -> Optional[tuple[float, ...]]:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, list):
        return tuple(parse_time_list(",".join(str(v) for v in value)))
    return tuple(parse_time_list(str(value)))


def _manifest_questions(row: dict) -> tuple[str, ...]:
    value = row.get("questions", row.get("question"))
    if value is None or value == "":
        return ()
    values = value if isinstance(value, list) else [value]
    return tuple(str(v) for v in values if str(v).strip())


def item_request(template: AskRequest, item: BatchItem) -> AskRequest:
    """The ask request for one item: the batch's settings with the manifest's overrides."""
    request = replace(template, video=item.video, questions=item.questions or template.questions)
    if item.times is not None:
        request = replace(request, selection=SelectionRequest(times=item.times))
    if item.when is not None:
        request = replace(request, when=item.when, selection=SelectionRequest())
    return request


def settings_hash(request: AskRequest, model_id: str) -> str:
    """A short hash of everything that shapes a video's answer (not the video itself)."""
    settings = asdict(request)
    # Hashed flat, as the request was before it held its engine and generation records: results files
    # written then still resume.
    settings.update(settings.pop("engine"), times=None)
    settings.update(settings.pop("generation"))
    # The video is the line's key; where files go, and options declared as not changing an answer (where
    # the server lives, how long to wait for it, the scene cache), are left out.
    for key in ("video", "save_frames", "annotate", "html", "output", *UNHASHED):
        settings.pop(key, None)
    for key in ADDED_LATER:  # left out while unset, so results files written before them still resume
        if settings.get(key) is None:
            settings.pop(key, None)
    if settings.get("when") is None:  # the search's own settings shape nothing without it
        for key in SEARCH_SETTINGS:
            settings.pop(key, None)
    for key in ("show_progress", *UNHASHED):
        settings["selection"].pop(key, None)
    # --relevant's fields shape nothing without it (and results files written before it still resume); the
    # device and dtype are the request's own, hashed there.
    for key in (
        "device",
        "dtype",
        "queries",
        *(("relevant", "candidates", "scorer") if settings["selection"].get("relevant") is None else ()),
    ):
        settings["selection"].pop(key, None)
    settings["model_id"] = model_id
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
