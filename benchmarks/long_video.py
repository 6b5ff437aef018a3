"""Benchmark: the cost of a few frames from a long video, against its peers, whole processes.

    uv run python benchmarks/long_video.py [--repeats 3] [--no-cold] [--skip-dense]

The clip (made once in .bench/ with imageio-ffmpeg's binary, about 90 s on 2 cores):
    ffmpeg -f lavfi -i testsrc2=size=1280x720:rate=30:duration=1800 -c:v libx264 -preset ultrafast -g 250
30 minutes, 54,000 frames, about 1.6 GB. It prints, each against its peer:
- one timestamp (900.5 s), warm page cache: `keyframe-qa frames --at 900.5` vs `ffmpeg -ss 900.5 -i clip
  -frames:v 1 x.png`, and torchcodec (exact and approximate seek modes) where it can load FFmpeg;
- the same with a cold page cache (dropped before every run; needs root, else left out);
- peak RSS of `keyframe-qa frames --every 10 --format jpg` (180 frames) and `--every 1` (1,800 frames);
- the import time of the `frames` path (`python -X importtime`).
Two floors run beside them, so the ratios can be read against what any Python tool on this stack can do:
`python -c "import click, av"` (the interpreter and the two imports the CLI cannot avoid, no work), and a
plain PyAV script (seek, decode to the frame on screen, write the PNG with PyAV's encoder; no index, no
checks, no numpy).
Exactness: each tool's frame is matched to the frames on screen just before, at and just after 900.5 s
(testsrc2's pattern moves every frame); `frame_offset` 0 is the exact frame.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = os.path.join(ROOT, ".bench", "testsrc2_720p_30min.mp4")
AT = 900.5

TORCHCODEC = """
import sys, numpy as np
from torchcodec.decoders import VideoDecoder
frame = VideoDecoder(sys.argv[1], seek_mode=sys.argv[3]).get_frame_played_at(float(sys.argv[4]))
np.save(sys.argv[2], frame.data.permute(1, 2, 0).numpy())
"""


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ensure_clip() -> str:
    if not os.path.exists(CLIP):
        os.makedirs(os.path.dirname(CLIP), exist_ok=True)
        print("making the 30-minute clip (once)...", file=sys.stderr)
        subprocess.run(
            [
                ffmpeg(),
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30:duration=1800",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "250",
                CLIP + ".part.mp4",
            ],
            check=True,
        )
        os.replace(CLIP + ".part.mp4", CLIP)
    return CLIP


def measure(command: list[str]) -> tuple[float, float]:
    """Run a whole process: (wall seconds, its peak RSS in MB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    error = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[0]} failed: {error.strip()[-300:]}")
    return wall, usage.ru_maxrss / 1024


def drop_page_cache() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


PLAIN_PYAV = """
import sys, av
t = float(sys.argv[3])
with av.open(sys.argv[1]) as container:
    stream = container.streams.video[0]
    container.seek(int(t / stream.time_base), stream=stream, backward=True)
    shown = None
    for frame in container.decode(stream):
        if frame.time > t:
            break
        shown = frame
encoder = av.CodecContext.create("png", "w")
encoder.width, encoder.height, encoder.pix_fmt = shown.width, shown.height, "rgb24"
with open(sys.argv[2], "wb") as out:
    for packet in encoder.encode(shown.reformat(format="rgb24")) + encoder.encode(None):
        out.write(bytes(packet))
"""


