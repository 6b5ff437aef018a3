"""The command line: parse options, build a request, run the pipeline, write the result. No logic.

Every failure is one `Error: ...` line on stderr with exit code 1 (run-time) or 2 (usage);
KEYFRAME_QA_DEBUG=1 shows the traceback too. stdout carries only the JSON.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from .budget import DEFAULT_MAX_VISUAL_TOKENS
from .errors import KeyframeQAError, UsageError
from .timecodes import parse_time_list


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


@cli.command()
@click.argument("video", type=str)
@click.argument("questions", nargs=-1, required=True)
@click.option("--at", "times", callback=_times, metavar="TIMES",
              help="Comma list of times: 5.5 | 1:05.5 | 00:01:05.500 (from the first frame).")
@click.option("--mode", type=click.Choice(["images", "video"]), default="images", show_default=True,
              help="Frames as several images in one turn, or as one video.")
@click.option("--model", "model_id", default=None, metavar="ID|PATH",
              help="Hub id or checkpoint folder [default: $KEYFRAME_QA_MODEL or Qwen/Qwen2-VL-2B-Instruct].")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto",
              show_default=True)
@click.option("--min-pixels", type=click.IntRange(min=1), default=None, help="Per-frame minimum model-input pixels.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help="Per-frame maximum model-input pixels.")
@click.option("--max-visual-tokens", type=click.IntRange(min=1), default=DEFAULT_MAX_VISUAL_TOKENS,
              show_default=True, help="Visual tokens for all frames together (split evenly, never exceeded).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--save-frames", type=click.Path(file_okay=False), default=None, help="Write the frames as PNG here.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON here (atomically) instead of stdout.")
def ask(video, questions, times, mode, model_id, device, dtype, min_pixels, max_pixels, max_visual_tokens,
        max_new_tokens, save_frames, output):
    """Ask QUESTIONS about the frames of VIDEO at the given times."""
    from .pipeline import AskRequest, ask as run_ask
    from .report import to_json, write_atomically

    if not times:
        raise UsageError("choose frames with --at, e.g. --at 5.5,10")
    request = AskRequest(
        video=video, questions=tuple(questions), times=times, mode=mode, model_id=model_id, device=device,
        dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels, max_visual_tokens=max_visual_tokens,
        max_new_tokens=max_new_tokens, save_frames=save_frames,
    )
    report = run_ask(request)
    text = to_json(report)
    if output:
        write_atomically(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        sys.stdout.write(text)


def main(argv=None) -> int:
    """Console entry point: runs the CLI and maps every failure to one line and an exit code."""
    debug = os.environ.get("KEYFRAME_QA_DEBUG") == "1"
    if not debug:
        _quiet_libraries()
    try:
        cli.main(args=argv, prog_name="keyframe-qa", standalone_mode=False)
        return 0
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
    first_line = " ".join(str(message).split())
    click.echo(f"Error: {first_line}", err=True)


def _quiet_libraries() -> None:
    # transformers' load-progress bars and advice are noise in a CLI; our own errors say what matters.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # huggingface_hub logs each retry of an unreachable hub; the final Error line says it all.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")


if __name__ == "__main__":
    sys.exit(main())
