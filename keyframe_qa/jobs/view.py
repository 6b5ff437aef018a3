"""The `view` job: one static page of every video of finished runs (outputs/viewer.py), with the frames each
row's model saw decoded again, exactly, at the recorded times, as thumbnail files beside the page.

A video that has moved or changed since the run (its size or modification time differs from the recorded
ones) gets its row with a note and no thumbnails: it never shows frames of another file. Thumbnails are made
for the first `limit` results (the table lists every row); their names are ours, written with the same rules
as frame files (a planted link or a file that is not ours under one of them stops the run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import KeyframeQAError, UsageError
from ..exports.runs import VideoResult, read_runs
from ..files.paths import (
    check_output_dir,
    check_output_file,
    chosen_dir,
    write_output,
)
from ..options import check_value, default
from ..outputs.images import write_frame_file
from ..outputs.report import moment_seconds, moments_in
from ..outputs.viewer import render_viewer
from ..video.frames import read_frames
from ..video.probe import probe

THUMB_SIDE = 320  # pixels on a thumbnail's longer side: a strip of them fits a screen; never enlarged


@dataclass(frozen=True)
class ViewSummary:
    """What `view` wrote, for the status line."""

    rows: int  # rows on the page
    thumbnails: int  # thumbnail files written
    page_bytes: int  # the page's size
    seconds: float  # the time it took


def _unchanged(result: VideoResult) -> str:
    """ "" when the video is the one the run read, else why not (the row's note)."""
    recorded = result.record.get("video") or {}
    try:
        status = os.stat(result.video)
    except OSError:
        return "the video is not there any more: no frames shown"
    size, mtime = recorded.get("size_bytes"), recorded.get("mtime_ns")
    if size is None and mtime is None:
        return "the run did not record the video's size and time: no frames shown (it could be another file)"
    if (size is not None and size != status.st_size) or (mtime is not None and mtime != status.st_mtime_ns):
        return "the video changed since the run (size or modification time): no frames shown"
    return ""


def _row(position: int, result: VideoResult) -> dict:
    record = result.record
    video = record.get("video") or {}
    frames = record.get("frames") or []
    answers = []
    boxes_by_frame: dict[int, list] = {}
    for answer in record.get("answers") or []:
        asked = f"Find: {answer['find']}" if answer.get("find") else answer.get("question", "")
        answers.append({"q": asked, "a": answer.get("answer", "")})
        for box in answer.get("boxes") or []:
            if box.get("frame") is not None:
                boxes_by_frame.setdefault(int(box["frame"]), []).append(
                    {"label": box.get("label"), "bbox": box["bbox"]}
                )
    fields = {}
    for item in result.items:
        fields.update({str(key): str(value) for key, value in (item.get("groups") or {}).items()})
    fps = float(video.get("fps") or 0.0)
    return {
        "id": position,
        "name": os.path.basename(result.video),
        "video": result.video,
        "pipeline": result.pipeline,
        "status": result.status,
        "error": result.error,
        "note": None,
        "kind": result.kind,
        "duration": video.get("duration"),
        "answers": answers,
        "moments": [list(moment_seconds(m, fps)) for m in moments_in(record)],
        "curve": (record.get("selection") or {}).get("curve"),
        "fields": fields,
        "disagree": False,
        "frames": [
            {
                "t": f["timestamp"],
                "n": f["frame_number"],
                "w": f["width"],
                "h": f["height"],
                "thumb": None,
                "boxes": boxes_by_frame.get(i, []),
            }
            for i, f in enumerate(frames)
        ],
    }


def _mark_disagreements(results: Sequence[VideoResult], rows: list[dict]) -> None:
    """An eval video whose items score differently in its pipelines is marked in every pipeline's row."""
    scores: dict[str, dict[str, set]] = {}
    for result in results:
        for item in result.items:
            if item.get("score") is not None:
                scores.setdefault(str(item.get("id")), {}).setdefault("scores", set()).add(round(item["score"], 6))
                scores[str(item.get("id"))].setdefault("videos", set()).add(result.video)
    disagreeing = {video for entry in scores.values() if len(entry["scores"]) > 1 for video in entry["videos"]}
    for row in rows:
        row["disagree"] = row["video"] in disagreeing and row["pipeline"] is not None


def view_job(paths: Sequence[str], page: str, thumbs: str | None = None, limit: int = default("limit")) -> ViewSummary:
    """Write the page of the runs at `paths` to `page`, its thumbnails into `thumbs` (default: the page's name
    with _files). Everything is read and checked before anything is written."""
    check_value("limit", limit)
    started = time.perf_counter()
    run = read_runs(paths)
    if not run.results:
        raise UsageError(f"{', '.join(paths)}: no results to show")
    inputs = [*run.inputs, *paths]
    target = check_output_file(page, "--html", inputs)
    if target.is_stdout:
        raise UsageError("--html needs a file: the page's thumbnails go in a folder beside it")
    folder_given = thumbs or os.path.splitext(page)[0] + "_files"
    page_dir = os.path.dirname(os.path.abspath(page))
    rows = [_row(position, result) for position, result in enumerate(run.results)]
    _mark_disagreements(run.results, rows)
    written = 0
    folder = None
    for position, (result, row) in enumerate(zip(run.results, rows)):
        if not row["frames"]:
            continue
        note = _unchanged(result)
        if note:
            row["note"] = note
            continue
        if position >= limit:
            row["note"] = f"frames are shown for the first {limit} rows (--limit)"
            continue
        if folder is None:
            if thumbs:  # the folder the user named
                folder = check_output_dir(thumbs, "--thumbs")
                os.makedirs(folder, exist_ok=True)
            else:  # the page's name with _files: a name we chose, so never a link planted under it
                folder = chosen_dir(os.path.abspath(folder_given), "--thumbs")
        try:
            pictures = read_frames(
                probe(result.video), [f["t"] for f in row["frames"]], requested=[None] * len(row["frames"])
            )
        except KeyframeQAError as exc:
            row["note"] = f"its frames could not be read again: {exc}"
            continue
        for frame, picture in zip(row["frames"], pictures):
            # The frames command's writer: its names (a row's suffix on each), its safe-name rules, its JPEG.
            name, _ = write_frame_file(
                picture,
                folder,
                image_format="jpg",
                quality=90,
                max_side=THUMB_SIDE,
                suffix=f"_row{position:06d}",
                option="--thumbs",
                inputs=inputs,
            )
            frame["thumb"] = os.path.relpath(name, page_dir).replace(os.sep, "/")
            written += 1
    title = "keyframe-qa: " + ", ".join(os.path.basename(os.path.normpath(p)) for p in paths)
    text = render_viewer(title, rows, run.summaries)
    write_output(target, text)
    return ViewSummary(len(rows), written, len(text.encode("utf-8")), time.perf_counter() - started)
