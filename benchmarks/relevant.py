"""Benchmark: what `--relevant` costs on a 30-minute clip, by candidate set and scorer, against its peers.

    uv run python benchmarks/relevant.py [--scorers clip,siglip] [--skip-ask]

The clip is benchmarks/long_video.py's (ffmpeg testsrc2, 1280x720, 30 fps, 30 minutes, keyframes every 250
frames; made once in .bench/). The scorers are the real architectures with random weights (CLIP ViT-B/32 and
SigLIP base-patch16-224, built here: nothing is downloaded), float32 on the CPU.

Each run is its own process (its peak RSS is its own):
1. Scoring the candidates (decode, shrink to the scorer's input as decoded, embed): keyframes only, and
   1 fps of exact frames from the index. Candidates scored per second, and peak memory.
2. Decoding alone: ours (the candidates decoded and shrunk, no scorer) against the peer a user would write
   for 1 fps, OpenCV reading every frame and keeping one a second (`grab` every frame, `retrieve` the kept
   ones); which frame OpenCV returned is checked against ours (`frame_offsets`, 0 is the same frame).
3. The whole `ask --relevant 16` with the tiny VLM against `ask --num-frames 16`, then a second question
   about the same video (the embeddings from the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


BUILD = """
import json, sys
from keyframe_qa.testing.tiny_model import build_tiny_checkpoint
from keyframe_qa.testing.tiny_scorer import build_tiny_scorer
for kind, path in json.loads(sys.argv[1]).items():
    build_tiny_scorer(path, kind, architecture="base")
