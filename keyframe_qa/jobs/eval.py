"""The `eval` job: labelled questions answered by each pipeline on the batch machinery, then scored and
compared with the baseline, item by item.

Each video's questions become one batch item per set of frames (the pipeline's, or a row's `at`), so a
video's questions share one decode and encode; a `span` row is a `--when` search of its own; a `box` row is
the grounding prompt for its `find`, at its time. Each pipeline writes `RUN_DIR/NAME.jsonl` (a batch results
file: resumable, kill-safe) and `RUN_DIR/NAME.items.jsonl` (each row's prediction, score and reason); the
summary goes to `RUN_DIR/summary.json` and, as a table, to stdout. A rerun with everything answered loads no
model and only scores again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from ..engines import build_engine, engine_checkpoint
from ..evaluation.formats import read_format
from ..evaluation.labels import LETTERS, Label, LabelError, check_labels, read_label_rows
from ..evaluation.scoring import (
    Scored,
    question_prompt,
    score_box,
    score_choice,
    score_short,
    score_span,
    score_yesno,
)
from ..evaluation.stats import RESAMPLES
from ..evaluation.summary import ItemResult, paired_summary, pipeline_summary, summary_record, summary_table
from ..exports.runs import read_runs
from ..files.paths import (
    check_chosen_name,
    check_distinct,
    check_output_dir,
    check_output_file,
    chosen_dir,
    write_chosen_name,
    write_output,
)
from ..model.checkpoint import CheckpointInfo
from ..outputs.eval_html import MAX_DISAGREEMENTS, THUMBNAIL_SIDE, disagreements, render_eval
from ..outputs.html import thumbnail
from ..outputs.jsontext import dumps
from ..outputs.report import moment_seconds, moments_in
from ..outputs.results_file import key_path
from ..replies.boxes import grounding_prompt
from ..video.frames import read_frames
from ..video.probe import probe
from .ask import AskRequest
from .batch import run_batch
from .batch_inputs import BatchItem, item_request, settings_hash
from .eval_config import load_eval_config, pipeline_requests


@dataclass(frozen=True)
class Planned:
    """Where one label is answered in a pipeline's batch: its item, and the question it is asked as."""

    item: BatchItem  # the batch item (video, frames, questions, or a --when query)
    prompt: Optional[str]  # the question put for it (None for a span: the item is the search)


@dataclass(frozen=True)
class EvalRun:
    """What `eval` did, for the CLI."""

    summary: dict  # summary.json
    table: str  # the short table for stdout
    run_dir: str  # where the files are
    failed: int  # items whose video failed in some pipeline (recorded, scored 0)


def plan_items(labels: Sequence[Label], family: str) -> tuple[list[BatchItem], dict[str, Planned]]:
    """The batch items for `labels`, and where each label is answered. Questions about the same frames of a
    video (the pipeline's, or the same `at`) are one item; each span query is one --when item."""
    questions: dict[tuple[str, Optional[tuple[float, ...]]], list[str]] = {}
    placed: dict[str, tuple[tuple, Optional[str]]] = {}
    searches: dict[tuple[str, str], BatchItem] = {}
    for label in labels:
        if label.kind == "span":
            key = (label.video, label.query or "")
            searches.setdefault(key, BatchItem(video=label.video, when=label.query))
            placed[label.id] = (("when", key), None)
            continue
        prompt = grounding_prompt(label.find or "", family, 1) if label.kind == "box" else question_prompt(label)
        frames_key = (label.video, label.at)
        asked = questions.setdefault(frames_key, [])
        if prompt not in asked:
            asked.append(prompt)
        placed[label.id] = (("ask", frames_key), prompt)
    items: dict[tuple, BatchItem] = {
        ("ask", key): BatchItem(video=key[0], times=key[1], questions=tuple(asked)) for key, asked in questions.items()
    }
    items.update({("when", key): item for key, item in searches.items()})
    plan = {label_id: Planned(items[where], prompt) for label_id, (where, prompt) in placed.items()}
    return list(items.values()), plan


def read_sources(sources: Sequence[tuple[Optional[str], str, Optional[str]]]) -> list[Label]:
    """Every label of every source (our own files, and benchmarks by their format), ids unique across all."""
    own = [file for fmt, file, _ in sources if fmt is None]
    labels, problems = read_label_rows(own)
    for fmt, file, videos in sources:
        if fmt is not None:
            labels += read_format(fmt, file, videos or "")
    check_labels(labels, ", ".join(file for _, file, _ in sources), problems)
    return labels


def check_spans(labels: Sequence[Label]) -> None:
    """Refuse span labels past their video's end (each video probed once, its header only)."""
    problems, durations = [], {}
    for label in labels:
        if label.kind != "span":
            continue
        if label.video not in durations:
            durations[label.video] = probe(label.video).info.duration
        duration = durations[label.video]
        for start, end in label.spans:
            if end > duration + 1e-6:
                problems.append(
                    f"{label.source}: span [{start:g}, {end:g}] ends after the video's end ({duration:g} s)"
                )
    if problems:
        raise LabelError(problems)


