"""Benchmark: `keyframe-qa batch` over N clips vs a loop of N `keyframe-qa ask` processes, and
`batch --batch-size B` (prompts of several videos generated together) vs `--batch-size 1`.

    uv run python benchmarks/batch.py [--clips 8] [--batch-size 4] [--model PATH]

Both use the tiny random Qwen2-VL checkpoint the tests use (built once in .bench/) and the same
questions and frames (--num-frames 4, two questions) on copies of the sample clips, in one run.
The batch loads the model once and decodes the next video while the model answers; the loop pays
interpreter start, imports and model load per video. Prints videos/s of each and the ratio, and
whether the batched run's answers equal the one-at-a-time run's (greedy: they must). `--model` takes
another checkpoint (e.g. the Qwen2-VL-2B architecture with random weights, on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from timing import run_process  # noqa: E402

QUESTIONS = ["What happens in these frames?", "Is there a cut?"]
OPTIONS = ["--num-frames", "4", "--max-new-tokens", "16"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--model", default=os.path.join(ROOT, ".bench", "tiny-qwen2-vl"))
    args = parser.parse_args()
    model = args.model
    if not os.path.exists(os.path.join(model, "config.json")):
        from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

        build_tiny_checkpoint(model, "qwen2-vl")
    samples = [os.path.join(ROOT, "sample_videos", n) for n in ("scenes.mp4", "bigbuckbunny.mp4", "phone_rotated.mp4")]
    work = tempfile.mkdtemp()
    clips = []
    for number in range(args.clips):
        source = samples[number % len(samples)]
        clips.append(os.path.join(work, f"clip{number:03d}{os.path.splitext(source)[1]}"))
        shutil.copy(source, clips[-1])
    cli = [sys.executable, "-m", "keyframe_qa"]

    questions = [part for q in QUESTIONS for part in ("-q", q)]
    batch_wall, batch_cpu, _ = run_process(
        cli + ["batch", work, *questions, *OPTIONS, "--model", model, "-o", os.path.join(work, "out.jsonl")], cwd=ROOT
    )
    with open(os.path.join(work, "out.jsonl")) as handle:
        lines = [json.loads(line) for line in handle]
    per_video = [line["timings"]["total_s"] for line in lines]
    batched_out = os.path.join(work, "batched.jsonl")
    batched_wall, batched_cpu, _ = run_process(
        cli
        + [
            "batch",
            work,
            *questions,
            *OPTIONS,
            "--model",
            model,
            "--batch-size",
            str(args.batch_size),
            "-o",
            batched_out,
        ],
        cwd=ROOT,
    )
    with open(batched_out) as handle:
        batched_lines = [json.loads(line) for line in handle]

    def answers(records):
        return {r["video"]["path"]: [a["answer"] for a in r["answers"]] for r in records}

    loop_wall = loop_cpu = 0.0
    for clip in clips:
        wall, cpu, _ = run_process(cli + ["ask", clip, *QUESTIONS, *OPTIONS, "--model", model], cwd=ROOT)
        loop_wall, loop_cpu = loop_wall + wall, loop_cpu + cpu
    print(
        json.dumps(
            {
                "clips": args.clips,
                "batch": {
                    "wall_s": round(batch_wall, 2),
                    "cpu_s": round(batch_cpu, 2),
                    "videos_per_s": round(args.clips / batch_wall, 3),
                    "mean_s_per_video_once_loaded": round(sum(per_video) / len(per_video), 3),
                },
                "ask_loop": {
                    "wall_s": round(loop_wall, 2),
                    "cpu_s": round(loop_cpu, 2),
                    "videos_per_s": round(args.clips / loop_wall, 3),
                },
                "speedup": round(loop_wall / batch_wall, 2),
                f"batch_size_{args.batch_size}": {
                    "wall_s": round(batched_wall, 2),
                    "cpu_s": round(batched_cpu, 2),
                    "videos_per_s": round(args.clips / batched_wall, 3),
                    "vs_batch_size_1": round(batch_wall / batched_wall, 2),
                    "same_answers": answers(batched_lines) == answers(lines),
                },
            },
            indent=2,
        )
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
