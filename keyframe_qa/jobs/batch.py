"""Batch jobs: many videos, one model load, one JSONL line per video, resumable.

Each finished video is written as one line and flushed to disk before the next starts, so an
interrupted run (Ctrl-C, kill, power loss) leaves every finished line intact; a rerun with the same
output skips videos already answered with the same settings and does the rest. Failures are
recorded as lines too and the run goes on (unless --fail-fast). While the model answers one video,
a background thread already probes and decodes the next.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Optional, Union

from ..console import Progress, counted, status
from ..engines import check_spec, engine_checkpoint
from ..engines.openai import check_server_limits
from ..errors import UsageError
from ..files.paths import OutputPath, check_output_file
from ..model.budget import check_budget_settings
from ..model.checkpoint import CheckpointInfo
from ..model.generation import resolve_generation
from ..options import check_value, default
from ..outputs.results_file import ResultsFile, check_results_file, key_path
from ..selection.select import check_request
from ..texts import readable
from .ask import AskRequest, check_texts, check_when, selection_request
from .batch_inputs import BatchItem, collect_items, distinct_items, item_request, settings_hash
from .local_runner import run_here
from .ray_runner import check_ray, run_on_ray

SUMMARY_FAILURES = 5  # failed videos named in the closing lines (all of them are in the results)


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


MANY_ITEMS = 10_000  # a batch this long shows its progress while it is checked against the results file


def batch_job(inputs: Sequence[str], template: AskRequest, output: str, **options) -> BatchSummary:
    """The `batch` command: the videos of `inputs` (files, folders, globs, manifests) answered into `output`
    (see `run_batch` for the options). Everything that can refuse the run does so before any work."""
    items, duplicates = distinct_items(collect_items(inputs))
    if duplicates:
        status(
            f"{counted(duplicates, 'input')} named a video already listed (the same file by another name, "
            f"asked the same): each is answered once"
        )
    if not template.questions and not template.find and any(not i.questions and not i.error for i in items):
        raise UsageError("give questions with -q (or --find, or a `question` column in the manifest)")
    return run_batch(items, template, output, inputs=[path for path in inputs if os.path.isfile(path)], **options)


def run_batch(
    items: Sequence[BatchItem],
    template: AskRequest,
    output: Union[str, OutputPath],
    *,
    engine=None,
    checkpoint: Optional[CheckpointInfo] = None,
    concurrency: int = default("concurrency"),
    use_ray: bool = False,
    overwrite: bool = False,
    fail_fast: bool = False,
    progress: bool = True,
    on_line: Optional[Callable[[dict], None]] = None,
    batch_size: int = default("batch_size"),
    inputs: Sequence[str] = (),
    scorer=None,
) -> BatchSummary:
    """Answer every item, appending one JSONL line per video to `output` (see results_file.py).

    The engine is built only when a video needs answering (pass `engine` to reuse one), so a rerun
    with nothing left to do loads and contacts nothing. With `concurrency` N above 1 (a server
    engine), N videos are answered at once so the server can batch them, while the next ones decode;
    each line is written as its video finishes. With `use_ray` the videos are prepared and answered
    on a Ray cluster (ray_runner.py) and this process writes the lines; resume and the rest are the same.
    With `batch_size` N above 1 (the in-process model), up to N prompts are generated together in one
    left-padded `generate` call (batching.py); greedy answers are the ones a batch size of 1 gives.
    `scorer`: --relevant's scorer, already loaded, for every video (not with `use_ray`).
    """
    if scorer is not None and use_ray:
        raise UsageError("a scorer already loaded in this process cannot be shipped to Ray workers")
    started = time.perf_counter()
    spec = template.engine
    output, checkpoint = _check_start(
        items,
        template,
        spec,
        output,
        engine=engine,
        checkpoint=checkpoint,
        concurrency=concurrency,
        use_ray=use_ray,
        batch_size=batch_size,
        inputs=inputs,
        scorer=scorer,
    )
    # Lines are held in memory until a video is answered (or the run ends): a run that fails to start
    # (a model that does not load, a server or cluster not there) leaves the results file as it was.
    with ResultsFile(output, overwrite=overwrite, hold=True) as results:
        todo = []
        # A long list takes a while to hash and match against the results file: shown like the run itself.
        checking = Progress(
            len(items), desc="checking what is done", unit="video", enabled=progress and len(items) > MANY_ITEMS
        )
        for item in items:
            request = item_request(template, item)
            settings = settings_hash(request, checkpoint.model_id)
            if (key_path(item.video), settings) not in results.finished:
                todo.append((item, request, settings))
            checking.update()
        checking.close()
        skipped = len(items) - len(todo)
        bar = Progress(len(items), initial=skipped, desc="videos", unit="video", enabled=progress)
        counts = _Tally()
        failures: list[tuple[str, str]] = []

        def finish(item: BatchItem, settings: str, record: Optional[dict], error: Optional[str]) -> bool:
            """Write one video's line; True when the run should stop (fail-fast)."""
            if error is not None or record is None:
                error = error or "no result"
                record = {"video": {"path": item.video}, "status": "error", "error": error, "settings": settings}
                counts.failed += 1
                counts.stop = counts.stop or fail_fast
                if len(failures) < SUMMARY_FAILURES:
                    failures.append((item.video, error))
            else:
                counts.done += 1
                if record.get("truncated_replies"):
                    counts.truncated += 1
                    counts.max_new_tokens = record["model"]["generation"].get("max_new_tokens")
                if (record["model"].get("time_fidelity") or {}).get("status") == "approximate":
                    counts.approximate_times += 1
                results.release()  # a video is answered: the engine is up, the file may change now
            results.write(record)
            if on_line:
                on_line(record)
            bar.set_postfix(failed=counts.failed)
            bar.update(1)
            return counts.stop

        interrupted = False
        batches: list[int] = []
        try:
            if use_ray:
                run_on_ray(todo, spec, checkpoint, finish, actors=concurrency)
            else:
                batches = run_here(todo, spec, checkpoint, engine, concurrency, finish, batch_size, scorer=scorer)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        results.release()  # the run ended (not failed to start): what it held is written
    return BatchSummary(
        total=len(items),
        done=counts.done,
        skipped=skipped,
        failed=counts.failed,
        seconds=time.perf_counter() - started,
        interrupted=interrupted,
        batches=tuple(batches),
        truncated=counts.truncated,
        max_new_tokens=counts.max_new_tokens,
        approximate_times=counts.approximate_times,
        failures=tuple(failures),
    )


