"""Benchmark: the same clips in a plain `batch` and in `batch --ray` on a local Ray cluster.

    uv run python benchmarks/ray_batch.py [--clips 16]

The tiny random Qwen2-VL checkpoint the tests use (built once in .bench/), CPU. Each `--ray` run starts
a local cluster of its own (no RAY_ADDRESS, no `ray start` here), whose start-up is also timed alone;
then each batch is a whole `keyframe-qa batch` process, plain first, then --ray, interleaved over two
rounds. Both must answer every clip with the same replies. Prints seconds, videos/s and the
per-video overhead of going through Ray on one node. This machine has one node: what several nodes
gain is not measured here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from timing import answered, bench_model, clip_copies, timed_batch  # noqa: E402


def batch(clips: str, output: str, model: str, extra: list[str], env: dict) -> float:
    return timed_batch(
        clips, output, model, ["--at", "0.5,1.5,3.5", "--max-new-tokens", "16", *extra], cwd=ROOT, env=env
    )


def replies(output: str) -> dict:
    return {os.path.basename(r["video"]["path"]): [a["raw"] for a in r["answers"]] for r in answered(output)}


def _cluster_start(env: dict) -> float:
    """Seconds a whole process needs to start a local Ray cluster, use it once, and end it."""
    code = (
        "import time, ray; t = time.perf_counter(); ray.init(include_dashboard=False, log_to_driver=False); "
        "ray.get(ray.remote(lambda: 1).remote()); ray.shutdown(); print(time.perf_counter() - t)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from keyframe_qa.testing.synthetic import SyntheticSpec

    model = bench_model(ROOT)
    work = tempfile.mkdtemp(prefix="kfqa-ray-")
    clips = clip_copies(
        work, args.clips, SyntheticSpec(width=640, height=360, frame_count=40, fps=10, gop=20, bframes=2)
    )
    # `--ray` with no RAY_ADDRESS and no `ray start` here starts a local cluster of its own each run (and
    # ends it with the process), so nothing else on the machine is touched. Its start-up is timed apart.
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    env.pop("RAY_ADDRESS", None)
    cluster_start = _cluster_start(env)
    plain, ray_runs = [], []
    try:
        for _ in range(args.rounds):
            plain.append(batch(clips, os.path.join(work, "plain.jsonl"), model, [], env))
            ray_runs.append(batch(clips, os.path.join(work, "ray.jsonl"), model, ["--ray"], env))
        assert replies(os.path.join(work, "plain.jsonl")) == replies(os.path.join(work, "ray.jsonl")), (
            "the Ray batch must answer as the plain one does"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best_plain, best_ray = min(plain), min(ray_runs)
    print(
        f"{args.clips} clips of 640x360, 3 frames, 16 new tokens, tiny Qwen2-VL on CPU ({os.cpu_count()} cores), "
        f"one node; best of {args.rounds} whole processes"
    )
    print(f"  a local Ray cluster's start, alone:  {cluster_start:6.2f} s")
    print(f"  plain batch:                         {best_plain:6.2f} s  {args.clips / best_plain:5.2f} videos/s")
    print(f"  batch --ray (its own local cluster): {best_ray:6.2f} s  {args.clips / best_ray:5.2f} videos/s")
    print(
        f"  Ray overhead per video:              {(best_ray - best_plain) / args.clips:6.3f} s, "
        f"{(best_ray - best_plain - cluster_start) / args.clips:6.3f} s without the cluster's start"
    )


if __name__ == "__main__":
    main()
