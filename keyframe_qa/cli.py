"""The command line: parse options, build a request, run the pipeline, write the result. No logic.

Every failure is one `Error: ...` line on stderr with exit code 1 (run-time) or 2 (usage);
KEYFRAME_QA_DEBUG=1 shows the traceback too. stdout carries only the JSON.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Optional

import click

from .errors import KeyframeQAError
from .options import ANSWER, BUDGET, ENGINE, GENERATION, RELEVANCE, SCENE, SELECTION, click_options, take
from .timecodes import parse_time_list


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyframe-qa")
def cli():
    """Ask a vision-language model questions about exact moments in a video."""


def _parse_times(text: str) -> tuple:
    return tuple(parse_time_list(text))


# The options that choose frames, shared by `ask`, `batch` and `frames` (declared in options.py).
selection_options = click_options(SELECTION + RELEVANCE + SCENE + ("use_cache",), parsers={"times": _parse_times})
# How questions are put and what comes back, shared by `ask` and `batch`.
answer_options = click_options(ANSWER)


def _selection(options: dict, **extra):
    """A SelectionRequest (its SceneOptions inside) from the parsed selection options, which it takes out
    of `options`."""
    from .selection.scenes import SceneOptions
    from .selection.select import SelectionRequest

    scene_options = take(SceneOptions, options)
    picked = {name: options.pop(name) for name in SELECTION + RELEVANCE + ("use_cache",)}
    return SelectionRequest(**picked, scene_options=scene_options, show_progress=True, **extra)


def _engine_and_generation(options: dict) -> dict:
    """The EngineSpec and GenerationRequest of the parsed options, which they take out of `options`."""
    from .engines import EngineSpec
    from .model.generation import GenerationRequest

    return {"engine": take(EngineSpec, options), "generation": take(GenerationRequest, options)}


def _emit(text: str, output, report: Optional[dict] = None) -> None:
    """Write a result to its checked output (stdout when none), and say every file the run wrote."""
    from .files.paths import write_output

    write_output(output, text)
    _wrote(report or {}, None if output.is_stdout else output.given)


def _wrote(report: dict, output) -> None:
    from .outputs.report import written

    line = written(report, output)
    if line:
        _say(line)


def _say(text: str) -> None:
    """A status line on stderr (any file name readable, above a progress bar)."""
    from .console import line

    line(text)


def _output(path, option: str, inputs):
    from .files.paths import check_output_file

    return check_output_file(path or "-", option, inputs)


def _request(video, questions, options: dict, **files):
    """An AskRequest from the shared options (selection options included)."""
    from .jobs.ask import AskRequest

    selection = _selection(options)
    return AskRequest(
        video=video,
        questions=tuple(questions),
        selection=selection,
        **_engine_and_generation(options),
        **options,
        **files,
    )


@cli.command()
@click.argument("video", type=str)
@click.argument("questions", nargs=-1)
@selection_options
@answer_options
@click.option("--annotate", type=str, default=None, help="Write the frames with their boxes drawn here (PNG).")
@click.option("--html", "html_path", type=str, default=None, help="Write a self-contained HTML page of the run here.")
@click.option("--save-frames", type=str, default=None, help="Write the frames as PNG here.")
@click_options(("when", "precision", "refine", "window_frames"))
@click.option(
    "-o", "--output", type=str, default=None, help="Write the JSON here (atomically) instead of stdout; - for stdout."
)
def ask(video, questions, annotate, html_path, save_frames, output, **options):
    """Ask QUESTIONS about frames of VIDEO: at given times, sampled, or one per scene.

    Boxes in replies come back in pixels of the displayed frame; --find asks for them directly.
    With no frame selection, frames are sampled like qwen-vl-utils (2 fps, capped by the budget).
    """
    from .files.paths import names_stdout
    from .jobs.ask import ask as run_ask

    request = _request(
        video, questions, options, annotate=annotate, html=html_path, save_frames=save_frames, output=output or "-"
    )
    report = run_ask(request)
    _wrote(report, None if names_stdout(output) else output)


@cli.command()
@click.argument("video", type=str)
@click.argument("query")
@click_options(ENGINE + BUDGET + GENERATION + ("mode", "precision", "refine", "window_frames"))
@click.option(
    "--html",
    "html_path",
    type=str,
    default=None,
    help="Write a page with the video's timeline, the moments on it, and their first and last frames.",
)
@click.option(
    "-o", "--output", type=str, default=None, help="Write the JSON here (atomically) instead of stdout; - for stdout."
)
def when(video, query, html_path, output, **options):
    """Find the moments QUERY happens in VIDEO, down to the exact first and last frame."""
    from .jobs.when import WhenRequest, when_job
    from .outputs.report import to_json

    request = WhenRequest(video=video, query=query, **_engine_and_generation(options), **options)
    report, target = when_job(request, output=output, html=html_path)
    _emit(to_json(report), target, report)


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-q", "--question", "questions", multiple=True, help="A question for every video (repeatable).")
@selection_options
@answer_options
@click.option(
    "-o", "--output", required=True, type=str, help="Results, one JSON line per video (- for stdout, without resume)."
)
@click.option("--overwrite", is_flag=True, help="Start afresh instead of resuming the output (results files only).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first video that fails.")
@click_options(("when", "precision", "refine", "window_frames", "concurrency"))
@click.option(
    "--ray",
    "use_ray",
    is_flag=True,
    help="Run on a Ray cluster ($RAY_ADDRESS, else `ray start` here, else a local one); "
    "--concurrency is then the number of engine actors.",
)
@click_options(("batch_size",))
def batch(inputs, questions, output, overwrite, fail_fast, concurrency, use_ray, batch_size, **options):
    """Answer questions about many videos with one model load: INPUTS are files, folders, globs or
    .csv/.jsonl manifests (columns video, at, question). Reruns resume."""
    from .jobs.batch import batch_job, summary_line

    summary = batch_job(
        inputs,
        _request("", questions, options),
        output,
        concurrency=concurrency,
        use_ray=use_ray,
        overwrite=overwrite,
        fail_fast=fail_fast,
        batch_size=batch_size,
    )
    _say(summary_line(summary, output))
    if summary.interrupted:
        raise click.exceptions.Exit(130)
    if summary.failed:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("video", type=str)
@click_options(SCENE)
@click.option("--csv", "as_csv", is_flag=True, help="A CSV table instead of JSON.")
@click_options(("use_cache",))
@click.option("-o", "--output", type=str, default=None, help="Write here instead of stdout.")
def scenes(video, as_csv, use_cache, output, **options):
    """Find the scenes of VIDEO (no model) and one keyframe for each."""
    from .jobs.scenes import scenes_job
    from .selection.scenes import SceneOptions

    target = _output(output, "-o", [video])
    _emit(scenes_job(video, SceneOptions(**options), use_cache=use_cache, as_csv=as_csv), target)


@cli.command()
@click.argument("video", type=str)
@selection_options
@click.option("--out", "out_dir", required=True, type=str, help="Folder for the images.")
@click_options(("image_format", "quality", "max_side", "query", "device"))
def frames(video, out_dir, image_format, quality, max_side, query, device, **selection):
    """Write frames of VIDEO as images plus a frames.json index (no VLM; --relevant loads its scorer)."""
    from .jobs.frames import frames_job

    request = _selection(
        selection, max_visual_tokens=None, queries=(query,) if query is not None else (), device=device
    )
    index, count = frames_job(video, request, out_dir, image_format=image_format, quality=quality, max_side=max_side)
    from .console import counted

    _say(f"wrote {counted(count, 'frame')} and {index}")


@cli.command()
@click.argument("config_path", metavar="CONFIG")
@click.option(
    "-o", "--output", type=str, default=None, help="Write the JSON report here (atomically) instead of stdout."
)
@click.option(
    "--html", "html_path", type=str, default=None, help="Write a self-contained HTML page of all comparisons here."
)
def compare(config_path, output, html_path):
    """Run the before/after comparisons of a YAML CONFIG (see configs/before_after.yaml)."""
    from .jobs.compare import compare_job
    from .outputs.report import to_json

    report, target, failed = compare_job(config_path, output=output, html=html_path)
    _emit(to_json(report), target, report)
    if failed:
        from .console import counted

        click.echo(
            f"Error: {counted(len(failed), 'comparison')} failed: {', '.join(failed)} (see their `error`)", err=True
        )
        raise click.exceptions.Exit(1)


@cli.command("eval")
@click.argument("config_path", metavar="CONFIG")
@click.option(
    "-o",
    "--output",
    "run_dir",
    type=str,
    default=None,
    help="The run's folder: each pipeline's results and scores, and summary.json [default: CONFIG's name with -run].",
)
@click_options(("concurrency",))
@click.option("--ray", "use_ray", is_flag=True, help="Answer on a Ray cluster (as batch --ray).")
@click_options(("batch_size",))
@click.option("--overwrite", is_flag=True, help="Answer everything again instead of resuming the run.")
@click.option(
    "--html",
    "html_path",
    type=str,
    default=None,
    help="Write a page of the scores, the paired differences and the items the pipelines disagree on.",
)
def eval_command(config_path, run_dir, concurrency, use_ray, batch_size, overwrite, html_path):
    """Score pipelines on labelled questions about your videos (a YAML CONFIG: labels, pipelines, baseline) and
    compare each with the baseline, item by item. Reruns resume, and only score again once all is answered."""
    from .jobs.eval import run_eval

    run = run_eval(
        config_path,
        run_dir,
        concurrency=concurrency,
        use_ray=use_ray,
        batch_size=batch_size,
        overwrite=overwrite,
        html=html_path,
    )
    click.echo(run.table)
    _say(f"wrote {os.path.join(run.run_dir, 'summary.json')}")
    if run.failed:
        click.echo(
            f"Error: {run.failed} labelled items were not answered (their videos failed: see the results)", err=True
        )
        raise click.exceptions.Exit(1)


@cli.command("view")
@click.argument("results", nargs=-1, required=True)
@click.option("--html", "html_path", type=str, required=True, help="Write the page here.")
@click.option(
    "--thumbs",
    type=str,
    default=None,
    help="The folder for the frames' thumbnails [default: the page's name with _files].",
)
@click_options(("limit",))
def view_command(results, html_path, thumbs, limit):
    """One page of finished RESULTS (batch results, eval run folders, ask or when JSON): every video, its
    status, answers and moments, filterable and sortable; a row opens to the exact frames the model saw."""
    from .jobs.view import view_job

    summary = view_job(results, html_path, thumbs, limit)
    _say(
        f"wrote {html_path}: {summary.rows} rows, {summary.thumbnails} thumbnails, "
        f"{summary.page_bytes / 1e6:.1f} MB in {summary.seconds:.1f} s"
    )


@cli.command("export")
@click.argument("results", nargs=-1, required=True)
@click.argument("out")
@click.option(
    "--to",
    "to",
    type=click.Choice(["fiftyone", "webvtt", "csv"]),
    required=True,
    help="fiftyone: a video dataset folder FiftyOne imports; webvtt: a .vtt a video (moments and "
    "answers as cues, scenes as chapters); csv: a row a video and question (- for stdout).",
)
def export_command(results, out, to):
    """Write finished RESULTS (batch results, eval run folders, ask, when or scenes JSON) to OUT for FiftyOne,
    for players, or for spreadsheets."""
    from .jobs.export import export_job

    _say(f"exported {export_job(results, to, out)}")


def main(argv=None) -> int:
    """Console entry point: runs the CLI and maps every failure to one line and an exit code."""
    debug = os.environ.get("KEYFRAME_QA_DEBUG") == "1"
    if not debug:
        _quiet_libraries()
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # bare `keyframe-qa`: the help, as a successful answer
        with click.Context(cli, info_name="keyframe-qa") as context:
            click.echo(cli.get_help(context))
        return 0
    try:
        # Without standalone mode click returns (not raises) the code of a click Exit.
        result = cli.main(args=args, prog_name="keyframe-qa", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Error: aborted", err=True)
        return 130
    except click.UsageError as exc:
        _fail(exc.format_message(), debug)
        return 2
    except click.ClickException as exc:
        _fail(exc.format_message(), debug)
        return exc.exit_code
    except KeyframeQAError as exc:
        _fail(str(exc), debug)
        for problem in getattr(exc, "problems", ()):
            click.echo(f"  {problem}", err=True)  # a config's problems, all at once, one per line
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Error: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        _fail(f"unexpected {type(exc).__name__}: {exc} (rerun with KEYFRAME_QA_DEBUG=1 for details)", debug)
        return 1


def _fail(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    from .texts import readable

    first_line = " ".join(readable(str(message)).split())
    click.echo(f"Error: {first_line}", err=True)


def _quiet_libraries() -> None:
    # transformers' load-progress bars and advice are noise in a CLI; our own errors say what matters.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # huggingface_hub logs each retry of an unreachable hub; the final Error line says it all.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    # OpenCV's FFmpeg (PySceneDetect's reader) prints its own log lines about bad files; ours is one line.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

    logging.getLogger("pyscenedetect").setLevel(logging.CRITICAL)


if __name__ == "__main__":
    sys.exit(main())