@dataclass
class _Tally:
    """What a run has done so far, for its summary."""

    done: int = 0  # videos answered
    failed: int = 0  # videos that failed
    stop: bool = False  # --fail-fast met a failure
    truncated: int = 0  # videos with a reply cut at --max-new-tokens
    max_new_tokens: Optional[int] = None  # the limit those replies met
    approximate_times: int = 0  # video-mode runs told their frames' times approximately


def _check_start(
    items,
    template: AskRequest,
    spec,
    output,
    *,
    engine,
    checkpoint,
    concurrency: int,
    use_ray: bool,
    batch_size: int,
    inputs: Sequence[str],
    scorer=None,
) -> tuple[OutputPath, CheckpointInfo]:
    """Everything that can refuse a batch, in order, before any video is read or the model loads; returns the
    checked output and the model's config facts."""
    check_spec(spec)
    check_texts(template)
    check_when(template)
    # The way frames are chosen is the same for every video: refused once, here (--relevant's scorer is read
    # here too). A manifest row may bring the questions --relevant scores against.
    selection = selection_request(template)
    check_request(replace(selection, queries=selection.queries or ("each row's questions",)), scorer=scorer)
    check_value("concurrency", concurrency)
    check_batch_size(spec, batch_size, use_ray)
    if batch_size > 1 and engine is not None and not engine.can_batch:
        raise UsageError("--batch-size above 1 needs an engine that can generate a batch (the in-process model)")
    if concurrency > 1 and spec.engine != "openai" and not use_ray:
        raise UsageError(
            "--concurrency above 1 needs --engine openai (or --ray): the in-process model answers one prompt at a time"
        )
    if use_ray:
        check_ray()
    if not isinstance(output, OutputPath):
        output = check_output_file(output, "-o", [item.video for item in items] + list(inputs))
    check_results_file(output)  # a file that is not ours is refused before anything is loaded
    checkpoint = checkpoint or (engine.checkpoint if engine is not None else engine_checkpoint(spec))
    if spec.engine == "openai":
        check_server_limits(checkpoint, template.mode, template.min_pixels, template.max_pixels)
    check_budget_settings(
        checkpoint.family,
        mode=template.mode,
        min_pixels=template.min_pixels,
        max_pixels=template.max_pixels,
        max_visual_tokens=template.max_visual_tokens,
    )
    if batch_size > 1:
        _check_batchable(template, checkpoint)
    return output, checkpoint


def check_batch_size(spec, batch_size: int, use_ray: bool = False) -> None:
    """Usage errors for --batch-size, before anything is read or loaded."""
    check_value("batch_size", batch_size)
    if batch_size > 1 and (spec.engine != "transformers" or use_ray):
        raise UsageError(
            "--batch-size is for the in-process model (--engine transformers, without --ray); a "
            "server batches requests itself: use --concurrency with --engine openai"
        )


def _check_batchable(template: AskRequest, checkpoint: CheckpointInfo) -> None:
    """Refuse what a batch cannot honour: a seed gives each question its own sampled reply, and the rows
    of one batch sample together."""
    settings = resolve_generation(template.generation, checkpoint.generation_defaults, find=bool(template.find))
    if settings.do_sample and settings.seed is not None:
        raise UsageError(
            "--seed with sampling needs --batch-size 1: in a batch, the rows sample together, so a "
            "reply would depend on the videos beside it"
        )


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
        lines.append(
            f"{counted(summary.truncated, 'video')} had replies stopped at --max-new-tokens "
            f"{summary.max_new_tokens} (their lines give truncated_replies): raise --max-new-tokens to get "
            f"them whole"
        )
    if summary.approximate_times:
        were = "was" if summary.approximate_times == 1 else "were"
        lines.append(
            f"{counted(summary.approximate_times, 'video')} {were} told approximate times in video mode "
            f"(see their model.time_fidelity): use --mode images, or evenly spaced frames within its max_fps"
        )
    for video, error in summary.failures:
        lines.append(f"failed: {readable(video)}: {' '.join(error.split())[:300]}")
    if summary.failed > len(summary.failures):
        lines.append(
            f'... and {summary.failed - len(summary.failures)} more failed: their lines have "status": "error"'
        )
    lines.append(
        f"{state}{summary.done} answered, {summary.failed} failed, {summary.skipped} already done "
        f"(of {summary.total}) in {summary.seconds:.1f}s ({rate:.2f} videos/s){batched}; results {where}"
    )
    return "\n".join(lines)


def iter_lines(output: str) -> Iterable[dict]:
    """The records of a results file (for tools and tests)."""
    with open(output, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
