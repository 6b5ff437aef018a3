"""Benchmark: `keyframe-qa scenes` vs the PySceneDetect CLI, with pure decoding as the floor.

    uv run python benchmarks/scenes.py [--repeats 3]

Clip: the 60 s 1920x1080 H.264 clip of benchmarks/extract.py (Big Buck Bunny footage looped, so it
has real cuts where the loop restarts), made once in .bench/. Each contender runs as a whole
process, interleaved, in this one run:
  keyframe-qa   `keyframe-qa scenes CLIP --no-cache` (ContentDetector, default parameters)
  pyscenedetect `scenedetect -i CLIP detect-content list-scenes` (the CLI's default detector)
  decode        PyAV decoding every frame and nothing else: the floor the issue measures against
  decode+bgr    OpenCV reading every frame as BGR and nothing else: the input PySceneDetect's detectors
                must see, pixel for pixel, for its cuts to be reproduced (the floor for identical cuts)
Prints the medians, the ratios, and whether the two cut lists are identical.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from extract import ensure_clip  # noqa: E402
from timing import run_process  # noqa: E402

DECODE = """
import sys, av
with av.open(sys.argv[1]) as container:
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "AUTO"
    count = sum(1 for _ in container.decode(stream))
print(count)
"""

DECODE_BGR = """
import sys, cv2
capture = cv2.VideoCapture(sys.argv[1])
count = 0
while capture.read()[0]:
    count += 1
print(count)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    clip = ensure_clip()
    scenedetect_cli = shutil.which("scenedetect", path=os.path.dirname(sys.executable)) or "scenedetect"
    work = tempfile.mkdtemp()
    env = dict(os.environ, KEYFRAME_QA_CACHE_DIR=os.path.join(work, "cache"))
    contenders = {
        "keyframe-qa": [sys.executable, "-m", "keyframe_qa", "scenes", clip, "--no-cache"],
        "pyscenedetect-cli": [
            scenedetect_cli,
            "-q",
            "-i",
            clip,
            "-o",
            work,
            "detect-content",
            "list-scenes",
            "-f",
            "scenes.csv",
            "--skip-cuts",
        ],
        "decode": [sys.executable, "-c", DECODE, clip],
        "decode+bgr": [sys.executable, "-c", DECODE_BGR, clip],
    }
    walls = {name: [] for name in contenders}
    cpus = {name: [] for name in contenders}
    outputs = {}
    for _ in range(args.repeats):
        for name, command in contenders.items():
            wall, cpu, outputs[name] = run_process(command, cwd=ROOT, env=env)
            walls[name].append(wall)
            cpus[name].append(cpu)

    ours = [(s["start_frame"], s["end_frame"]) for s in json.loads(outputs["keyframe-qa"])["scenes"]]
    with open(os.path.join(work, "scenes.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    # The CLI numbers frames from 1 and gives inclusive ends; ours count from 0 with exclusive ends.
    theirs = [(int(r["Start Frame"]) - 1, int(r["End Frame"])) for r in rows]
    medians = {name: round(statistics.median(values), 3) for name, values in walls.items()}
    print(
        json.dumps(
            {
                "clip": os.path.relpath(clip, ROOT),
                "median_wall_s": medians,
                "median_cpu_s": {name: round(statistics.median(values), 3) for name, values in cpus.items()},
                "wall_runs_s": {name: [round(v, 3) for v in values] for name, values in walls.items()},
                "keyframe_qa_vs_pyscenedetect_cli": round(medians["keyframe-qa"] / medians["pyscenedetect-cli"], 2),
                "keyframe_qa_vs_pure_decode": round(medians["keyframe-qa"] / medians["decode"], 2),
                "keyframe_qa_vs_decode_bgr": round(medians["keyframe-qa"] / medians["decode+bgr"], 2),
                "decode_bgr_vs_pure_decode": round(medians["decode+bgr"] / medians["decode"], 2),
                "scenes": len(ours),
                "identical_cuts": ours == theirs,
                "cuts": [start for start, _ in ours[1:]],
            },
            indent=2,
        )
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
