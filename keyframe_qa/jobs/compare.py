"""Before/after comparisons from a config: two frames, labelled BEFORE and AFTER, asked together."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Optional

from ..answering import AnswerOptions, answer_frames
from ..console import Progress
from ..engines import EngineSpec, build_engine, engine_checkpoint
from ..errors import KeyframeQAError, ModelError, UsageError
from ..files.paths import OutputPath, check_distinct, check_output_file, write_output
from ..model.budget import check_budget_settings
from ..model.checkpoint import CheckpointInfo
from ..model.generation import GenerationRequest, resolve_generation
from ..options import take
from ..outputs.html import render_compare
from ..outputs.report import SCHEMA_VERSION, answer_record, frame_records, usage_record, video_record
from ..records import Answer, Frame
from ..timecodes import format_time
from ..video.frames import read_frames
from ..video.probe import ProbedVideo, check_times, probe
from .compare_config import CompareConfig, Comparison, ConfigError, load_config

ROLES = ("BEFORE", "AFTER")


def run_compare(config: CompareConfig, config_path: str, engine, *, progress: bool = True) -> tuple[dict, list]:
    """Run every comparison with one engine; returns the report and (comparison, frames, answers) for
    the HTML page.

    A comparison that fails (a time past the end, an unreadable video) is recorded with its error
    and the rest still run; a model failure stops everything.
    """
    results, views = [], []
    bar = Progress(len(config.comparisons), desc="comparisons", unit="comparison", enabled=progress)
    for comparison in config.comparisons:
        bar.update(1)
        started = time.perf_counter()
        try:
            record, frames, answers = _run_one(config, comparison, engine)
        except ModelError:
            raise
        except KeyframeQAError as exc:
            results.append({"name": comparison.name, "status": "error", "error": str(exc)})
            continue
        record["timings"] = {"total_s": round(time.perf_counter() - started, 4)}
        results.append(record)
        views.append((comparison, frames, answers))
    bar.close()
    report = {
        "schema_version": SCHEMA_VERSION,
        "config": config_path,
        "model": engine.describe(),
        "comparisons": results,
    }
    return report, views


def _run_one(config: CompareConfig, comparison: Comparison, engine) -> tuple[dict, list[Frame], list[Answer]]:
    settings = config.settings_for(comparison)
    frames, infos = [], []
    probed_by_path: dict[str, ProbedVideo] = {}
    for index, (path, given) in enumerate(
        ((comparison.before_path, comparison.before), (comparison.after_path, comparison.after))
    ):
        moment = float(given)  # the config's validator has read the time into seconds
        probed = probed_by_path.get(path) or probe(path)
        probed_by_path[path] = probed
        check_times(probed.info, [moment])
        frame = read_frames(probed, [moment])[0]
        frames.append(replace(frame, index=index))
        infos.append(probed.info)
    generation = resolve_generation(
        take(GenerationRequest, dict(settings)), engine.checkpoint.generation_defaults, find=bool(comparison.find)
    )
    options = AnswerOptions(
        generation,
        mode=settings["mode"],
        min_pixels=settings["min_pixels"],
        max_pixels=settings["max_pixels"],
        max_visual_tokens=settings["max_visual_tokens"],
        find=comparison.find,
    )
    labels = [f"{role} at {format_time(f.timestamp)}" for role, f in zip(ROLES, frames)]
    answers, budgets = answer_frames(
        engine,
        frames,
        comparison.questions,
        options,
        labels=labels,
        mention_labels=list(ROLES),
        where=f"comparison {comparison.name!r}",
    )
    frame_list = frame_records(frames, budgets, [None, None])
    record = {
        "name": comparison.name,
        "status": "ok",
        "before": {"video": video_record(infos[0]), "frame": frame_list[0]},
        "after": {"video": video_record(infos[1]), "frame": frame_list[1]},
        "answers": [answer_record(a) for a in answers],
        "usage": usage_record(answers, budgets),
        "settings": settings,
        "generation": asdict(generation),
    }
    return record, frames, answers


def compare_job(
    config_path: str, *, output: Optional[str] = None, html: Optional[str] = None, progress: bool = True
) -> tuple[dict, OutputPath, list[str]]:
    """The `compare` command: the config read and every output checked before any video is read or the model
    loads, then every comparison; returns the report, the checked JSON output and the names of the
    comparisons that failed (each recorded with its `error`)."""

    config = load_config(config_path)
    inputs = config_inputs(config, config_path)
    target = check_output_file(output or "-", "-o", inputs)
    page = check_output_file(html, "--html", inputs) if html else None
    check_distinct([target, page])
    spec = take(EngineSpec, dict(config.defaults))
    checkpoint = engine_checkpoint(spec)
    check_settings(config, config_path, checkpoint)
    engine = build_engine(spec, checkpoint)
    report, views = run_compare(config, config_path, engine, progress=progress)
    if html and page is not None:
        write_output(page, render_compare(config_path, engine.model_id, views))
        report["html"] = html
    return report, target, [c["name"] for c in report["comparisons"] if c["status"] != "ok"]


def check_settings(config: CompareConfig, config_path: str, checkpoint: CheckpointInfo) -> None:
    """Every comparison's budget settings against the model's family, all problems at once, before
    any video is read or the model loads."""
    problems = []
    for position, comparison in enumerate(config.comparisons):
        settings = config.settings_for(comparison)
        try:
            check_budget_settings(
                checkpoint.family,
                mode=settings["mode"],
                min_pixels=settings["min_pixels"],
                max_pixels=settings["max_pixels"],
                max_visual_tokens=settings["max_visual_tokens"],
            )
        except UsageError as exc:
            problems.append(f"comparisons.{position} ({comparison.name}): {exc} for {checkpoint.family.name}")
    if problems:
        raise ConfigError(config_path, problems)


def config_inputs(config: CompareConfig, config_path: str) -> list[str]:
    """Files a compare run reads: the config and every video (never to be written over)."""
    return [config_path] + sorted({p for c in config.comparisons for p in (c.before_path, c.after_path)})
