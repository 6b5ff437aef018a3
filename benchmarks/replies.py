"""Benchmark: the reply parsers' time against the reply's length, 1 KB to 16 MB, in one line and in many.

    uv run python benchmarks/replies.py            # up to 16 MB
    uv run python benchmarks/replies.py --max-mb 1

A server may send a reply of up to 16 MiB (the OpenAI engine's cap). For each shape of reply (spans in one
line and one a line, JSON boxes, and the hostile shapes that once made a parser quadratic) it times
`parse_moments` and `find_boxes` for the three families at sizes growing four times a step, and prints the
time per megabyte at each size: a linear parser keeps it flat, a quadratic one multiplies it by four each
step. The peers are what a user would reach for instead: `json.loads` (strict, valid JSON only) and
json-repair's `loads` (the tolerant reader), each timed on the same text until a size takes it over 10 s.
Before the fix the one-line reply of spans took 2.5 s at 21 KB (hours at 16 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from keyframe_qa.replies.boxes import FrameGeometry, find_boxes  # noqa: E402
from keyframe_qa.replies.moments import parse_moments  # noqa: E402

KB, MB = 1 << 10, 1 << 20
FRAMES = [FrameGeometry(i, (280, 280), (320, 240), f"0:00:0{i}.000") for i in range(4)]
SHAPES = {
    "spans, one line": "from 1 to 2 seconds. ",
    "spans, a line each": "from 1 to 2 seconds.\n",
    "JSON boxes": None,  # a valid JSON list, built to size
    "escaped quotes in brackets": "[\\'",
    "unclosed object refs": "<|object_ref_start|>",
    "'frame' and blanks": "frame" + " " * 1000,
    "box line and blanks": "1,2,3,4" + " " * 1000,
    "open brackets": "[",
}
PEER_LIMIT_S = 10.0


def reply(shape: str, size: int) -> str:
    piece = SHAPES[shape]
    if piece is None:
        item = '{"bbox_2d": [10, 20, 30, 40], "label": "car"}'
        return "[" + ", ".join([item] * max(1, size // (len(item) + 2))) + "]"
    return (piece * (size // len(piece) + 1))[:size]


def timed(function, text: str) -> float:
    started = time.perf_counter()
    function(text)
    return time.perf_counter() - started


def peer(function, text: str) -> tuple[str, float]:
    """A peer's time as printed, and in seconds (a peer that raises is shown failing, by its error's name)."""
    try:
        took = timed(function, text)
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, 0.0
    return f"{took:.3f}s", took


def ours(text: str) -> None:
    parse_moments(text)
    for family in ("qwen2-vl", "qwen2.5-vl", "qwen3-vl"):
        find_boxes(text, family, FRAMES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mb", type=float, default=16.0)
    args = parser.parse_args()
    sizes = [KB]
    while sizes[-1] * 4 <= args.max_mb * MB:
        sizes.append(sizes[-1] * 4)
    import json_repair

    print(f"{'shape':28s} {'size':>7s} {'ours':>8s} {'ours s/MB':>9s} {'json.loads':>10s} {'json-repair':>11s}")
    for shape in SHAPES:
        per_mb = []
        repair_done = False
        for size in sizes:
            text = reply(shape, size)
            seconds = timed(ours, text)
            per_mb.append(seconds / (len(text) / MB))
            strict = repair = "-"
            if SHAPES[shape] is None:
                strict, _ = peer(json.loads, text)
            if not repair_done:
                repair, took = peer(json_repair.loads, text)
                repair_done = took > PEER_LIMIT_S
            label = f"{size // MB} MB" if size >= MB else f"{size // KB} KB"
            print(f"{shape:28s} {label:>7s} {seconds:7.3f}s {per_mb[-1]:9.3f} {strict:>10s} {repair:>11s}", flush=True)
        # Linear: the time per megabyte stays flat from 64 KB (past the fixed costs) to the largest size; a
        # quadratic parser's grows as the size does.
        base = min(3, len(per_mb) - 1)
        print(
            f"{shape:28s} s/MB at the largest size against {sizes[base] // KB} KB: "
            f"{per_mb[-1] / per_mb[base]:.2f}x (a quadratic parser: {sizes[-1] / sizes[base]:.0f}x)\n",
            flush=True,
        )


if __name__ == "__main__":
    main()