def read_image(path: str) -> np.ndarray:
    import cv2

    if path.endswith(".npy"):
        return np.load(path)
    return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def one_timestamp(clip: str, folder: str, cold: bool, repeats: int, torchcodec: bool) -> dict:
    """Median wall seconds of each tool for the frame at AT, and whether each gave the same frame."""
    keyframe_qa = [
        os.path.join(os.path.dirname(sys.executable), "keyframe-qa"),
        "frames",
        clip,
        "--at",
        str(AT),
        "--out",
        os.path.join(folder, "kqa"),
    ]
    tools = {
        "keyframe-qa": (keyframe_qa, os.path.join(folder, "kqa", f"frame_000_{AT:010.3f}s.png")),
        "ffmpeg -ss": (
            [
                ffmpeg(),
                "-v",
                "error",
                "-y",
                "-ss",
                str(AT),
                "-i",
                clip,
                "-frames:v",
                "1",
                os.path.join(folder, "ffmpeg.png"),
            ],
            os.path.join(folder, "ffmpeg.png"),
        ),
    }
    plain = os.path.join(folder, "plain.png")
    tools["plain PyAV script"] = ([sys.executable, "-c", PLAIN_PYAV, clip, plain, str(AT)], plain)
    tools["python + import click, av"] = ([sys.executable, "-c", "import click, av"], None)
    if torchcodec:
        for mode in ("exact", "approximate"):
            out = os.path.join(folder, f"torchcodec_{mode}.npy")
            tools[f"torchcodec {mode}"] = ([sys.executable, "-c", TORCHCODEC, clip, out, mode, str(AT)], out)
    walls: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(repeats):
        for name, (command, _) in tools.items():
            if cold and not drop_page_cache():
                return {}
            if name == "keyframe-qa":
                subprocess.run(["rm", "-rf", os.path.join(folder, "kqa")], check=True)
            walls[name].append(measure(command)[0])
    neighbours = frames_around(clip)
    result = {}
    for name, (_, output) in tools.items():
        median = statistics.median(walls[name])
        result[name] = {
            "median_s": round(median, 3),
            "runs_s": [round(w, 3) for w in walls[name]],
            "frame_offset": closest(read_image(output), neighbours) if output else None,
        }
    base = result["ffmpeg -ss"]["median_s"]
    for name in result:
        result[name]["x_ffmpeg"] = round(result[name]["median_s"] / base, 2)
    return result


def frames_around(clip: str) -> list[np.ndarray]:
    """The frames on screen one frame before AT, at AT and one frame after (30 fps)."""
    sys.path.insert(0, ROOT)
    from keyframe_qa import extract_frames

    return [frame.image for frame in extract_frames(clip, [AT - 1 / 30, AT, AT + 1 / 30])]


def closest(image: np.ndarray, neighbours: list[np.ndarray]) -> int:
    """-1, 0 or +1: which of the neighbouring frames `image` is (colour conversions differ slightly
    between tools, the moving test pattern between frames a lot)."""
    errors = [float(np.abs(image.astype(np.int16) - other.astype(np.int16)).mean()) for other in neighbours]
    return int(np.argmin(errors)) - 1


def memory(clip: str, folder: str, every: str) -> dict:
    out = os.path.join(folder, f"every_{every}")
    command = [
        os.path.join(os.path.dirname(sys.executable), "keyframe-qa"),
        "frames",
        clip,
        "--every",
        every,
        "--format",
        "jpg",
        "--out",
        out,
    ]
    wall, peak = measure(command)
    count = len([name for name in os.listdir(out) if name.endswith(".jpg")])
    subprocess.run(["rm", "-rf", out], check=True)
    return {"frames": count, "wall_s": round(wall, 2), "peak_rss_mb": round(peak, 1)}


def import_time() -> dict:
    """Cumulative import time of the modules the `frames` command loads, from -X importtime."""
    code = (
        "import keyframe_qa.cli, keyframe_qa.video.probe, keyframe_qa.video.frames, keyframe_qa.jobs.ask, "
        "keyframe_qa.outputs.report"
    )
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    top = {}
    for line in result.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit() and not parts[2].startswith(" "):
            name = parts[2]
            if "." not in name:  # top-level packages only
                top[name] = top.get(name, 0) + int(parts[1]) / 1e6
    heaviest = dict(sorted(((k, round(v, 3)) for k, v in top.items()), key=lambda kv: -kv[1])[:6])
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return {"process_with_imports_s": round(time.perf_counter() - started, 3), "heaviest_top_level_s": heaviest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache runs")
    parser.add_argument("--skip-dense", action="store_true", help="skip the 1,800-frame memory run")
    args = parser.parse_args()
    clip = ensure_clip()
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from extract import torchcodec_works

    why_not = torchcodec_works()
    if why_not:
        print(f"torchcodec left out: {why_not}", file=sys.stderr)
    report = {"clip": os.path.relpath(clip, ROOT), "size_gb": round(os.path.getsize(clip) / 1e9, 2)}
    with tempfile.TemporaryDirectory() as folder:
        one_timestamp(clip, folder, cold=False, repeats=1, torchcodec=not why_not)  # warm caches and imports
        report["one_timestamp_warm"] = one_timestamp(clip, folder, False, args.repeats, not why_not)
        if not args.no_cold:
            cold = one_timestamp(clip, folder, True, args.repeats, not why_not)
            report["one_timestamp_cold"] = cold or "left out: dropping the page cache needs root"
        report["frames_every_10"] = memory(clip, folder, "10")
        if not args.skip_dense:
            report["frames_every_1"] = memory(clip, folder, "1")
    report["imports"] = import_time()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
