"""A FiftyOne video dataset of finished runs, in FiftyOne's documented `FiftyOneVideoLabelsDataset` layout
(`manifest.json`, `data/`, `labels/`: ETA VideoLabels), which `fiftyone.Dataset.from_dir(OUT,
dataset_type=fo.types.FiftyOneVideoLabelsDataset)` imports with no code of the user's own.

One sample a video; for an eval run, each pipeline's labels carry its name as a prefix. In it:
- video-level attributes, which FiftyOne imports as sample fields (Classifications): the status, the error,
  each question and its answer (`question_N`, `answer_N`), an eval item's prediction and score;
- `boxes`: the boxes of the answers as frame-level Detections on the frame numbers keyframe-qa resolved,
  relative to the displayed frame ([0, 1] corners, as FiftyOne wants), each with its question;
- `moments`: `when`'s moments as TemporalDetections whose `support` is their exact first and last frame;
- an eval run's labels beside its predictions: `ground_truth` (span items, in frames at the video's rate)
  and `ground_truth_boxes` (box items, on the item's frame), so FiftyOne's own evaluation runs on them.

FiftyOne numbers frames from 1: keyframe-qa's frame n (from 0) is FiftyOne's n + 1. The videos are not copied:
`data/` holds a link to each, named by us (a link planted under one of our names is refused, as for frames).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

from ..errors import UsageError
from ..files.paths import check_chosen_name, chosen_dir, write_chosen_name
from ..outputs.jsontext import dumps
from ..outputs.report import moments_in
from .runs import Run, VideoResult

MANIFEST_TYPE = "eta.core.datasets.labeled_datasets.LabeledVideoDataset"


def _attribute(name: str, value: object) -> dict:
    return {"type": "eta.core.data.CategoricalAttribute", "name": name, "value": str(value)}


def _object(label: str, box: Sequence[float], size: tuple[float, float], name: str, question: str = "") -> dict:
    width, height = size
    x1, y1, x2, y2 = (float(v) for v in box)
    found: dict = {
        "type": "eta.core.objects.DetectedObject",
        "label": str(label or "object"),
        "name": name,
        "bounding_box": {"top_left": {"x": x1 / width, "y": y1 / height},
                         "bottom_right": {"x": x2 / width, "y": y2 / height}},
    }  # fmt: skip
    if question:
        found["attrs"] = {"attrs": [_attribute("question", question)]}
    return found


def _event(label: str, first: int, last: int, name: str) -> dict:
    """A TemporalDetection over keyframe-qa's frames `first`..`last` (FiftyOne's are 1 more)."""
    return {"type": "eta.core.events.VideoEvent", "label": str(label), "name": name,
            "support": {"ranges": f"{first + 1}-{last + 1}"}}  # fmt: skip


def video_labels(results: Sequence[VideoResult]) -> dict:
    """The ETA VideoLabels of one video: every result about it (one per pipeline of an eval run)."""
    attrs: list[dict] = []
    frames: dict[str, dict] = {}
    events: list[dict] = []
    truths: set[str] = set()  # the eval items whose labels are in

    def add_object(number: int, found: dict) -> None:
        frame = frames.setdefault(str(number + 1), {"frame_number": number + 1, "objects": {"objects": []}})
        frame["objects"]["objects"].append(found)

    for result in results:
        prefix = f"{result.pipeline}_" if result.pipeline else ""
        record = result.record
        attrs.append(_attribute(f"{prefix}status", result.status))
        if result.error:
            attrs.append(_attribute(f"{prefix}error", result.error))
        shown = record.get("frames") or []
        for number, answer in enumerate(record.get("answers") or [], 1):
            asked = f"Find: {answer['find']}" if answer.get("find") else answer.get("question", "")
            attrs += [_attribute(f"{prefix}question_{number}", asked),
                      _attribute(f"{prefix}answer_{number}", answer.get("answer", ""))]  # fmt: skip
            for box in answer.get("boxes") or []:
                if box.get("frame") is None or not 0 <= box["frame"] < len(shown):
                    continue  # a box that cannot be tied to a frame has no frame to go on
                frame = shown[box["frame"]]
                size = (float(frame["width"]), float(frame["height"]))
                add_object(int(frame["frame_number"]), _object(box.get("label", ""), box["bbox"], size,
                                                               f"{prefix}boxes", asked))  # fmt: skip
        query = record.get("query") or (record.get("when") or {}).get("query") or "moment"
        for moment in moments_in(record):
            first, last = int(moment["first_frame"]["frame_number"]), int(moment["last_frame"]["frame_number"])
            events.append(_event(query, first, last, f"{prefix}moments"))
        fps = float((record.get("video") or {}).get("fps") or 0.0)
        for item in result.items:
            item_id = str(item.get("id"))
            if item.get("score") is not None:
                attrs.append(_attribute(f"{prefix}score_{item_id}", item["score"]))
            if item.get("prediction") is not None:
                attrs.append(_attribute(f"{prefix}prediction_{item_id}", item["prediction"]))
            truth = item.get("truth") or {}
            if item_id in truths:
                continue  # pipelines share their labels: each goes in once
            truths.add(item_id)
            if item.get("kind") == "span" and fps > 0:
                for start, end in truth.get("spans") or []:
                    first, last = (
                        round(float(start) * fps),
                        max(round(float(start) * fps), math.ceil(float(end) * fps) - 1),
                    )
                    events.append(_event(truth.get("query", "moment"), first, last, "ground_truth"))
            if item.get("kind") == "box" and truth.get("box") and item.get("frames"):
                number = int(item["frames"][0]["frame_number"])
                size = (float(truth.get("width") or 0), float(truth.get("height") or 0))
                if size[0] > 0 and size[1] > 0:
                    add_object(number, _object(truth.get("find", "object"), truth["box"], size, "ground_truth_boxes"))
    return {"attrs": {"attrs": attrs}, "frames": frames, "events": {"events": events}}


def write_dataset(run: Run, folder: str, inputs: Sequence[str]) -> int:
    """Write the dataset into `folder`; returns how many videos it holds. Results whose video is gone are
    left out with the reason (FiftyOne needs the video); an answered video that is gone is refused."""
    by_video: dict[str, list[VideoResult]] = {}
    for result in run.results:
        if result.kind == "scenes":
            continue
        by_video.setdefault(os.path.abspath(result.video), []).append(result)
    missing = [video for video, results in by_video.items() if not os.path.isfile(video)]
    answered = [video for video in missing if any(r.status == "ok" for r in by_video[video])]
    if answered:
        raise UsageError(f"{answered[0]} is not there any more: FiftyOne needs the videos it shows (found in "
                         f"{by_video[answered[0]][0].source})")  # fmt: skip
    videos = [video for video in by_video if video not in missing]
    if not videos:
        raise UsageError("no video of these results is there to export")
    os.makedirs(folder, exist_ok=True)  # the folder the user named
    for sub in ("data", "labels"):
        chosen_dir(os.path.join(folder, sub), "OUT")  # ours: never a link planted there
    index = []
    for position, video in enumerate(videos):
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in os.path.splitext(os.path.basename(video))[0])
        name = f"{position:06d}_{stem}"[:120]
        link = os.path.join(folder, "data", name + os.path.splitext(video)[1].lower())
        if os.path.islink(link) and os.readlink(link) == video:
            os.unlink(link)  # our own link from an earlier export of the same video
        check_chosen_name(link, "OUT", inputs)  # anything else under our name is refused, never replaced
        os.symlink(video, link)
        labels = dumps(video_labels(by_video[video])).encode("utf-8")  # valid Unicode, no NaN
        write_chosen_name(os.path.join(folder, "labels", name + ".json"), labels, "OUT", inputs)
        index.append({"data": f"data/{os.path.basename(link)}", "labels": f"labels/{name}.json"})
    manifest = {"type": MANIFEST_TYPE, "description": "keyframe-qa results", "index": index}
    write_chosen_name(os.path.join(folder, "manifest.json"), json.dumps(manifest, indent=2).encode("utf-8"), "OUT",
                      inputs)  # fmt: skip
    return len(videos)
