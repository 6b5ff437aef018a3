"""Benchmark: a batch of small clips through an OpenAI-compatible server at concurrency 1 and 4.

    uv run python benchmarks/engines.py [--clips 16] [--new-tokens 24]

The server is `transformers serve` on the tiny random Qwen2-VL checkpoint the tests use (built once in
.bench/), on CPU, started twice: as it comes (one request at a time) and with --continuous-batching (it
batches the requests in flight). The same clips, questions and frames go through `keyframe-qa batch
--engine openai` at --concurrency 1 and 4 against each, in one run, plus the in-process transformers
engine as the peer a user would otherwise pick. Each batch is a whole process; the server is started
before and stays warm. Every run must answer every clip, and the answers of all runs must be the same
(greedy): a faster run that answered differently would not count. Prints videos/s and the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from timing import answered, bench_model, clip_copies, timed_batch  # noqa: E402


def batch(clips_dir: str, output: str, model: str, new_tokens: int, extra: list[str]) -> float:
    return timed_batch(
        clips_dir, output, model, ["--at", "0.5,1.5", "--max-new-tokens", str(new_tokens), *extra], cwd=ROOT
    )


def answers(output: str) -> dict:
    # The served text can carry the server's own wrapping; the token counts are the engines' own.
    return {os.path.basename(r["video"]["path"]): r["usage"] for r in answered(output)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args()

    from keyframe_qa.testing.serving_tool import start_server, stop_server
    from keyframe_qa.testing.synthetic import SyntheticSpec

    model = bench_model(ROOT)
    work = tempfile.mkdtemp(prefix="kfqa-engines-")
    clips = clip_copies(
        work, args.clips, SyntheticSpec(width=336, height=224, frame_count=20, fps=10, gop=10, bframes=0)
    )

    results = {}
    reference = None
    try:
        seconds = batch(clips, os.path.join(work, "local.jsonl"), model, args.new_tokens, [])
        results["in-process transformers engine"] = seconds
        reference = answers(os.path.join(work, "local.jsonl"))
        for server_mode, server_args in (
            ("server, one request at a time", []),
            ("server, continuous batching", ["--continuous-batching"]),
        ):
            process, url = start_server(model, work, *server_args)
            try:
                for concurrency in (1, 4):
                    output = os.path.join(work, f"{len(results)}.jsonl")
                    seconds = batch(
                        clips,
                        output,
                        model,
                        args.new_tokens,
                        ["--engine", "openai", "--base-url", url, "--concurrency", str(concurrency)],
                    )
                    assert answers(output) == reference, "every run must answer as the in-process engine does"
                    results[f"{server_mode}, --concurrency {concurrency}"] = seconds
            finally:
                stop_server(process)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.clips} clips, 2 frames each, {args.new_tokens} new tokens, tiny Qwen2-VL on CPU "
        f"({os.cpu_count()} cores); whole `keyframe-qa batch` processes"
    )
    base = results["in-process transformers engine"]
    for name, seconds in results.items():
        print(f"  {name:58} {seconds:6.2f} s  {args.clips / seconds:5.2f} videos/s  {base / seconds:4.2f}x")
    for mode in ("one request at a time", "continuous batching"):
        one, four = results[f"server, {mode}, --concurrency 1"], results[f"server, {mode}, --concurrency 4"]
        print(f"  concurrency 4 vs 1, {mode}: {one / four:.2f}x")


if __name__ == "__main__":
    main()
