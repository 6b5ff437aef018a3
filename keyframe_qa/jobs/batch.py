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
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterable, Optional, Sequence, Union

from ..model.budget import check_budget_settings
from ..model.checkpoint import CheckpointInfo
from ..engines import build_engine, engine_checkpoint
from ..errors import KeyframeQAError, ModelError, OutOfMemory, UsageError
from ..video.frames import cpu_count
from ..outputs.jsontext import readable
from ..console import Progress
from ..outputs.paths import OutputPath, check_output_file
from .ask import AskRequest, PreparedVideo, answer_prepared, engine_spec, prepare
from ..outputs.results_file import ResultsFile, finished_keys, key_path  # noqa: F401 - finished_keys is public API
from ..selection.select import SelectionRequest
from ..timecodes import parse_time_list

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                    ".wmv", ".flv", ".3gp", ".ogv"}
MANIFEST_EXTENSIONS = {".csv", ".jsonl"}
PREFETCH = 2  # videos decoded ahead of the model
MAX_MANIFEST_ROW_BYTES = 16 * 1024 * 1024  # far above any real row (a 10 MB question is refused later, by size)
SUMMARY_FAILURES = 5  # failed videos named in the closing lines (all of them are in the results)


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
    batches: tuple[int, ...] = ()  # --batch-size above 1: the prompt rows of each generate call, in order
    truncated: int = 0  # videos with a reply cut at --max-new-tokens (each line says how many)
    max_new_tokens: Optional[int] = None  # the reply limit they met
    failures: tuple[tuple[str, str], ...] = ()  # (video, error) of the first failures, for the summary
    approximate_times: int = 0  # videos (video mode) whose model was told approximate times


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
    """Rows of a .csv (header: video, at, question) or .jsonl manifest; paths relative to it.

    A row is read up to MAX_MANIFEST_ROW_BYTES: a longer one is that row's error line, never held whole."""
    base = os.path.dirname(os.path.abspath(path))
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which must not join the header.
        with open(path, encoding="utf-8-sig", newline="") as handle:
            if path.lower().endswith(".csv"):
                csv.field_size_limit(MAX_MANIFEST_ROW_BYTES)
                rows = list(csv.DictReader(handle))
            else:
                rows = list(_jsonl_rows(handle))
    except (OSError, ValueError, csv.Error) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from exc
    items = []
    for number, row in enumerate(rows, start=1):
        if isinstance(row, _TooLong):
            items.append(BatchItem(video=f"{path}#row{number}", error=f"{path} row {number}: longer than "
                                   f"{MAX_MANIFEST_ROW_BYTES // (1024 * 1024)} MiB"))
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
    request = replace(template, video=item.video, questions=item.questions or template.questions, times=None)
    if item.times is not None:
        request = replace(request, selection=SelectionRequest(times=item.times))
    return request


