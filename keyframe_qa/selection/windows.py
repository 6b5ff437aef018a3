"""Windows over a long video for a temporal search, and spans merged across them.

A whole video rarely fits one prompt at a useful rate: `plan_windows` cuts it into windows of at most
`frames` sampled frames each at `rate` frames a second, overlapping by `overlap` of a window, so an
event near a border is seen whole in at least one window. `merge_spans` joins the spans the windows
report that overlap or touch (within `gap` seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Window:
    """One stretch of the video and the times sampled in it."""

    start: float  # seconds from the first frame
    end: float  # seconds; the last window ends at the video's end
    times: tuple[float, ...]  # the sampled times, in order, inside [start, end]


def plan_windows(duration: float, *, rate: float, frames: int, overlap: float = 0.1) -> list[Window]:
    """Windows covering [0, duration] at `rate` frames a second, at most `frames` frames each."""
    if duration <= 0 or rate <= 0 or frames < 2:
        return [Window(0.0, max(0.0, duration), (0.0,))]
    span = (frames - 1) / rate  # one window's length, first sample to last
    if duration <= span:
        count = max(2, min(frames, int(math.floor(duration * rate)) + 1))
        step = duration / (count - 1)
        return [Window(0.0, duration, tuple(round(i * step, 6) for i in range(count)))]
    stride = span * (1 - overlap)
    windows, start = [], 0.0
    while True:
        end = min(duration, start + span)
        if end - start < span:  # the last window keeps its full length, ending at the video's end
            start = max(0.0, duration - span)
            end = duration
        times = tuple(round(start + i / rate, 6) for i in range(frames) if start + i / rate <= end + 1e-9)
        windows.append(Window(round(start, 6), round(end, 6), times))
        if end >= duration:
            return windows
        start += stride


def merge_spans(spans: Sequence[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    """Spans sorted, with those that overlap or lie within `gap` seconds of each other joined."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]
