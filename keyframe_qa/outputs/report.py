"""Turning a finished request into the JSON contract, and writing files safely."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Optional

from ..records import Answer, Frame, FrameBudget, VideoInfo

if TYPE_CHECKING:  # the frames command writes reports without loading the model side
    from ..model.checkpoint import CheckpointInfo

SCHEMA_VERSION = 1


def video_record(info: VideoInfo) -> dict:
    """The `video` object: display geometry and timing, and the file's size and modification time (so that a
    viewer can tell a video that changed since the run: it shows no frames of another file)."""
    size: Optional[int] = None
    mtime: Optional[int] = None
    try:
        status = os.stat(info.path)
        size, mtime = status.st_size, status.st_mtime_ns
    except OSError:
        pass  # a video read through a path that is gone now: its identity is unknown
    return {
        "path": info.path,
        "duration": info.duration,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "frame_count": info.frame_count,
        "size_bytes": size,
        "mtime_ns": mtime,
        "index": {"source": info.index_source, "frame_numbers": info.frame_numbers, "note": info.index_note},
    }


def frame_record(frame: Frame, file: Optional[str], budget: Optional[FrameBudget] = None) -> dict:
    """One frame: what was asked, what was returned, and (with a budget) what the model saw."""
    record: dict[str, Any] = {
        "index": frame.index,
        "requested": frame.requested,
        "timestamp": frame.timestamp,
        "frame_number": frame.frame_number,
        "width": frame.width,
        "height": frame.height,
    }
    if budget is not None:
        record.update(
            input_width=budget.input_width, input_height=budget.input_height, visual_tokens=budget.visual_tokens
        )
    record["file"] = file
    if frame.scene is not None:
        record["scene"] = frame.scene
    if frame.relevance is not None:
        record["relevance"] = frame.relevance
    if frame.corrupt:
        record["corrupt"] = True  # the decoder reported errors: the picture may be visibly broken
    return record


def frame_records(
    frames: Sequence[Frame], budgets: Sequence[FrameBudget], files: Sequence[Optional[str]]
) -> list[dict]:
    """The `frames` list of an ask report."""
    return [frame_record(frame, file, budget) for frame, budget, file in zip(frames, budgets, files)]


def box_record(box) -> dict:
    """One box: [x1, y1, x2, y2] in pixels of the displayed frame `frame`."""
    return {
        "label": box.label,
        "frame": box.frame,
        "bbox": list(box.bbox),
        "kind": box.kind,
        "frame_source": box.frame_source,
    }


def answer_record(answer: Answer) -> dict:
    """One entry of `answers`; boxes in display-frame pixels. `frame` only in per-frame runs."""
    record = {
        "question": answer.question,
        "answer": answer.answer,
        "raw": answer.raw,
        "boxes": [box_record(b) for b in answer.boxes],
        "truncated": answer.truncated,
    }
    if answer.find is not None:
        record["find"] = answer.find
    if answer.frame is not None:
        record["frame"] = answer.frame
    return record


def build_report(
    info: VideoInfo,
    model: dict,
    frames: Sequence[Frame],
    budgets: Sequence[FrameBudget],
    files: Sequence[Optional[str]],
    answers: Sequence[Answer],
    timings: dict,
) -> dict:
    """The whole `ask` result object (schema_version 1)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "video": video_record(info),
        "model": model,
        "frames": frame_records(frames, budgets, files),
        "answers": [answer_record(a) for a in answers],
        "usage": usage_record(answers, budgets),
        "timings": {key: round(value, 4) for key, value in timings.items()},
    }


def usage_record(answers: Sequence[Answer], budgets: Sequence[FrameBudget]) -> dict:
    """The `usage` object: prompt, visual and generated tokens of a set of answers."""
    return {
        "prompt_tokens": sum(a.prompt_tokens for a in answers),
        "visual_tokens": sum(b.visual_tokens for b in budgets),
        "completion_tokens": sum(a.completion_tokens for a in answers),
    }


def model_record(engine, mode: str, generation) -> dict:
    """The JSON `model` object: the engine's own description, the mode, and the decoding settings."""
    described = engine.describe()
    return {
        "id": described.pop("id"),
        "family": described.pop("family"),
        "mode": mode,
        **described,
        "generation": asdict(generation),
    }


