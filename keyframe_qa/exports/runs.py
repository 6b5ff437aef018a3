"""Reading finished runs back: batch results files, `eval` run folders, and `ask`, `when` and `scenes` JSON, in
any mix, as one list of per-video results for the exports and the viewer.

What is read is ours or refused: a JSONL file whose lines are not all keyframe-qa results, a JSON file that is
no report of ours, a folder without an eval summary, each one `Error:` line naming the file (and the line).
A torn last line (a run killed while writing it) is skipped with a warning, as a rerun would drop it; a bad
line anywhere else is refused. Each line is read with a cap, so no file can make it hold more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Optional

from ..console import warn
from ..errors import UsageError
from ..outputs.jsontext import path_of
from ..outputs.results_file import is_result

MAX_LINE_BYTES = 64 * 1024 * 1024  # as the batch's resume: a line longer than this is not ours
MAX_REPORT_BYTES = 256 * 1024 * 1024  # one `ask`/`when`/`scenes` JSON or an eval summary


@dataclass(frozen=True)
class VideoResult:
    """One video's result in a run, as the exports and the viewer read it."""

    source: str  # FILE:LINE (or FILE) it was read from
    video: str  # the video's path, as the run recorded it
    kind: str  # "ask" (a batch line or an ask report), "when", "scenes" or "error" (a failed batch line)
    record: dict = field(repr=False)  # the result as written (the batch line, or the report)
    pipeline: Optional[str] = None  # an eval run's pipeline the result belongs to
    items: tuple = ()  # an eval run: the item records of this video in this pipeline (NAME.items.jsonl)

    @property
    def status(self) -> str:
        """ok or error."""
        return "error" if self.kind == "error" else "ok"

    @property
    def error(self) -> Optional[str]:
        """Why the video failed, for a failed batch line."""
        return self.record.get("error") if self.kind == "error" else None


@dataclass(frozen=True)
class Run:
    """Everything read from the RESULTS arguments."""

    results: list  # VideoResult per video and pipeline, in the order read
    summaries: list  # (folder, summary.json) of each eval run read
    inputs: list  # every file read (never to be written over)


def read_runs(paths: Sequence[str]) -> Run:
    """The results of every path (see the module docstring); UsageError for anything not ours."""
    results: list[VideoResult] = []
    summaries: list[tuple[str, dict]] = []
    inputs: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            summary_path = os.path.join(path, "summary.json")
            if not os.path.isfile(summary_path):
                raise UsageError(f"{path} is a folder but not an eval run (no summary.json in it)")
            summary = _report(summary_path)
            if not isinstance(summary.get("pipelines"), dict):
                raise UsageError(f"{summary_path} is not an eval summary of keyframe-qa (no `pipelines`)")
            summaries.append((path, summary))
            inputs.append(summary_path)
            for name in summary["pipelines"]:
                lines = os.path.join(path, f"{name}.jsonl")
                items_path = os.path.join(path, f"{name}.items.jsonl")
                items = _items(items_path) if os.path.isfile(items_path) else {}
                inputs += [lines, items_path]
                for result in _batch(lines):
                    by_video = tuple(items.get(result.video, ()))
                    results.append(VideoResult(result.source, result.video, result.kind, result.record, name, by_video))
        elif path.lower().endswith(".jsonl"):
            inputs.append(path)
            results += _batch(path)
        else:
            inputs.append(path)
            results.append(_single(path, _report(path)))
    return Run(results, summaries, inputs)


def _lines(path: str) -> Iterator[tuple[int, Optional[dict], bool]]:
    """(line number, decoded record or None, whether it is the last line) of a JSONL file."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        number = 0
        pending: Optional[tuple[int, Optional[dict]]] = None
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            number += 1
            if not raw.strip():
                continue
            if pending is not None:
                yield pending[0], pending[1], False
            try:
                value = json.loads(raw) if len(raw) <= MAX_LINE_BYTES else None
            except (ValueError, RecursionError):
                value = None
            pending = (number, value if isinstance(value, dict) else None)
        if pending is not None:
            yield pending[0], pending[1], True


def _batch(path: str) -> list[VideoResult]:
    found = []
    for number, record, last in _lines(path):
        where = f"{path}:{number}"
        if record is None and last:
            warn(f"{where}: the last line is torn (a run stopped while writing it): skipped")
            continue
        if record is None or not is_result(record):
            raise UsageError(f"{where} is not a keyframe-qa result line: {path} is not a results file of ours")
        video = path_of(record["video"]) or ""
        kind = "error" if record["status"] == "error" else ("when" if "moments" in record else "ask")
        found.append(VideoResult(where, video, kind, record))
    # The newest line of a video is its state (a rerun appends): keep that one per video and settings.
    newest: dict[tuple[str, str], VideoResult] = {}
    for result in found:
        newest[(result.video, result.record.get("settings", ""))] = result
    return list(newest.values())


def _items(path: str) -> dict[str, list[dict]]:
    by_video: dict[str, list[dict]] = {}
    for number, record, last in _lines(path):
        if record is None:
            if last:
                continue
            raise UsageError(f"{path}:{number} is not an eval item line")
        by_video.setdefault(str(record.get("video")), []).append(record)
    return by_video


def _report(path: str) -> dict:
    try:
        if os.path.getsize(path) > MAX_REPORT_BYTES:
            raise UsageError(f"{path} is larger than {MAX_REPORT_BYTES >> 20} MiB: not a report of ours")
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path} is not JSON: not a keyframe-qa result") from exc
    if not isinstance(value, dict) or value.get("schema_version") != 1:
        raise UsageError(f"{path} is not a keyframe-qa result (no schema_version 1)")
    return value


def _single(path: str, report: dict) -> VideoResult:
    video = path_of(report.get("video") or {}) or ""
    if "scenes" in report and "answers" not in report:
        return VideoResult(path, video, "scenes", report)
    if "moments" in report and "query" in report:
        return VideoResult(path, video, "when", report)
    if "answers" in report and "frames" in report:
        return VideoResult(path, video, "ask", report)
    raise UsageError(f"{path} is no `ask`, `when` or `scenes` report of keyframe-qa")
