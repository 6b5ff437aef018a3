"""Benchmark: the same clips in a plain `batch` and in `batch --ray` on a local Ray cluster.

    uv run python benchmarks/ray_batch.py [--clips 16]

The tiny random Qwen2-VL checkpoint the tests use (built once in .bench/), CPU. A head node is
started once with `ray start --head` (the `ray start` on this machine that `--ray` joins), and timed on
its own; then each batch is a whole `keyframe-qa batch` process, plain first, then --ray, interleaved
over two rounds. Both must answer every clip with the same replies. Prints seconds, videos/s and the
per-video overhead of going through Ray on one node. This machine has one node: what several nodes
gain is not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def batch(clips: str, output: str, model: str, extra: list[str], env: dict) -> float:
    if os.path.exists(output):
        os.unlink(output)
    command = [sys.executable, "-m", "keyframe_qa", "batch", clips, "-q", "Describe what you see.", "--at",
               "0.5,1.5,3.5", "--model", model, "--max-new-tokens", "16", "-o", output, *extra]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"batch failed: {result.stderr.strip().splitlines()[-1]}")
    return elapsed


def replies(output: str) -> dict:
    with open(output) as handle:
        records = [json.loads(line) for line in handle]
    assert all(r["status"] == "ok" for r in records), "every clip must be answered"
    return {os.path.basename(r["video"]["path"]): [a["raw"] for a in r["answers"]] for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from keyframe_qa.synthetic import SyntheticSpec, write_video
    from keyframe_qa.tiny_model import build_tiny_checkpoint

    model = os.path.join(ROOT, ".bench", "tiny-qwen2-vl")
    if not os.path.exists(os.path.join(model, "config.json")):
        build_tiny_checkpoint(model, "qwen2-vl")
    work = tempfile.mkdtemp(prefix="kfqa-ray-")
    clips = os.path.join(work, "clips")
    os.makedirs(clips)
    first = os.path.join(clips, "clip00.mp4")
    write_video(first, SyntheticSpec(width=640, height=360, frame_count=40, fps=10, gop=20, bframes=2))
    for number in range(1, args.clips):
        shutil.copy(first, os.path.join(clips, f"clip{number:02d}.mp4"))
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    started = time.perf_counter()
    subprocess.run([RAY, "start", "--head", "--num-cpus", str(os.cpu_count()), "--include-dashboard=false"],
                   check=True, capture_output=True, env=env)
    cluster_start = time.perf_counter() - started
    plain, ray_runs = [], []
    try:
        for _ in range(args.rounds):
            plain.append(batch(clips, os.path.join(work, "plain.jsonl"), model, [], env))
            ray_runs.append(batch(clips, os.path.join(work, "ray.jsonl"), model, ["--ray"], env))
        assert replies(os.path.join(work, "plain.jsonl")) == replies(os.path.join(work, "ray.jsonl")), \
            "the Ray batch must answer as the plain one does"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    best_plain, best_ray = min(plain), min(ray_runs)
    print(f"{args.clips} clips of 640x360, 3 frames, 16 new tokens, tiny Qwen2-VL on CPU ({os.cpu_count()} cores), "
          f"one node; best of {args.rounds} whole processes")
    print(f"  ray start --head (once):  {cluster_start:6.2f} s")
    print(f"  plain batch:              {best_plain:6.2f} s  {args.clips / best_plain:5.2f} videos/s")
    print(f"  batch --ray:              {best_ray:6.2f} s  {args.clips / best_ray:5.2f} videos/s")
    print(f"  Ray overhead per video:   {(best_ray - best_plain) / args.clips:6.3f} s "
          f"(includes the job's fixed start-up spread over {args.clips} clips)")


if __name__ == "__main__":
    main()
