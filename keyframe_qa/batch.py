"""Batch jobs: many videos, one model load, one JSONL line per video, resumable.

Each finished video is written as one line and flushed to disk before the next starts, so an
interrupted run (Ctrl-C, kill, power loss) leaves every finished line intact; a rerun with the same
output skips videos already answered with the same settings and does the rest. Failures are
recorded as lines too and the run goes on (unless --fail-fast). While the model answers one video,
a background thread already probes and decodes the next.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterable, Optional, Sequence, Union

from .budget import check_budget_settings
from .checkpoint import CheckpointInfo, inspect_checkpoint
from .errors import KeyframeQAError, ModelError, UsageError
from .messages import Progress
from .outputs import OutputPath, check_output_file
from .pipeline import AskRequest, PreparedVideo, answer_prepared, load_model, prepare
from .results_file import ResultsFile, finished_keys, key_path  # noqa: F401 - finished_keys is public API
from .selection import SelectionRequest
from .timecodes import parse_time_list

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                    ".wmv", ".flv", ".3gp", ".ogv"}
MANIFEST_EXTENSIONS = {".csv", ".jsonl"}
PREFETCH = 2  # videos decoded ahead of the model


@dataclass(frozen=True)
class BatchItem:
    """One video to answer, with the per-video settings a manifest may give."""

    video: str
    times: Optional[tuple[float, ...]] = None  # manifest `at`
    questions: tuple[str, ...] = ()  # manifest `question(s)`; empty: the batch's questions
    error: Optional[str] = None  # a manifest row that could not be read: recorded, not run


@dataclass(frozen=True)
class BatchSummary:
    """How a batch run ended."""

    total: int
    done: int  # answered in this run
    skipped: int  # already answered with the same settings (resume)
    failed: int
    seconds: float
    interrupted: bool = False


def collect_items(inputs: Sequence[str]) -> list[BatchItem]:
    """Videos from files, folders (recursive, by extension), globs and manifests, in a stable order."""
    items: list[BatchItem] = []
    for raw in inputs:
        path = os.path.expanduser(raw)
        if os.path.isdir(path):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                           if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS)
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
        raise UsageError("no videos found in the inputs (folders are searched for " +
                         ", ".join(sorted(VIDEO_EXTENSIONS)) + ")")
    return items


def read_manifest(path: str) -> list[BatchItem]:
    """Rows of a .csv (header: video, at, question) or .jsonl manifest; paths relative to it."""
    base = os.path.dirname(os.path.abspath(path))
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which must not join the header.
        with open(path, encoding="utf-8-sig", newline="") as handle:
            if path.lower().endswith(".csv"):
                rows = list(csv.DictReader(handle))
            else:
                rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError, csv.Error) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from exc
    items = []
    for number, row in enumerate(rows, start=1):
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
    return items


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
    request = replace(template, video=item.video, questions=item.questions or template.questions, times=None)
    if item.times is not None:
        request = replace(request, selection=SelectionRequest(times=item.times))
    return request


def settings_hash(request: AskRequest, model_id: str) -> str:
    """A short hash of everything that shapes a video's answer (not the video itself)."""
    settings = asdict(request)
    settings.pop("video")
    for key in ("save_frames", "annotate", "html", "output"):
        settings.pop(key, None)  # where files go does not change the answer
    settings["selection"].pop("show_progress", None)
    settings["selection"].pop("use_cache", None)
    settings["model_id"] = model_id
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_batch(items: Sequence[BatchItem], template: AskRequest, output: Union[str, OutputPath], *, model=None,
              checkpoint: Optional[CheckpointInfo] = None, overwrite: bool = False, fail_fast: bool = False,
              progress: bool = True, on_line: Optional[Callable[[dict], None]] = None) -> BatchSummary:
    """Answer every item, appending one JSONL line per video to `output` (see results_file.py).

    The model is loaded only when a video needs answering (pass `model` to reuse a loaded one), so a
    rerun with nothing left to do loads nothing.
    """
    started = time.perf_counter()
    if not isinstance(output, OutputPath):
        output = check_output_file(output, "-o", [item.video for item in items])
    checkpoint = checkpoint or (model.checkpoint if model is not None else inspect_checkpoint(template.model_id))
    check_budget_settings(checkpoint.family, mode=template.mode, min_pixels=template.min_pixels,
                          max_pixels=template.max_pixels, max_visual_tokens=template.max_visual_tokens)
    with ResultsFile(output, overwrite=overwrite) as results:
        todo = []
        for item in items:
            request = item_request(template, item)
            settings = settings_hash(request, checkpoint.model_id)
            if (key_path(item.video), settings) not in results.finished:
                todo.append((item, request, settings))
        skipped = len(items) - len(todo)
        bar = Progress(len(items), initial=skipped, desc="videos", unit="video", enabled=progress)
        done = failed = 0
        interrupted = False
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: list[Future] = []
            upcoming = iter(todo)

            def top_up():
                while len(pending) < PREFETCH:
                    entry = next(upcoming, None)
                    if entry is None:
                        return
                    pending.append(pool.submit(_prepare, entry, checkpoint))

            try:
                top_up()
                while pending:
                    item, settings, prepared, error = pending.pop(0).result()
                    top_up()  # the next videos decode while this one is answered
                    if error is None:
                        if model is None:  # first video to answer: load now (the next ones keep decoding)
                            model = load_model(template.model_id, device=template.device, dtype=template.dtype,
                                               checkpoint=checkpoint)
                        try:
                            record = dict(answer_prepared(prepared, model), status="ok", settings=settings)
                        except ModelError:
                            raise  # the model is broken for every video: stop the batch
                        except KeyframeQAError as exc:
                            error = str(exc)
                    if error is not None:
                        record = {"video": {"path": item.video}, "status": "error", "error": error,
                                  "settings": settings}
                        failed += 1
                    else:
                        done += 1
                    results.write(record)
                    if on_line:
                        on_line(record)
                    bar.set_postfix(failed=failed)
                    bar.update(1)
                    if error is not None and fail_fast:
                        break
            except KeyboardInterrupt:
                interrupted = True
            finally:
                for future in pending:
                    future.cancel()
                bar.close()
    return BatchSummary(total=len(items), done=done, skipped=skipped, failed=failed,
                        seconds=time.perf_counter() - started, interrupted=interrupted)


def _prepare(entry, checkpoint: CheckpointInfo) -> tuple[BatchItem, str, Optional[PreparedVideo], Optional[str]]:
    item, request, settings = entry
    if item.error:
        return item, settings, None, item.error
    try:
        return item, settings, prepare(request, checkpoint), None
    except KeyframeQAError as exc:
        return item, settings, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad video must not end the batch
        return item, settings, None, f"unexpected {type(exc).__name__}: {exc}"


def summary_line(summary: BatchSummary, output: str) -> str:
    """The closing line on stderr."""
    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    state = "interrupted: " if summary.interrupted else ""
    where = "on standard output" if output in ("-", "/dev/stdout") else f"in {output}"
    return (f"{state}{summary.done} answered, {summary.failed} failed, {summary.skipped} already done "
            f"(of {summary.total}) in {summary.seconds:.1f}s ({rate:.2f} videos/s); results {where}")


def iter_lines(output: str) -> Iterable[dict]:
    """The records of a results file (for tools and tests)."""
    with open(output, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
