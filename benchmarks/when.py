"""Benchmark: what `when` spends to find one event's exact first and last frame in a long clip.

    uv run python benchmarks/when.py [--lengths 5,30] [--model-cost] [--device cpu|cuda]

The clips (made once in .bench/ with imageio-ffmpeg's binary): ffmpeg's testsrc2 at 320x240, 30 fps, with one
event drawn in, a filled red box enabled between two times off every grid:
    ffmpeg -f lavfi -i testsrc2=size=320x240:rate=30:duration=D
           -vf "drawbox=x=120:y=80:w=80:h=60:color=red:t=fill:enable='between(t,A,B)'" -c:v libx264 ...
The event's exact frames are known from A and B (frame n is shown at n/30 s); the stand-in's reading of the
box is itself checked on the frames just outside and inside them before anything is timed.

Searched with the perfect-model stand-in (testing/oracle.py's DrawnBoxOracle, which reads the box from the
pixels), so what is measured is the search: engine calls, frames decoded, visual tokens, wall time, and peak
memory, each length in its own process (peak RSS must stay flat in the video's length). Peers in the same run:
- a dense scan: one single-frame probe per frame, the way to frame precision without a search (counted);
- one coarse pass alone (--no-refine): how many frames of error remain at each boundary.
--model-cost times one coarse call and one probe on the Qwen2-VL-2B architecture (random bf16 weights, built
here: nothing is downloaded) and prices the search's calls with them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
FPS = 30
BOX = (120, 80, 80, 60)  # x, y, width, height
RED = (255, 0, 0)


def event_times(minutes: float) -> tuple[float, float]:
    """The event's start and end, seconds: 40% into the clip, 17.63 s long, off the 30 fps and 1 fps grids."""
    start = round(minutes * 60 * 0.4 + 0.4167, 4)
    return start, round(start + 17.63, 4)


def exact_frames(start: float, end: float) -> tuple[int, int]:
    """drawbox's `between(t,A,B)` is inclusive: the first frame at or after A, the last at or before B."""
    return math.ceil(start * FPS - 1e-9), math.floor(end * FPS + 1e-9)


def ensure_clip(minutes: float) -> str:
    import imageio_ffmpeg

    clip = os.path.join(ROOT, ".bench", f"when_drawbox_{minutes:g}min.mp4")
    if not os.path.exists(clip):
        os.makedirs(os.path.dirname(clip), exist_ok=True)
        start, end = event_times(minutes)
        x, y, w, h = BOX
        print(f"making the {minutes:g}-minute clip (once)...", file=sys.stderr)
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size=320x240:rate={FPS}:duration={minutes * 60:g}",
                "-vf",
                f"drawbox=x={x}:y={y}:w={w}:h={h}:color=red:t=fill:enable='between(t,{start},{end})'",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "60",
                "-bf",
                "2",
                "-pix_fmt",
                "yuv420p",
                clip + ".part.mp4",
            ],
            check=True,
        )
        os.replace(clip + ".part.mp4", clip)
    return clip