def _results(path: str) -> dict[tuple[str, str], dict]:
    """The newest line of each (video, settings) in a pipeline's results file, read as `view` and `export`
    read one (bounded lines; a torn last line is no line)."""
    if not os.path.exists(path):
        return {}
    return {(key_path(r.video), r.record["settings"]): r.record for r in read_runs([path]).results}


def _key(template: AskRequest, item: BatchItem, checkpoint: CheckpointInfo) -> tuple[str, str]:
    return key_path(item.video), settings_hash(item_request(template, item), checkpoint.model_id)


def score_item(label: Label, planned: Planned, line: Optional[dict]) -> ItemResult:
    """One label scored from its item's result line (None or an error line: not answered, scored 0)."""
    if line is None or line.get("status") != "ok":
        reason = (line or {}).get("error") or "not answered"
        return ItemResult(label, Scored(0.0, False, None, f"the video failed: {reason}"), ran=False)
    if label.kind == "span":
        fps = float(line["video"].get("fps") or 0.0)
        found = [moment_seconds(moment, fps) for moment in moments_in(line)]  # to the end of the last frame
        spans = [{"start": start, "end": end} for start, end in found]
        return ItemResult(label, score_span(label, spans, fps), ran=True)
    answer = next((a for a in line.get("answers") or [] if a.get("question") == planned.prompt), None)
    if answer is None:
        return ItemResult(label, Scored(0.0, False, None, "no answer to its question in the result"), ran=True)
    reply = answer.get("raw") or answer.get("answer") or ""
    if label.kind == "choice":
        return ItemResult(label, score_choice(label, reply), ran=True)
    if label.kind == "yesno":
        return ItemResult(label, score_yesno(label, reply), ran=True)
    if label.kind == "short":
        return ItemResult(label, score_short(label, answer.get("answer") or ""), ran=True)
    return ItemResult(label, score_box(label, answer.get("boxes") or []), ran=True)


def _cost(lines: Sequence[dict]) -> dict:
    calls = visual = prompt = 0
    wall = model = 0.0
    for line in lines:
        usage, when = line.get("usage") or {}, (line.get("when") or {}).get("usage") or {}
        calls += len(line.get("answers") or []) + int(when.get("calls") or 0)
        visual += int(usage.get("visual_tokens") or 0) + int(when.get("visual_tokens") or 0)
        prompt += int(usage.get("prompt_tokens") or 0) + int(when.get("prompt_tokens") or 0)
        timings = line.get("timings") or {}
        wall += float(timings.get("total_s") or 0.0)
        model += float(timings.get("generate_s") or 0.0)
    return {
        "calls": calls,
        "visual_tokens": visual,
        "prompt_tokens": prompt,
        "wall_s": round(wall, 3),
        "model_s": round(model, 3),
    }


def _truth(label: Label, line: Optional[dict]) -> dict:
    """What the label says is right, for the exports (FiftyOne shows labels beside predictions)."""
    if label.kind == "choice":
        return {"answer": LETTERS[label.correct or 0], "options": list(label.options)}
    if label.kind == "yesno":
        return {"answer": "yes" if label.yes else "no"}
    if label.kind == "short":
        return {"answers": list(label.answers), "match": label.match}
    if label.kind == "span":
        return {"query": label.query, "spans": [list(span) for span in label.spans]}
    frame = ((line or {}).get("frames") or [{}])[0]
    return {
        "find": label.find,
        "box": list(label.box or ()),
        "width": frame.get("width"),
        "height": frame.get("height"),
    }


def _item_record(result: ItemResult, line: Optional[dict]) -> dict:
    label, scored = result.label, result.scored
    frames = [
        {"timestamp": f.get("timestamp"), "frame_number": f.get("frame_number")}
        for f in (line or {}).get("frames") or []
    ]
    return {
        "id": label.id,
        "video": label.video,
        "kind": label.kind,
        "groups": dict(label.groups),
        "score": round(scored.score, 6),
        "answered": scored.answered,
        "prediction": scored.prediction,
        "reason": scored.reason,
        "iou": scored.iou,
        "boundary_frames": scored.boundary_frames,
        "frames": frames,
        "truth": _truth(label, line),
    }


def _skipped_record(label: Label) -> dict:
    return {
        "id": label.id,
        "video": label.video,
        "kind": label.kind,
        "groups": dict(label.groups),
        "score": None,
        "answered": False,
        "prediction": None,
        "reason": label.error,
        "iou": None,
        "boundary_frames": None,
        "frames": [],
    }


