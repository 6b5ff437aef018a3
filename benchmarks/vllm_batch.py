"""Benchmark: a batch of small clips through vLLM's CPU build at --concurrency 1, 4 and 8, beside the in-process
engine on the same clips and checkpoint.

    uv run python benchmarks/vllm_batch.py [--clips 16] [--new-tokens 24]

vLLM runs in an environment of its own (keyframe_qa/testing/vllm_tool.py installs it once) and serves the tiny
random Qwen2-VL with vLLM-sized attention heads (built once in .bench/). Each batch is a whole `keyframe-qa
batch` process; the server is started before and stays warm. Every run must answer every clip with the
in-process engine's prompt and completion token counts (greedy): a faster run that answered differently would
not count. Prints videos/s and the ratios.
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

from timing import answered, clip_copies, timed_batch  # noqa: E402


def vllm_model() -> str:
    """The tiny Qwen2-VL with heads of 32 (what vLLM's CPU attention takes), built once in .bench/."""
    model = os.path.join(ROOT, ".bench", "tiny-qwen2-vl-vllm")
    if not os.path.exists(os.path.join(model, "config.json")):
        from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

        build_tiny_checkpoint(model, "qwen2-vl", architecture="vllm")
    return model


def counts(output: str) -> dict:
    return {
        os.path.basename(r["video"]["path"]): (r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"])
        for r in answered(output)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args()

    from keyframe_qa.testing.synthetic import SyntheticSpec
    from keyframe_qa.testing.vllm_tool import ensure_vllm, start_vllm, stop_vllm

    python, why = ensure_vllm()
    if python is None:
        sys.exit(f"vLLM cannot be installed here: {why}")
    model = vllm_model()
    work = tempfile.mkdtemp(prefix="kfqa-vllm-")
    clips = clip_copies(
        work, args.clips, SyntheticSpec(width=336, height=224, frame_count=20, fps=10, gop=10, bframes=0)
    )
    options = ["--at", "0.5,1.5", "--max-new-tokens", str(args.new_tokens)]
    results = {}
    try:
        results["in-process transformers engine"] = timed_batch(
            clips, os.path.join(work, "local.jsonl"), model, options, cwd=ROOT
        )
        reference = counts(os.path.join(work, "local.jsonl"))
        process, url = start_vllm(python, model, work)
        try:
            for concurrency in (1, 4, 8):
                output = os.path.join(work, f"vllm-{concurrency}.jsonl")
                seconds = timed_batch(
                    clips,
                    output,
                    model,
                    [*options, "--engine", "openai", "--base-url", url, "--concurrency", str(concurrency)],
                    cwd=ROOT,
                )
                assert counts(output) == reference, "every run must answer as the in-process engine does"
                results[f"vLLM CPU, --concurrency {concurrency}"] = seconds
        finally:
            stop_vllm(process)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.clips} clips, 2 frames each, {args.new_tokens} new tokens, tiny Qwen2-VL (heads of 32) on CPU "
        f"({os.cpu_count()} cores); whole `keyframe-qa batch` processes"
    )
    base = results["in-process transformers engine"]
    for name, seconds in results.items():
        print(f"  {name:40} {seconds:6.2f} s  {args.clips / seconds:5.2f} videos/s  {base / seconds:4.2f}x")


if __name__ == "__main__":
    main()
