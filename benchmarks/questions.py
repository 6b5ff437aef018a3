"""Benchmark: several questions about the same frames, shared prefix cache vs one prompt each.

    uv run python benchmarks/questions.py [--questions 3] [--layers 28] [--device auto]

The model is the real Qwen2-VL-2B architecture (its published config: 28 layers of 1536 wide
text, a 32-block 1280-wide vision tower) with random weights and the test suite's tokenizer,
saved once under .bench/ and loaded through `from_pretrained`. Answers are noise; the work is
real. Both ways run in this process on the same frames, and the greedy replies must match.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def build(path: str, layers: int) -> None:
    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

    # No end-of-sequence token: every question generates exactly max_new_tokens.
    build_tiny_checkpoint(path, "qwen2-vl", architecture="2b", layers=layers, end_token=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--max-visual-tokens", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch

    from keyframe_qa.jobs.ask import extract_frames, load_model
    from keyframe_qa.model.budget import plan_budget
    from keyframe_qa.records import GenerationSettings, VisualPrompt

    path = os.path.join(ROOT, ".bench", f"qwen2-vl-2b-random-{args.layers}l")
    if not os.path.exists(os.path.join(path, "config.json")):
        print(f"building the random Qwen2-VL-2B checkpoint in {path} (once)...", file=sys.stderr)
        build(path, args.layers)
    model = load_model(path, device=args.device)
    clip = os.path.join(ROOT, "sample_videos", "bigbuckbunny.mp4")
    times = [1.0 + i * 3.0 / max(1, args.frames - 1) for i in range(args.frames)]
    frames = extract_frames(clip, times)
    budgets = plan_budget([(f.width, f.height) for f in frames], model.family, max_visual_tokens=args.max_visual_tokens)
    prompt = VisualPrompt(
        images=[f.image for f in frames],
        budgets=budgets,
        labels=[f"frame {i + 1}" for i in range(len(frames))],
        mode="images",
        times=times,
    )
    questions = [f"Question {i + 1}: what changes between the frames?" for i in range(args.questions)]

    def timed(call):
        if model.device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = call()
        if model.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started, result

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, do_sample=False)
    model.answer(prompt, questions[:1], GenerationSettings(max_new_tokens=2, do_sample=False))  # warm-up
    separate_s, separate = timed(lambda: [model.answer(prompt, [q], settings)[0] for q in questions])
    shared_s, shared = timed(lambda: model.answer(prompt, questions, settings))
    print(
        json.dumps(
            {
                "model": f"Qwen2-VL-2B architecture, random weights, {args.layers} layers, {model.dtype_name}",
                "device": model.device,
                "frames": len(frames),
                "visual_tokens": sum(b.visual_tokens for b in budgets),
                "prompt_tokens": shared[0].prompt_tokens,
                "questions": len(questions),
                "new_tokens_each": shared[0].completion_tokens,
                "one_prompt_each_s": round(separate_s, 2),
                "shared_prefix_s": round(shared_s, 2),
                "speedup": round(separate_s / shared_s, 2),
                "same_replies": [r.raw for r in shared] == [r.raw for r in separate],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
