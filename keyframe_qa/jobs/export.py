"""The `export` job: finished runs written for players (WebVTT), spreadsheets (CSV) or FiftyOne."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import UsageError
from ..exports.fiftyone import write_dataset
from ..exports.players import csv_text, vtt_names, webvtt
from ..exports.runs import read_runs
from ..files.paths import check_output_dir, check_output_file, write_chosen_name, write_output

TARGETS = ("fiftyone", "webvtt", "csv")


def export_job(paths: Sequence[str], to: str, out: str) -> str:
    """Write the runs at `paths` as `to` into `out` (a file for csv, `-` for stdout; a folder otherwise);
    returns what was written, for the status line. Everything is read and checked before anything is written."""
    if to not in TARGETS:
        raise UsageError(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    run = read_runs(paths)
    if not run.results:
        raise UsageError(f"{', '.join(paths)}: no results to export")
    inputs = [*run.inputs, *paths]
    if to == "csv":
        target = check_output_file(out, "OUT", inputs)
        write_output(target, csv_text(run.results))
        return f"{len(run.results)} results to {'stdout' if target.is_stdout else out}"
    if to == "webvtt":
        folder = check_output_dir(out, "OUT")
        chosen = [r for r in run.results if r.kind != "error"]
        for result, name in zip(chosen, vtt_names(chosen)):
            write_chosen_name(os.path.join(folder, name), webvtt(result).encode("utf-8"), "OUT", inputs)
        return f"{len(chosen)} WebVTT files in {out}"
    folder = check_output_dir(out, "OUT")
    count = write_dataset(run, folder, inputs)
    return f"a FiftyOne video dataset of {count} videos in {out}"