def settings_hash(request: AskRequest, model_id: str) -> str:
    """A short hash of everything that shapes a video's answer (not the video itself)."""
    settings = asdict(request)
    settings.pop("video")
    # Where files go, and where the server lives and how long to wait for it, do not change the answer.
    for key in ("save_frames", "annotate", "html", "output", "base_url", "api_key_env", "timeout"):
        settings.pop(key, None)
    settings["selection"].pop("show_progress", None)
    settings["selection"].pop("use_cache", None)
    settings["model_id"] = model_id
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_batch(items: Sequence[BatchItem], template: AskRequest, output: Union[str, OutputPath], *, engine=None,
              checkpoint: Optional[CheckpointInfo] = None, concurrency: int = 1, use_ray: bool = False,
              overwrite: bool = False, fail_fast: bool = False, progress: bool = True,
              on_line: Optional[Callable[[dict], None]] = None, batch_size: int = 1) -> BatchSummary:
    """Answer every item, appending one JSONL line per video to `output` (see results_file.py).

    The engine is built only when a video needs answering (pass `engine` to reuse one), so a rerun
    with nothing left to do loads and contacts nothing. With `concurrency` N above 1 (a server
    engine), N videos are answered at once so the server can batch them, while the next ones decode;
    each line is written as its video finishes. With `use_ray` the videos are prepared and answered
    on a Ray cluster (scale.py) and this process writes the lines; resume and the rest are the same.
    With `batch_size` N above 1 (the in-process model), up to N prompts are generated together in one
    left-padded `generate` call (batching.py); greedy answers are the ones a batch size of 1 gives.
    """
    started = time.perf_counter()
    spec = engine_spec(template)
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    check_batch_size(spec, batch_size, use_ray)
    if batch_size > 1 and engine is not None and not hasattr(engine, "answer_batch"):
        raise UsageError("--batch-size above 1 needs an engine that can generate a batch (the in-process model)")
    if concurrency > 1 and spec.engine != "openai" and not use_ray:
        raise UsageError("--concurrency above 1 needs --engine openai (or --ray): the in-process model answers "
                         "one prompt at a time")
    if use_ray:
        from .ray_runner import check_ray

        check_ray()
    if not isinstance(output, OutputPath):
        output = check_output_file(output, "-o", [item.video for item in items])
    checkpoint = checkpoint or (engine.checkpoint if engine is not None else engine_checkpoint(spec))
    if spec.engine == "openai":
        from ..answering import check_server_limits
        from .ask import answer_options, generation_settings

        check_server_limits(answer_options(template, generation_settings(template, checkpoint)), checkpoint)
    check_budget_settings(checkpoint.family, mode=template.mode, min_pixels=template.min_pixels,
                          max_pixels=template.max_pixels, max_visual_tokens=template.max_visual_tokens)
    if batch_size > 1:
        _check_batchable(template, checkpoint)
    # Lines are held in memory until a video is answered (or the run ends): a run that fails to start
    # (a model that does not load, a server or cluster not there) leaves the results file as it was.
    with ResultsFile(output, overwrite=overwrite, hold=True) as results:
        todo = []
        for item in items:
            request = item_request(template, item)
            settings = settings_hash(request, checkpoint.model_id)
            if (key_path(item.video), settings) not in results.finished:
                todo.append((item, request, settings))
        skipped = len(items) - len(todo)
        bar = Progress(len(items), initial=skipped, desc="videos", unit="video", enabled=progress)
        counts = {"done": 0, "failed": 0, "stop": False, "truncated": 0, "max_new_tokens": None,
                  "approximate_times": 0}
        failures: list[tuple[str, str]] = []

        def finish(item: BatchItem, settings: str, record: Optional[dict], error: Optional[str]) -> bool:
            """Write one video's line; True when the run should stop (fail-fast)."""
            if error is not None:
                record = {"video": {"path": item.video}, "status": "error", "error": error, "settings": settings}
                counts["failed"] += 1
                counts["stop"] = counts["stop"] or fail_fast
                if len(failures) < SUMMARY_FAILURES:
                    failures.append((item.video, error))
            else:
                counts["done"] += 1
                if record.get("truncated_replies"):
                    counts["truncated"] += 1
                    counts["max_new_tokens"] = record["model"]["generation"].get("max_new_tokens")
                if (record["model"].get("time_fidelity") or {}).get("status") == "approximate":
                    counts["approximate_times"] += 1
                results.release()  # a video is answered: the engine is up, the file may change now
            results.write(record)
            if on_line:
                on_line(record)
            bar.set_postfix(failed=counts["failed"])
            bar.update(1)
            return counts["stop"]

        interrupted = False
        batches: list[int] = []
        try:
            if use_ray:
                from .ray_runner import run_on_ray

                run_on_ray(todo, spec, checkpoint, finish, actors=concurrency)
            else:
                batches = _run_here(todo, spec, checkpoint, engine, concurrency, finish, batch_size)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        results.release()  # the run ended (not failed to start): what it held is written
    return BatchSummary(total=len(items), done=counts["done"], skipped=skipped, failed=counts["failed"],
                        seconds=time.perf_counter() - started, interrupted=interrupted, batches=tuple(batches),
                        truncated=counts["truncated"], max_new_tokens=counts["max_new_tokens"],
                        approximate_times=counts["approximate_times"],
                        failures=tuple(failures))


