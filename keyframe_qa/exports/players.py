"""Exports for players and spreadsheets: one WebVTT file a video (the moments and the answers as cues, or a
`scenes` run as chapters), and one CSV of a row a video and question.

Times are the run's: seconds from the video's first frame, which is what players show. A moment's cue runs
from its first frame to the end of its last frame; an answer's cue from the first frame the model saw to
ANSWER_SECONDS after the last (so it stays up long enough to read). Cue text is escaped as WebVTT wants
(&, <, >; no blank line inside a cue, no "-->"). CSV cells that a spreadsheet would run as a formula (=, +, -,
@ first) are prefixed with a quote.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence

from ..outputs.report import moment_seconds, moments_in
from .runs import VideoResult

ANSWER_SECONDS = 3.0


def vtt_time(seconds: float) -> str:
    """HH:MM:SS.mmm."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _cue_text(text: str) -> str:
    lines = [line.strip() for line in str(text).replace("\r", "\n").split("\n")]
    body = "\n".join(line for line in lines if line)  # a blank line would end the cue
    body = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return body.replace("-->", "- ->") or "(empty)"


def cues(result: VideoResult) -> list[tuple[float, float, str]]:
    """(start, end, text) of every cue of one result, in time order."""
    record, found = result.record, []
    fps = float((record.get("video") or {}).get("fps") or 0.0)
    if result.kind == "scenes":
        for scene in record.get("scenes") or []:
            found.append((float(scene["start"]), float(scene["end"]), f"Scene {int(scene['index']) + 1}"))
        return found
    query = record.get("query") or (record.get("when") or {}).get("query") or "the moment"
    for number, moment in enumerate(moments_in(record), 1):
        start, end = moment_seconds(moment, fps)
        found.append((start, end, f"Moment {number}: {query}"))
    times = [float(f["timestamp"]) for f in record.get("frames") or []]
    for answer in record.get("answers") or []:
        shown = [times[answer["frame"]]] if answer.get("frame") is not None and answer["frame"] < len(times) else times
        if not shown:
            continue
        asked = f"Find: {answer['find']}" if answer.get("find") else answer.get("question", "")
        found.append((min(shown), max(shown) + ANSWER_SECONDS, f"Q: {asked}\nA: {answer.get('answer', '')}"))
    return sorted(found, key=lambda cue: (cue[0], cue[1]))


def webvtt(result: VideoResult) -> str:
    """One WebVTT file (chapters for a scenes run)."""
    kind = "chapters" if result.kind == "scenes" else "moments and answers"
    lines = ["WEBVTT", "", "NOTE", f"keyframe-qa: {kind} of {os.path.basename(result.video)}", ""]
    for number, (start, end, text) in enumerate(cues(result), 1):
        lines += [str(number), f"{vtt_time(start)} --> {vtt_time(max(end, start + 0.001))}", _cue_text(text), ""]
    return "\n".join(lines)


def vtt_names(results: Sequence[VideoResult]) -> list[str]:
    """One file name a result: the video's name with .vtt (a pipeline's name and a number where two
    would collide), never a path of its own choosing."""
    names, used = [], set()
    for result in results:
        stem = os.path.splitext(os.path.basename(result.video) or "video")[0]
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).lstrip(".") or "video"
        base = f"{stem}.{result.pipeline}" if result.pipeline else stem
        name, count = f"{base}.vtt", 1
        while name in used:
            count += 1
            name = f"{base}.{count}.vtt"
        used.add(name)
        names.append(name)
    return names


CSV_COLUMNS = ("video", "pipeline", "status", "error", "question", "answer", "truncated", "frame_times",
               "frame_numbers", "boxes", "moments", "item", "kind", "score", "prediction")  # fmt: skip


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False) if value is not None else ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(results: Sequence[VideoResult]) -> list[dict]:
    """A row a video and question (a failed video: one row with its error; an eval item: its score)."""
    rows = []
    for result in results:
        record = result.record
        frames = record.get("frames") or []
        base: dict[str, object] = {
            "video": result.video,
            "pipeline": result.pipeline or "",
            "status": result.status,
            "error": result.error or "",
            "frame_times": " ".join(f"{float(f['timestamp']):g}" for f in frames),
            "frame_numbers": " ".join(str(f["frame_number"]) for f in frames),
            "moments": " ".join(
                f"{m['first_frame']['timestamp']:g}-{m['last_frame']['timestamp']:g}" for m in moments_in(record)
            ),  # fmt: skip
        }
        answers = record.get("answers") or []
        items = {str(item.get("id")): item for item in result.items}
        if not answers:
            rows.append(base)
        for answer in answers:
            rows.append(dict(base, question=answer.get("question", ""), answer=answer.get("answer", ""),
                             truncated=str(bool(answer.get("truncated"))).lower(),
                             boxes=[{"label": b.get("label"), "frame": b.get("frame"), "bbox": b.get("bbox")}
                                    for b in answer.get("boxes") or []] or None))  # fmt: skip
        for item in items.values():
            rows.append(dict(base, item=item.get("id"), kind=item.get("kind"), score=item.get("score"),
                             prediction=item.get("prediction"), error=item.get("reason") if item.get("score") is None
                             else base["error"]))  # fmt: skip
    return rows


def csv_text(results: Sequence[VideoResult]) -> str:
    """The CSV file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(results):
        writer.writerow({key: _cell(row.get(key)) for key in CSV_COLUMNS})
    return buffer.getvalue()
