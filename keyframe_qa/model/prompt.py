"""The prompt every engine sends: the user turn's parts in order, and how frames are named in it.

Facts about models, no torch: the engines build their requests from `prompt_parts`, and `answering`
builds the `VisualPrompt` with `build_prompt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from ..records import Frame, FrameBudget, VisualPrompt
from ..timecodes import format_time


def prompt_parts(prompt: VisualPrompt, question: str) -> list[tuple[str, object]]:
    """The user turn every engine sends, in order: ("text", str), ("image", frame position), ("video", None).

    Images mode labels each frame ("Frame 2 at 0:00:05.500:") before its picture; video mode sends
    the video, then says when its frames were taken. The question comes last, so every question about
    the same frames shares one prefix.
    """
    parts: list[tuple[str, object]] = []
    if prompt.mode == "video":
        parts.append(("video", None))
        parts.append(("text", video_times_text([label.split(" at ")[-1] for label in prompt.labels])))
    else:
        for position, label in enumerate(prompt.labels):
            parts.append(("text", image_label_text(label)))
            parts.append(("image", position))
    parts.append(("text", question))
    return parts


def image_label_text(label: str) -> str:
    """The text before a frame's picture in images mode: "Frame 2 at 0:00:05.500:"."""
    return f"{label[:1].upper()}{label[1:]}:"


def video_times_text(times: Sequence[str]) -> str:
    """The text after the video in video mode, saying when its frames were taken."""
    return f"The video above is {len(times)} frames shown at {', '.join(times)}.\n"


def frame_labels(frames: Sequence[Frame], origin: float = 0.0) -> list[str]:
    """How frames are named in prompts: "frame 2 at 0:00:05.500" (times less `origin`)."""
    return [f"frame {f.index + 1} at {format_time(max(0.0, f.timestamp - origin))}" for f in frames]


def build_prompt(
    frames: Sequence[Frame],
    budgets: Sequence[FrameBudget],
    mode: str,
    labels: Optional[Sequence[str]] = None,
    origin: float = 0.0,
) -> VisualPrompt:
    """The model's view of the frames: the display frames, their budgets and the label each gets.

    The engine resizes each frame to its budget (the way its model's processor resizes). Every time the
    model is told (labels, video-mode times and Qwen3-VL's markers) is the frame's time less `origin`:
    0 tells the video's own times; a window's start tells times from that window's start.
    """
    return VisualPrompt(
        images=[f.image for f in frames],
        budgets=list(budgets),
        labels=list(labels) if labels is not None else frame_labels(frames, origin),
        mode=mode,
        times=[max(0.0, f.timestamp - origin) for f in frames],
    )