def run_eval(
    config_path: str,
    run_dir: Optional[str] = None,
    *,
    concurrency: int = 1,
    use_ray: bool = False,
    batch_size: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    engines: Optional[dict] = None,
    scorer=None,
    html: Optional[str] = None,
) -> EvalRun:
    """Run an eval config: everything checked first (the config, every label row, the checkpoints, the
    outputs), then each pipeline's batch, then the scores. `engines` (pipeline name -> engine) answers
    with engines already made, `scorer` with a --relevant scorer already loaded (tests, and stand-ins)."""
    config = load_eval_config(config_path)
    sources = config.label_sources(config_path)
    labels = read_sources(sources)
    label_paths = [file for _, file, _ in sources]
    templates = pipeline_requests(config, config_path)
    # A benchmark's row whose video is not here is that row's error: counted, not run, not scored.
    skipped = [label for label in labels if label.error is not None]
    labels = [label for label in labels if label.error is None]
    check_spans(labels)
    checkpoints: dict[str, CheckpointInfo] = {}
    for name, template in templates.items():
        given = (engines or {}).get(name)
        checkpoints[name] = given.checkpoint if given is not None else engine_checkpoint(template.engine)
    if run_dir:
        folder = check_output_dir(run_dir, "-o")
    else:  # the config's name with -run: a name we chose, so never a link planted under it
        folder = chosen_dir(os.path.abspath(os.path.splitext(config_path)[0] + "-run"), "-o")
    inputs = [config_path, *label_paths]
    # The run folder's files are named by us: a link or anything but a file of ours under a name is refused.
    item_files = {name: os.path.join(folder, f"{name}.items.jsonl") for name in templates}
    summary_file = os.path.join(folder, "summary.json")
    chosen = [*(os.path.join(folder, f"{name}.jsonl") for name in templates), *item_files.values(), summary_file]
    for path in chosen:
        check_chosen_name(path, "-o", inputs)
    outputs = {name: check_output_file(os.path.join(folder, f"{name}.jsonl"), "-o", inputs) for name in templates}
    page = check_output_file(html, "--html", inputs) if html else None
    check_distinct([*outputs.values(), page])
    made: dict = {}  # one engine per distinct spec: a model loads once for every pipeline that uses it
    results: dict[str, list[ItemResult]] = {}
    costs: dict[str, dict] = {}
    item_records: dict[str, list[dict]] = {}
    failed = 0
    for name, template in templates.items():
        checkpoint = checkpoints[name]
        items, plan = plan_items(labels, checkpoint.family.name)
        output = outputs[name]
        done = _results(output.file) if not overwrite else {}
        todo = [item for item in items if done.get(_key(template, item, checkpoint), {}).get("status") != "ok"]
        if todo or overwrite:
            engine = (engines or {}).get(name)
            if engine is None and not use_ray:
                engine = made.get(template.engine) or build_engine(template.engine, checkpoint)
                made[template.engine] = engine
            ran = run_batch(
                items,
                template,
                output,
                engine=engine,
                checkpoint=checkpoint,
                concurrency=concurrency,
                use_ray=use_ray,
                batch_size=batch_size,
                overwrite=overwrite,
                progress=progress,
                inputs=inputs,
                scorer=scorer,
            )
            if ran.interrupted:  # what was answered is written; a rerun goes on from there
                raise KeyboardInterrupt
        lines = _results(output.file)
        scored, records, used = [], [], []
        for label in labels:
            line = lines.get(_key(template, plan[label.id].item, checkpoint))
            result = score_item(label, plan[label.id], line)
            scored.append(result)
            records.append(_item_record(result, line))
        records += [_skipped_record(label) for label in skipped]
        for item in items:
            line = lines.get(_key(template, item, checkpoint))
            if line is not None and line.get("status") == "ok":
                used.append(line)
        failed += sum(1 for r in scored if not r.ran)
        text = "".join(dumps(record) + "\n" for record in records)
        write_chosen_name(item_files[name], text.encode("utf-8"), "-o", inputs)
        results[name], costs[name], item_records[name] = scored, _cost(used), records
    baseline = config.baseline_name
    pipelines = {name: pipeline_summary(results[name], costs[name], seed=config.seed) for name in templates}
    for record in pipelines.values():
        record["missing_videos"] = len({label.video for label in skipped})
        record["skipped_items"] = len(skipped)
    paired = {
        name: paired_summary(results[baseline], results[name], baseline, seed=config.seed)
        for name in templates
        if name != baseline
    }
    summary = summary_record(pipelines, paired, baseline, resamples=RESAMPLES, seed=config.seed)
    write_chosen_name(summary_file, (dumps(summary, indent=2) + "\n").encode("utf-8"), "-o", inputs)
    if page is not None:
        write_output(page, render_eval(config_path, summary, item_records, _thumbnails(item_records)))
    return EvalRun(summary, summary_table(summary), folder, failed)


def _thumbnails(items: dict[str, list[dict]]) -> dict[tuple[str, float], str]:
    """A small picture of every frame the page's disagreements show, each video probed and read once."""
    wanted: dict[str, set[float]] = {}
    for _, found in disagreements(items)[:MAX_DISAGREEMENTS]:
        for record in found.values():
            wanted.setdefault(record["video"], set()).update(f["timestamp"] for f in record["frames"])
    pictures = {}
    for video, times in wanted.items():
        ordered = sorted(times)
        for time_shown, frame in zip(ordered, read_frames(probe(video), ordered)):
            pictures[(video, time_shown)] = thumbnail(frame.image, side=THUMBNAIL_SIDE)
    return pictures
