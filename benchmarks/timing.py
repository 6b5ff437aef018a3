"""Timing whole processes for the benchmarks: wall time and the CPU time the child used."""

from __future__ import annotations

import resource
import subprocess
import time
from typing import Optional


def run_process(command: list[str], *, cwd: str, env: Optional[dict] = None) -> tuple[float, float, str]:
    """Run `command` to completion: (wall seconds, CPU seconds of the child, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True, cwd=cwd, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result.stdout


def timed_batch(
    clips: str, output: str, model: str, options: list[str], *, cwd: str, env: Optional[dict] = None
) -> float:
    """Seconds for one whole `keyframe-qa batch` process over `clips` (a fresh output file each time)."""
    import os
    import sys

    if os.path.exists(output):
        os.unlink(output)
    command = [
        sys.executable,
        "-m",
        "keyframe_qa",
        "batch",
        clips,
        "-q",
        "Describe what you see.",
        "--model",
        model,
        "-o",
        output,
        *options,
    ]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"batch failed: {result.stderr.strip().splitlines()[-1]}")
    return elapsed


def answered(output: str) -> list[dict]:
    """The records of a results file, all of which must be answered."""
    import json

    with open(output) as handle:
        records = [json.loads(line) for line in handle]
    if not all(r["status"] == "ok" for r in records):
        raise SystemExit(f"not every clip was answered in {output}")
    return records


def bench_model(root: str) -> str:
    """The tiny random Qwen2-VL checkpoint the tests use, built once in .bench/."""
    import os

    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

    model = os.path.join(root, ".bench", "tiny-qwen2-vl")
    if not os.path.exists(os.path.join(model, "config.json")):
        build_tiny_checkpoint(model, "qwen2-vl")
    return model


def clip_copies(folder: str, count: int, spec) -> str:
    """`count` copies of one generated clip in `folder`/clips (a batch's worth); returns that folder."""
    import os
    import shutil

    from keyframe_qa.testing.synthetic import write_video

    clips = os.path.join(folder, "clips")
    os.makedirs(clips)
    first = os.path.join(clips, "clip00.mp4")
    write_video(first, spec)
    for number in range(1, count):
        shutil.copy(first, os.path.join(clips, f"clip{number:02d}.mp4"))
    return clips