def written(report: dict, output: Optional[str] = None) -> Optional[str]:
    """ "wrote a.json, the page a.html, 3 frames in f/ and 3 annotated frames in ann/": every file a run wrote
    (the JSON when not on stdout, the HTML page, the frames saved and annotated), or None when it wrote none."""

    parts = [output] if output and output != "-" else []
    if report.get("html"):
        parts.append(f"the page {report['html']}")
    frames = report.get("frames") or []
    for key, what in (("file", "frame"), ("annotated", "annotated frame")):
        files = [f[key] for f in frames if isinstance(f, dict) and f.get(key)]
        if files:
            folders = sorted({os.path.dirname(path) or "." for path in files})
            plural = what if len(files) == 1 else what.replace("frame", "frames")
            parts.append(f"{len(files)} {plural} in {', '.join(folders)}")
    if not parts:
        return None
    return "wrote " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])


def to_json(report: dict) -> str:
    """Serialise a report the same way everywhere (valid UTF-8 whatever the file names: jsontext.py;
    readable indentation)."""
    from .jsontext import dumps

    return dumps(report, indent=2) + "\n"


def frames_index(
    info: VideoInfo, selection: dict, frames: Sequence[Frame], files: Sequence[tuple[str, tuple[int, int]]]
) -> dict:
    """The `frames.json` written by the `frames` command (files named relative to it).

    `width`/`height` are the written image's; when `--max-side` shrank it, the displayed frame's size
    is kept as `display_width`/`display_height`.
    """
    records = []
    for frame, (file, (width, height)) in zip(frames, files):
        record = frame_record(frame, os.path.basename(file))
        if (width, height) != (frame.width, frame.height):
            record.update(width=width, height=height, display_width=frame.width, display_height=frame.height)
        records.append(record)
    return {"schema_version": SCHEMA_VERSION, "video": video_record(info), "selection": selection, "frames": records}


def scenes_report(info: VideoInfo, detector: dict, scenes: Sequence, keyframes: Sequence[tuple[int, float]]) -> dict:
    """The `scenes` command's JSON: every scene with its chosen keyframe, (frame number, time) each."""
    return {
        "schema_version": SCHEMA_VERSION,
        "video": video_record(info),
        "detector": detector,
        "scenes": [
            {
                "index": scene.index,
                "start_frame": scene.start_frame,
                "end_frame": scene.end_frame,
                "start": scene.start,
                "end": scene.end,
                "keyframes": [{"frame_number": number, "timestamp": time}],
            }
            for scene, (number, time) in zip(scenes, keyframes)
        ],
    }


def scenes_csv(report: dict) -> str:
    """The scenes report as a CSV table, one scene a row."""

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "start_frame", "end_frame", "start", "end", "keyframe_frame", "keyframe_time"])
    for scene in report["scenes"]:
        keyframe = scene["keyframes"][0]
        writer.writerow(
            [
                scene["index"],
                scene["start_frame"],
                scene["end_frame"],
                f"{scene['start']:.6f}",
                f"{scene['end']:.6f}",
                keyframe["frame_number"],
                f"{keyframe['timestamp']:.6f}",
            ]
        )
    return out.getvalue()


def pixel_limits_record(
    checkpoint: CheckpointInfo, mode: str, min_pixels: Optional[int], max_pixels: Optional[int]
) -> dict:
    """The JSON `model.pixel_limits`: each per-frame limit and where it came from (option, checkpoint,
    default)."""
    from ..model.budget import pixel_limits  # the model side, only for an answered run's record

    (low, low_source), (high, high_source) = pixel_limits(
        checkpoint.family, mode, min_pixels, max_pixels, checkpoint.limits.pixels(mode)
    )
    return {"min_pixels": {"value": low, "source": low_source}, "max_pixels": {"value": high, "source": high_source}}


def moments_in(record: dict) -> list[dict]:
    """The moments a result holds: a `when` report's, or those `ask --when` found first."""
    return list(record.get("moments") or (record.get("when") or {}).get("moments") or [])


def moment_seconds(moment: dict, fps: float) -> tuple[float, float]:
    """The seconds a moment is on screen: from its first frame's time to the end of its last frame (one frame
    at the video's rate), so frames 30 to 59 at 10 fps are [3, 6], as time labels and players count."""
    shown = 1.0 / fps if fps > 0 else 0.0
    return float(moment["first_frame"]["timestamp"]), float(moment["last_frame"]["timestamp"]) + shown