def check_batch_size(spec, batch_size: int, use_ray: bool = False) -> None:
    """Usage errors for --batch-size, before anything is read or loaded."""
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if batch_size > 1 and (spec.engine != "transformers" or use_ray):
        raise UsageError("--batch-size is for the in-process model (--engine transformers, without --ray); a "
                         "server batches requests itself: use --concurrency with --engine openai")


def _check_batchable(template: AskRequest, checkpoint: CheckpointInfo) -> None:
    """Refuse what a batch cannot honour: a seed gives each question its own sampled reply, and the rows
    of one batch sample together."""
    from ..model.generation import resolve_generation
    from .ask import generation_request

    settings = resolve_generation(generation_request(template), checkpoint.generation_defaults,
                                  find=bool(template.find))
    if settings.do_sample and settings.seed is not None:
        raise UsageError("--seed with sampling needs --batch-size 1: in a batch, the rows sample together, so a "
                         "reply would depend on the videos beside it")


def _run_here(todo: list, spec, checkpoint: CheckpointInfo, engine, concurrency: int, finish: Callable,
              batch_size: int = 1) -> list[int]:
    """This process decodes ahead on a thread pool and answers (up to `concurrency` at once, or with
    `batch_size` above 1, that many videos on worker threads whose prompts are generated together).

    Returns the rows of each batch generated (empty unless `batch_size` is above 1)."""
    if batch_size > 1:
        concurrency = batch_size
    state = {"stop": False, "engine": engine, "batch_size": batch_size}

    def done(item, settings, record, error) -> None:
        state["stop"] = finish(item, settings, record, error)  # finish's answer stays True once it is

    prepare_pool = ThreadPoolExecutor(max_workers=1 if concurrency == 1 else min(concurrency, cpu_count()))
    answer_pool = ThreadPoolExecutor(max_workers=concurrency) if concurrency > 1 else None
    pending: deque[Future] = deque()  # prepared videos, in input order
    running: set[Future] = set()  # answers in flight (concurrency above 1)
    upcoming = iter(todo)

    def top_up() -> None:
        while len(pending) < PREFETCH + concurrency:
            entry = next(upcoming, None)
            if entry is None:
                return
            pending.append(prepare_pool.submit(prepare_item, entry, checkpoint))

    def collect(block: bool) -> None:
        if not running:
            return
        finished, _ = wait(running, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in finished:
            running.discard(future)
            done(*future.result())  # a ModelError stops the batch here

    try:
        top_up()
        while pending and not state["stop"]:
            if answer_pool is not None:
                while len(running) >= concurrency:
                    collect(block=True)
            # Batching: every free worker's video is started together (decoding runs ahead, so they are
            # usually ready), so their prompts meet in one batch instead of the first running alone.
            slots = concurrency - len(running) if batch_size > 1 else 1
            group = []
            while pending and len(group) < slots:
                group.append(pending.popleft().result())
            top_up()  # the next videos decode while these are answered
            ready = []
            for item, settings, prepared, error in group:
                if error is not None:
                    done(item, settings, None, error)
                else:
                    ready.append((item, settings, prepared))
            if state["stop"] or not ready:
                continue
            engine_now = _engine(state, spec, checkpoint)
            if answer_pool is None:
                for entry in ready:
                    done(*answer_item(*entry, engine_now))
                continue
            if batch_size > 1:
                for _ in ready:
                    engine_now.join()  # all counted before the first of them asks
            answer = _answer_as_worker if batch_size > 1 else answer_item
            for entry in ready:
                running.add(answer_pool.submit(answer, *entry, engine_now))
            collect(block=False)
        while running:  # what is in flight is finished and written, fail-fast or not
            collect(block=True)
    finally:
        for future in list(pending) + list(running):
            future.cancel()
        prepare_pool.shutdown(wait=False, cancel_futures=True)
        if answer_pool is not None:
            answer_pool.shutdown(wait=False, cancel_futures=True)
    return list(getattr(state["engine"], "batches", []))


def _engine(state: dict, spec, checkpoint: CheckpointInfo):
    # Built on the first video that needs answering; the next videos keep decoding meanwhile.
    if state["engine"] is None:
        state["engine"] = build_engine(spec, checkpoint)
    if state["batch_size"] > 1:
        from ..engines.batching import BatchingEngine

        if not isinstance(state["engine"], BatchingEngine):
            state["engine"] = BatchingEngine(state["engine"], state["batch_size"])
    return state["engine"]


def _answer_as_worker(item: BatchItem, settings: str, prepared: PreparedVideo, engine) -> tuple:
    """`answer_item` on a worker thread joined to a BatchingEngine; it leaves when done, so batches never
    wait for it in vain."""
    try:
        return answer_item(item, settings, prepared, engine)
    finally:
        engine.leave()


def answer_item(item: BatchItem, settings: str, prepared: PreparedVideo, engine) -> tuple:
    """(item, settings, record, error) for one prepared video; a ModelError is raised, not recorded."""
    try:
        report = answer_prepared(prepared, engine, warn_cut=False)
        cut = sum(1 for answer in report["answers"] if answer.get("truncated"))
        return item, settings, dict(report, status="ok", settings=settings, truncated_replies=cut), None
    except OutOfMemory as exc:
        return item, settings, None, str(exc)  # this video's frames, even at half the budget: the rest may fit
    except ModelError:
        raise  # the model or server is broken for every video: stop the batch
    except KeyframeQAError as exc:
        return item, settings, None, str(exc)


def prepare_item(entry, checkpoint: CheckpointInfo) -> tuple[BatchItem, str, Optional[PreparedVideo], Optional[str]]:
    """(item, settings, prepared video or None, error or None) for one batch entry; never raises for a video."""
    item, request, settings = entry
    if item.error:
        return item, settings, None, item.error
    try:
        return item, settings, prepare(request, checkpoint, quiet=True), None
    except KeyframeQAError as exc:
        return item, settings, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad video must not end the batch
        return item, settings, None, f"unexpected {type(exc).__name__}: {exc}"


def summary_line(summary: BatchSummary, output: str) -> str:
    """The closing line on stderr."""
    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    state = "interrupted: " if summary.interrupted else ""
    where = "on standard output" if output in ("-", "/dev/stdout") else f"in {output}"
    batched = ""
    if summary.batches:
        mean = sum(summary.batches) / len(summary.batches)
        batched = f"; {len(summary.batches)} generate batches of {mean:.1f} prompts on average"
    lines = []  # the details first: the closing line stays the last
    if summary.truncated:
        lines.append(f"{summary.truncated} video(s) had replies stopped at --max-new-tokens "
                     f"{summary.max_new_tokens} (their lines give truncated_replies): raise --max-new-tokens to get "
                     f"them whole")
    if summary.approximate_times:
        lines.append(f"{summary.approximate_times} video(s) were told approximate times in video mode (see their "
                     f"model.time_fidelity): use --mode images, or evenly spaced frames within its max_fps")
    for video, error in summary.failures:
        lines.append(f"failed: {readable(video)}: {' '.join(error.split())[:300]}")
    if summary.failed > len(summary.failures):
        lines.append(f"... and {summary.failed - len(summary.failures)} more failed: their lines have "
                     f"\"status\": \"error\"")
    lines.append(f"{state}{summary.done} answered, {summary.failed} failed, {summary.skipped} already done "
                 f"(of {summary.total}) in {summary.seconds:.1f}s ({rate:.2f} videos/s){batched}; results {where}")
    return "\n".join(lines)


def iter_lines(output: str) -> Iterable[dict]:
    """The records of a results file (for tools and tests)."""
    with open(output, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
