"""The command line: parse options, build a request, run the pipeline, write the result. No logic.

Every failure is one `Error: ...` line on stderr with exit code 1 (run-time) or 2 (usage);
KEYFRAME_QA_DEBUG=1 shows the traceback too. stdout carries only the JSON.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from .model.budget import DEFAULT_MAX_VISUAL_TOKENS, LARGEST_OPTION
from .errors import KeyframeQAError, UsageError
from .model.families import FAMILY_NAMES
from .selection.scenes import DEFAULT_MIN_SCENE_LEN, DETECTORS, KEYFRAME_CHOICES
from .timecodes import parse_time_list


COUNT = click.IntRange(min=1, max=LARGEST_OPTION)


class FiniteNumber(click.ParamType):
    """A finite number above zero, or from zero with `zero_ok` (click's FLOAT takes inf and nan)."""

    name = "number"

    def __init__(self, zero_ok: bool = False):
        self.zero_ok = zero_ok

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number < 0 or (number == 0 and not self.zero_ok):
            self.fail(f"{value!r} is not a finite number {'of 0 or more' if self.zero_ok else 'above 0'}", param, ctx)
        return number


POSITIVE = FiniteNumber()
NON_NEGATIVE = FiniteNumber(zero_ok=True)


def _times(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(parse_time_list(value))
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyframe-qa")
def cli():
    """Ask a vision-language model questions about exact moments in a video."""


def selection_options(command):
    """Options that choose frames, shared by `ask` and `frames`."""
    options = [
        click.option("--at", "times", callback=_times, metavar="TIMES",
                     help="Comma list of times: 5.5 | 1:05.5 | 00:01:05.500 (from the first frame)."),
        click.option("--scenes", is_flag=True, help="One keyframe per scene found by PySceneDetect."),
        click.option("--every", type=POSITIVE, default=None, metavar="SECONDS", help="A frame every SECONDS."),
        click.option("--num-frames", type=COUNT, default=None, metavar="N", help="N frames spread evenly."),
        click.option("--fps", type=POSITIVE, default=None, metavar="F", help="F frames per second."),
        click.option("--detector", type=click.Choice(list(DETECTORS)), default="content", show_default=True,
                     help="Scene detector (with --scenes)."),
        click.option("--threshold", type=POSITIVE, default=None,
                     help="Detector threshold [default: the detector's]."),
        click.option("--min-scene-len", default=DEFAULT_MIN_SCENE_LEN, show_default=True,
                     help="Shortest scene: frames (15) or seconds (0.6s)."),
        click.option("--keyframe", type=click.Choice(list(KEYFRAME_CHOICES)), default="middle", show_default=True,
                     help="Which frame stands for a scene; sharpest = highest Laplacian variance."),
        click.option("--max-scenes", type=COUNT, default=None, metavar="N", help="Keep the N longest scenes."),
        click.option("--no-cache", is_flag=True, help="Detect scenes again instead of using the cache."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _selection(times, scenes, every, num_frames, fps, detector, threshold, min_scene_len, keyframe, max_scenes,
               no_cache, **extra):
    from .selection.scenes import SceneOptions
    from .selection.select import SelectionRequest

    return SelectionRequest(
        times=times, scenes=scenes, every=every, num_frames=num_frames, fps=fps,
        scene_options=SceneOptions(detector=detector, threshold=threshold, min_scene_len=min_scene_len,
                                   keyframe=keyframe, max_scenes=max_scenes),
        use_cache=not no_cache, show_progress=True, **extra,
    )


def _emit(text: str, output) -> None:
    """Write a result to its checked output (stdout when none), and say where it went."""
    from .outputs.paths import write_output

    write_output(output, text)
    _wrote(output)


def _wrote(output) -> None:
    if not output.is_stdout:
        _say(f"wrote {output.given}")


def _say(text: str) -> None:
    """A status line on stderr (any file name readable, above a progress bar)."""
    from .console import line

    line(text)


def _output(path, option: str, inputs):
    from .outputs.paths import check_output_file

    return check_output_file(path or "-", option, inputs)


def answer_options(command):
    """How questions are put and what comes back, shared by `ask` and `batch`."""
    options = [
        click.option("--per-frame", is_flag=True, help="Ask every question about each frame on its own."),
        click.option("--find", default=None, metavar="WHAT",
                     help="Locate WHAT with the model's grounding prompt (boxes)."),
        click.option("--mode", type=click.Choice(["images", "video"]), default="images", show_default=True,
                     help="Frames as several images in one turn, or as one video."),
        click.option("--model", "model_id", default=None, metavar="ID|PATH",
                     help="Hub id or checkpoint folder [default: $KEYFRAME_QA_MODEL or Qwen/Qwen2-VL-2B-Instruct]."),
        click.option("--engine", type=click.Choice(["transformers", "openai"]), default="transformers",
                     show_default=True, help="Load the model here, or ask an OpenAI-compatible server."),
        click.option("--base-url", default=None, metavar="URL",
                     help="openai engine: the server's URL, e.g. http://localhost:8000/v1."),
        click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, metavar="NAME",
                     help="openai engine: the environment variable holding the API key (never recorded)."),
        click.option("--family", type=click.Choice(FAMILY_NAMES), default=None,
                     help="openai engine: the model's family, when its config is not on this machine."),
        click.option("--timeout", type=POSITIVE, default=600.0, show_default=True,
                     help="openai engine: seconds to wait for one reply."),
        click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N"),
        click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto",
                     show_default=True),
        click.option("--min-pixels", type=COUNT, default=None, help="Per-frame minimum model-input pixels."),
        click.option("--max-pixels", type=COUNT, default=None, help="Per-frame maximum model-input pixels."),
        click.option("--max-visual-tokens", type=COUNT, default=DEFAULT_MAX_VISUAL_TOKENS,
                     show_default=True, help="Visual tokens for all frames together (split evenly, never exceeded)."),
        click.option("--max-new-tokens", type=COUNT, default=None,
                     help="Longest reply in tokens [default: 256; 1024 with --find]."),
        click.option("--sampling", type=click.Choice(["greedy", "model"]), default="greedy", show_default=True,
                     help="greedy: the same answer every time; model: the checkpoint's generation config."),
        click.option("--temperature", type=NON_NEGATIVE, default=None, help="Sample at this temperature (0: greedy)."),
        click.option("--top-p", type=POSITIVE, default=None, help="Sample from this nucleus mass (at most 1)."),
        click.option("--top-k", type=COUNT, default=None, help="Sample among the K likeliest tokens."),
        click.option("--repetition-penalty", type=POSITIVE, default=None, help="Above 1 discourages repeats."),
        click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=None,
                     help="Seed for sampling: the same seed gives the same sampled answer."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _request(video, questions, options: dict, **files):
    """An AskRequest from the shared options (selection options included)."""
    from .jobs.ask import AskRequest

    selection_keys = ("times", "scenes", "every", "num_frames", "fps", "detector", "threshold", "min_scene_len",
                      "keyframe", "max_scenes", "no_cache")
    selection = _selection(**{key: options.pop(key) for key in selection_keys})
    return AskRequest(video=video, questions=tuple(questions), selection=selection, **options, **files)


@cli.command()
@click.argument("video", type=str)
@click.argument("questions", nargs=-1)
@selection_options
@answer_options
@click.option("--annotate", type=str, default=None,
              help="Write the frames with their boxes drawn here (PNG).")
@click.option("--html", "html_path", type=str, default=None,
              help="Write a self-contained HTML page of the run here.")
@click.option("--save-frames", type=str, default=None, help="Write the frames as PNG here.")
@click.option("-o", "--output", type=str, default=None,
              help="Write the JSON here (atomically) instead of stdout; - for stdout.")
def ask(video, questions, annotate, html_path, save_frames, output, **options):
    """Ask QUESTIONS about frames of VIDEO: at given times, sampled, or one per scene.

    Boxes in replies come back in pixels of the displayed frame; --find asks for them directly.
    With no frame selection, frames are sampled like qwen-vl-utils (2 fps, capped by the budget).
    """
    from .outputs.paths import names_stdout
    from .jobs.ask import ask as run_ask

    request = _request(video, questions, options, annotate=annotate, html=html_path, save_frames=save_frames,
                       output=output or "-")
    run_ask(request)
    if not names_stdout(output):
        _say(f"wrote {output}")


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-q", "--question", "questions", multiple=True, help="A question for every video (repeatable).")
@selection_options
@answer_options
@click.option("-o", "--output", required=True, type=str,
              help="Results, one JSON line per video (- for stdout, without resume).")
@click.option("--overwrite", is_flag=True, help="Start afresh instead of resuming the output (results files only).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first video that fails.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Videos answered at once (--engine openai): keeps N requests in flight for the server.")
@click.option("--ray", "use_ray", is_flag=True,
              help="Run on a Ray cluster ($RAY_ADDRESS, else `ray start` here, else a local one); "
                   "--concurrency is then the number of engine actors.")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Prompts generated together in one left-padded batch (in-process model); greedy answers "
                   "are the same as one at a time.")
def batch(inputs, questions, output, overwrite, fail_fast, concurrency, use_ray, batch_size, **options):
    """Answer questions about many videos with one model load: INPUTS are files, folders, globs or
    .csv/.jsonl manifests (columns video, at, question). Reruns resume."""
    from .jobs.batch import check_batch_size, run_batch, summary_line
    from .jobs.batch_inputs import collect_items
    from .engines import check_spec, engine_checkpoint
    from .jobs.ask import engine_spec
    from .outputs.results_file import check_results_file

    items = collect_items(inputs)
    if not questions and not options.get("find") and any(not i.questions and not i.error for i in items):
        raise UsageError("give questions with -q (or --find, or a `question` column in the manifest)")
    template = _request("", questions, options)
    check_spec(engine_spec(template))
    check_batch_size(engine_spec(template), batch_size, use_ray)
    if use_ray:
        from .jobs.ray_runner import check_ray

        check_ray()
    target = _output(output, "-o", [i.video for i in items] + [i for i in inputs if os.path.isfile(i)])
    check_results_file(target)  # a file that is not ours is refused before anything else happens
    checkpoint = engine_checkpoint(engine_spec(template))
    summary = run_batch(items, template, target, checkpoint=checkpoint, concurrency=concurrency, use_ray=use_ray,
                        overwrite=overwrite, fail_fast=fail_fast, batch_size=batch_size)
    _say(summary_line(summary, output))
    if summary.interrupted:
        raise click.exceptions.Exit(130)
    if summary.failed:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("video", type=str)
@click.option("--detector", type=click.Choice(list(DETECTORS)), default="content", show_default=True)
@click.option("--threshold", type=POSITIVE, default=None, help="Detector threshold [default: the detector's].")
@click.option("--min-scene-len", default=DEFAULT_MIN_SCENE_LEN, show_default=True,
              help="Shortest scene: frames (15) or seconds (0.6s).")
@click.option("--keyframe", type=click.Choice(list(KEYFRAME_CHOICES)), default="middle", show_default=True)
@click.option("--max-scenes", type=COUNT, default=None, metavar="N", help="Keep the N longest scenes.")
@click.option("--csv", "as_csv", is_flag=True, help="A CSV table instead of JSON.")
@click.option("--no-cache", is_flag=True, help="Detect again instead of using the cache.")
@click.option("-o", "--output", type=str, default=None, help="Write here instead of stdout.")
def scenes(video, detector, threshold, min_scene_len, keyframe, max_scenes, as_csv, no_cache, output):
    """Find the scenes of VIDEO (no model) and one keyframe for each."""
    from .jobs.scenes import scenes_job
    from .selection.scenes import SceneOptions

    options = SceneOptions(detector=detector, threshold=threshold, min_scene_len=min_scene_len,
                           keyframe=keyframe, max_scenes=max_scenes)
    target = _output(output, "-o", [video])
    _emit(scenes_job(video, options, use_cache=not no_cache, as_csv=as_csv), target)


@cli.command()
@click.argument("video", type=str)
@selection_options
@click.option("--out", "out_dir", required=True, type=str, help="Folder for the images.")
@click.option("--format", "image_format", type=click.Choice(["png", "jpg"]), default="png", show_default=True)
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality.")
@click.option("--max-side", type=COUNT, default=None, help="Shrink so the longer side is at most N.")
def frames(video, out_dir, image_format, quality, max_side, **selection):
    """Write frames of VIDEO as images plus a frames.json index (no model)."""
    from .jobs.frames import frames_job

    index, count = frames_job(video, _selection(**selection, max_visual_tokens=None), out_dir,
                              image_format=image_format, quality=quality, max_side=max_side)
    _say(f"wrote {count} frames and {index}")


@cli.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("-o", "--output", type=str, default=None,
              help="Write the JSON report here (atomically) instead of stdout.")
@click.option("--html", "html_path", type=str, default=None,
              help="Write a self-contained HTML page of all comparisons here.")
def compare(config_path, output, html_path):
    """Run the before/after comparisons of a YAML CONFIG (see configs/before_after.yaml)."""
    from .jobs.compare import check_settings, config_inputs, run_compare
    from .jobs.compare_config import load_config
    from .engines import build_engine, engine_checkpoint
    from .outputs.html import render_compare
    from .outputs.paths import check_distinct, write_output
    from .outputs.report import to_json

    config = load_config(config_path)
    inputs = config_inputs(config, config_path)
    target = _output(output, "-o", inputs)
    page = _output(html_path, "--html", inputs) if html_path else None
    check_distinct([target, page])
    spec = config.defaults.engine_spec()
    checkpoint = engine_checkpoint(spec)
    check_settings(config, config_path, checkpoint)
    engine = build_engine(spec, checkpoint)
    report, views = run_compare(config, config_path, engine)
    if html_path:
        write_output(page, render_compare(config_path, engine.model_id, views))
        report["html"] = html_path
    _emit(to_json(report), target)
    failed = [c["name"] for c in report["comparisons"] if c["status"] != "ok"]
    if failed:
        click.echo(f"Error: {len(failed)} comparison(s) failed: {', '.join(failed)} (see their `error`)", err=True)
        raise click.exceptions.Exit(1)


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
    from .outputs.jsontext import readable

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
    import logging

    logging.getLogger("pyscenedetect").setLevel(logging.CRITICAL)


if __name__ == "__main__":
    sys.exit(main())
