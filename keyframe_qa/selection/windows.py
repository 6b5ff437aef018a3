"""Windows over a long video for a temporal search, and spans merged across them.

A whole video rarely fits one prompt at a useful rate: `plan_windows` cuts it into windows of at most
`frames` sampled frames each at `rate` frames a second, overlapping by `overlap` of a window, so an
event near a border is seen whole in at least one window. `merge_spans` joins the spans the windows
report that overlap or touch (within `gap` seconds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One stretch of the video and the times sampled in it."""

    start: float  # seconds from the first frame
    end: float  # seconds; the last window ends at the video's end
    times: tuple[float, ...]  # the sampled times, in order, inside [start, end]


def plan_windows(duration: float, *, rate: float, frames: int, overlap: float = 0.1) -> list[Window]:
    """Windows covering [0, duration] at `rate` frames a second, at most `frames` frames each.

    Every sampled time lies on one grid, a multiple of 1/rate from 0: each window's frames are evenly
    spaced (what one sampling rate, as Qwen2.5-VL's temporal position ids take it, can describe), and a
    window starts on the grid. The last window ends at `duration`; a video shorter than one step gets its
    first and last time."""
    if duration <= 0 or rate <= 0 or frames < 2:
        return [Window(0.0, max(0.0, duration), (0.0,))]
    steps = int(math.floor(duration * rate + 1e-9))  # grid times after 0 within the video
    if steps < 1:
        return [Window(0.0, duration, (0.0, round(duration, 6)))]
    per = frames - 1  # steps in one window
    if steps <= per:
        return [Window(0.0, duration, tuple(round(i / rate, 6) for i in range(steps + 1)))]
    stride = max(1, int(per * (1 - overlap)))
    windows, first = [], 0
    while True:
        first = min(first, steps - per)  # the last window keeps its full length, ending at the video's end
        times = tuple(round((first + i) / rate, 6) for i in range(per + 1))
        last = first + per >= steps
        windows.append(Window(round(first / rate, 6), duration if last else times[-1], times))
        if last:
            return windows
        first += stride


def merge_spans(spans: Sequence[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    """Spans sorted, with those that overlap or lie within `gap` seconds of each other joined."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]