build_tiny_checkpoint(sys.argv[2], "qwen2-vl")
"""


def child(args) -> dict:
    """One measured run in this process."""
    from keyframe_qa.video.probe import probe

    probed = probe(args.clip)
    if args.part == "score":
        from keyframe_qa.engines.scorer import load_scorer
        from keyframe_qa.selection.relevant import _embed, candidate_numbers

        scorer = load_scorer(args.scorer, "cpu")
        started = time.perf_counter()
        numbers = candidate_numbers(probed, args.candidates)
        embeddings = _embed(probed, numbers, scorer)
        wall = time.perf_counter() - started
        return {
            "candidates": args.candidates,
            "scored": len(numbers),
            "wall_s": round(wall, 1),
            "per_second": round(len(numbers) / wall, 1),
            "dim": int(embeddings.shape[1]),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    if args.part == "decode":  # ours, the candidates decoded and shrunk, no scorer
        from dataclasses import replace

        from keyframe_qa.selection.relevant import _shrink, candidate_numbers
        from keyframe_qa.video.frames import iter_frames

        started = time.perf_counter()
        numbers = candidate_numbers(probed, args.candidates)
        decoded = sum(
            1
            for _ in iter_frames(
                probed,
                [probed.frame_time(n) for n in numbers],
                convert=lambda f: replace(f, image=_shrink(f.image, 224)),
            )
        )
        wall = time.perf_counter() - started
        return {
            "candidates": args.candidates,
            "scored": decoded,
            "wall_s": round(wall, 1),
            "per_second": round(decoded / wall, 1),
            "scorer": "none: decode and shrink only",
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    if args.part == "opencv":  # the peer: read every frame, keep one a second
        import cv2
        import numpy as np

        from keyframe_qa.video.frames import read_frames

        started = time.perf_counter()
        capture = cv2.VideoCapture(args.clip)
        step = round(capture.get(cv2.CAP_PROP_FPS))
        kept, number, samples = 0, 0, {}
        while capture.grab():
            if number % step == 0:
                ok, image = capture.retrieve()
                kept += 1
                if number in (0, 27000, 53970):
                    samples[number] = image[:, :, ::-1].copy()
            number += 1
        wall = time.perf_counter() - started
        # Which frame each is: the nearest of ours one frame before, at and after (testsrc2 moves every
        # frame; OpenCV's colour matrix differs from a player's, so the pixels are never equal).
        offsets = []
        for n, image in samples.items():
            around = [max(0, n - 1), n, min(probed.frame_count - 1, n + 1)]
            ours = read_frames(probed, [probed.frame_time(k) for k in around])
            errors = [float(np.abs(f.image.astype(int) - image.astype(int)).mean()) for f in ours]
            offsets.append(around[errors.index(min(errors))] - n)
        return {
            "candidates": "1 (OpenCV: every frame grabbed, one a second retrieved)",
            "scored": kept,
            "wall_s": round(wall, 1),
            "per_second": round(kept / wall, 1),
            "frame_offsets": offsets,
            "scorer": "none: decode only",
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    raise SystemExit(f"unknown part {args.part}")


def measured(command: list[str], env=None) -> tuple[float, float, str]:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    out, status, usage = process.stdout.read(), *os.wait4(process.pid, 0)[1:]
    err = process.stderr.read().decode(errors="replace")
    process.stdout.close()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:4])}... failed: {err.strip()[-800:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scorers", default="clip,siglip")
    parser.add_argument("--skip-ask", action="store_true")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--scorer", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(child(args)))
        return
    from long_video import ensure_clip

    clip = ensure_clip()
    result = {"clip": "testsrc2 1280x720 30 fps, 30 min, keyframes every 250 frames", "scoring": [], "ask": {}}
    with tempfile.TemporaryDirectory() as folder:
        # Built in a child: Linux keeps a process's peak RSS across fork and exec, so a parent holding the
        # models would lend its size to every measured child.
        scorers = {kind: os.path.join(folder, kind) for kind in args.scorers.split(",")}
        model = os.path.join(folder, "vlm")
        subprocess.run([sys.executable, "-c", BUILD, json.dumps(scorers), model], check=True, cwd=ROOT)
        for candidates in ("keyframes", "1"):
            _, _, out = measured(
                [sys.executable, __file__, "--part", "decode", "--clip", clip, "--candidates", candidates]
            )
            result["scoring"].append(json.loads(out))
            print(out.strip(), file=sys.stderr)
        for kind, path in scorers.items():
            for candidates in ("keyframes", "1"):
                _, _, out = measured(
                    [
                        sys.executable,
                        __file__,
                        "--part",
                        "score",
                        "--clip",
                        clip,
                        "--scorer",
                        path,
                        "--candidates",
                        candidates,
                    ]
                )
                row = dict(json.loads(out), scorer=f"{kind} base (random weights, CPU float32)")
                result["scoring"].append(row)
                print(json.dumps(row), file=sys.stderr)
        _, _, out = measured([sys.executable, __file__, "--part", "opencv", "--clip", clip])
        result["scoring"].append(json.loads(out))
        print(out.strip(), file=sys.stderr)
        if not args.skip_ask:
            scorer = scorers.get("clip") or next(iter(scorers.values()))
            env = dict(os.environ, KEYFRAME_QA_CACHE_DIR=os.path.join(folder, "cache"))
            base = [sys.executable, "-m", "keyframe_qa", "ask", clip, "--model", model, "--max-new-tokens", "8"]
            for name, extra in (
                ("--num-frames 16", ["What is shown?", "--num-frames", "16"]),
                (
                    "--relevant 16 (keyframes, cache empty)",
                    ["What is shown?", "--relevant", "16", "--scorer", scorer, "--candidates", "keyframes"],
                ),
                (
                    "--relevant 16 (keyframes), a second question: from the cache",
                    ["Is anything moving?", "--relevant", "16", "--scorer", scorer, "--candidates", "keyframes"],
                ),
                (
                    "--relevant 16 (1 fps, cache empty)",
                    ["What is shown?", "--relevant", "16", "--scorer", scorer, "--candidates", "1"],
                ),
                (
                    "--relevant 16 (1 fps), a second question: from the cache",
                    ["Is anything moving?", "--relevant", "16", "--scorer", scorer, "--candidates", "1"],
                ),
            ):
                wall, rss, out = measured(base + extra, env)
                selection = json.loads(out)["selection"]
                result["ask"][name] = {
                    "wall_s": round(wall, 1),
                    "peak_rss_mb": round(rss),
                    "cache": selection.get("cache"),
                    "scored": selection.get("scored"),
                }
                print(name, result["ask"][name], file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
