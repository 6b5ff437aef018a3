"""Benchmark: what `when` spends to find one event's exact boundaries in a long clip.

    uv run python benchmarks/when.py [--minutes 10] [--fps 10]

A synthetic clip (each frame's number stamped in its pixels; made once in .bench/) with one event on
frames FIRST..LAST, searched with the perfect-model stand-in (testing/oracle.py: it reads the pixels), so
what is measured is the search itself: engine calls, frames decoded, visual tokens, wall time, peak memory.
Peers in the same run:
- a dense scan: one single-frame probe per frame, the way to frame precision without a search (its calls
  are counted, not run);
- one coarse pass alone (--no-refine): how many frames of error remain at each boundary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()
    from keyframe_qa.jobs.when import WhenRequest, find_moments
    from keyframe_qa.testing.oracle import PixelOracle
    from keyframe_qa.testing.synthetic import SyntheticSpec, write_video

    frames = int(args.minutes * 60 * args.fps)
    clip = os.path.join(ROOT, ".bench", f"when_{frames}f_{args.fps}fps.mp4")
    if not os.path.exists(clip):
        os.makedirs(os.path.dirname(clip), exist_ok=True)
        write_video(clip, SyntheticSpec(frame_count=frames, fps=args.fps, gop=5 * args.fps, bframes=2))
    first, last = int(frames * 0.4) + 3, int(frames * 0.4) + 3 + 17 * args.fps + 7  # about 17.7 s, off the grid
    rows = {}
    for name, refine in (("when (refined)", True), ("one coarse pass", False)):
        oracle = PixelOracle(first, last)
        started = time.perf_counter()
        report = find_moments(WhenRequest(video=clip, query="the event", refine=refine), engine=oracle)
        wall = time.perf_counter() - started
        (moment,) = report["moments"]
        rows[name] = {
            "calls": report["usage"]["calls"], "frames_decoded": len(oracle.seen),
            "visual_tokens": report["usage"]["visual_tokens"], "wall_s": round(wall, 2),
            "first_frame_error": moment["first_frame"]["frame_number"] - first,
            "last_frame_error": moment["last_frame"]["frame_number"] - last,
            "probes": moment["probes"], "windows": len(report["passes"]),
        }
    rows["dense scan (counted)"] = {"calls": frames, "frames_decoded": frames, "first_frame_error": 0,
                                    "last_frame_error": 0}
    result = {"clip": {"frames": frames, "fps": args.fps, "minutes": args.minutes, "event": [first, last]},
              "runs": rows,
              "calls_vs_dense": round(frames / rows["when (refined)"]["calls"], 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