def search(minutes: float) -> dict:
    """One length, in this process: the stand-in's reading checked, then the refined search and one coarse pass."""
    from keyframe_qa import extract_frames
    from keyframe_qa.jobs.when import WhenRequest, find_moments
    from keyframe_qa.testing.oracle import DrawnBoxOracle

    clip = ensure_clip(minutes)
    first, last = exact_frames(*event_times(minutes))
    check = DrawnBoxOracle(BOX, RED)
    frames = extract_frames(clip, [(n + 0.5) / FPS for n in (first - 1, first, last, last + 1)])
    seen = [check.shows(f.image) for f in frames]
    if seen != [False, True, True, False]:
        raise SystemExit(f"the stand-in misreads the drawn box around frames {first} and {last}: {seen}")
    rows = {}
    for name, refine in (("when (refined)", True), ("one coarse pass", False)):
        oracle = DrawnBoxOracle(BOX, RED)
        started = time.perf_counter()
        report = find_moments(WhenRequest(video=clip, query="a red box", refine=refine), engine=oracle)
        wall = time.perf_counter() - started
        (moment,) = report["moments"]
        coarse_calls = len(report["passes"])
        rows[name] = {
            "calls": report["usage"]["calls"],
            "coarse_calls": coarse_calls,
            "probes": report["usage"]["calls"] - coarse_calls,
            "frames_decoded": len(oracle.seen),
            "visual_tokens": report["usage"]["visual_tokens"],
            "wall_s": round(wall, 2),
            "first_frame_error": moment["first_frame"]["frame_number"] - first,
            "last_frame_error": moment["last_frame"]["frame_number"] - last,
        }
    count = round(minutes * 60 * FPS)
    rows["dense scan (counted)"] = {
        "calls": count,
        "frames_decoded": count,
        "first_frame_error": 0,
        "last_frame_error": 0,
    }
    return {
        "minutes": minutes,
        "frames": count,
        "event_frames": [first, last],
        "runs": rows,
        "calls_vs_dense": round(count / rows["when (refined)"]["calls"], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def model_cost(device: str, result: dict) -> dict:
    """One coarse call (a window's frames of the longest clip) and one probe, timed on the 2B architecture."""
    from keyframe_qa import extract_frames, load_model
    from keyframe_qa.answering import AnswerOptions, answer_frames
    from keyframe_qa.options import OPTIONS
    from keyframe_qa.records import GenerationSettings
    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

    longest = max(result["lengths"], key=lambda row: row["minutes"])
    clip = ensure_clip(longest["minutes"])
    window = OPTIONS["window_frames"].default
    with tempfile.TemporaryDirectory() as folder:
        print("building the Qwen2-VL-2B architecture (random weights)...", file=sys.stderr)
        path = build_tiny_checkpoint(os.path.join(folder, "2b"), "qwen2-vl", architecture="2b", device=device)
        engine = load_model(path, device=device)
        frames = extract_frames(clip, [600.0 + i for i in range(window)])
        timings = {}
        for name, chosen, tokens in (("coarse_call", frames, 32), ("probe", frames[:1], 4)):
            options = AnswerOptions(generation=GenerationSettings(max_new_tokens=tokens, do_sample=False))
            if device != "cpu":  # a GPU's first call pays for kernels and allocator growth
                answer_frames(engine, chosen, ["When does a red box appear?"], options, warn_cut=False)
            started = time.perf_counter()
            answers, budgets = answer_frames(engine, chosen, ["When does a red box appear?"], options, warn_cut=False)
            timings[name] = {
                "s": round(time.perf_counter() - started, 3),
                "frames": len(chosen),
                "visual_tokens": sum(b.visual_tokens for b in budgets),
                "new_tokens": answers[0].completion_tokens,
            }
    refined = longest["runs"]["when (refined)"]
    estimate = refined["coarse_calls"] * timings["coarse_call"]["s"] + refined["probes"] * timings["probe"]["s"]
    dense = longest["frames"] * timings["probe"]["s"]
    return {
        "device": device,
        "model": "Qwen2-VL-2B architecture, random bf16 weights",
        **timings,
        "search_model_s": round(estimate, 1),
        "dense_scan_model_s": round(dense, 1),
        "coarse_pass_alone_s": round(refined["coarse_calls"] * timings["coarse_call"]["s"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="5,30", help="clip lengths in minutes, comma-separated")
    parser.add_argument("--model-cost", action="store_true", help="time one call on the Qwen2-VL-2B architecture")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # a child process: one length
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(search(args.one)))
        return
    result = {"lengths": []}
    for minutes in (float(m) for m in args.lengths.split(",")):
        ensure_clip(minutes)  # made outside the measured process
        child = subprocess.run([sys.executable, __file__, "--one", str(minutes)], capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(child.stderr.strip()[-2000:])
        result["lengths"].append(json.loads(child.stdout))
        print(json.dumps(result["lengths"][-1]), file=sys.stderr)
    if args.model_cost:
        result["model_cost"] = model_cost(args.device, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
