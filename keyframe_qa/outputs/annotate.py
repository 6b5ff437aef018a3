"""Frames with their boxes drawn, readable on dark and light pictures alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..records import Answer, Box, Frame
from .images import save_frames

# Distinct, saturated colours (RGB); each label keeps its colour across frames.
PALETTE = [(255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 80), (255, 90, 220), (255, 140, 40)]


def draw_boxes(image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """A copy of an RGB frame with `boxes` (display-frame pixels) and their labels drawn.

    Every stroke is a coloured line on a black one a little wider, and every label white text on a
    solid plate (dark, edged in the box's colour), so both stand out on bright skies and dark rooms.
    """
    import cv2

    canvas = np.ascontiguousarray(image.copy())
    height, width = canvas.shape[:2]
    scale = max(1.0, min(width, height) / 480.0)
    thickness = max(1, int(round(2 * scale)))
    font_scale = 0.5 * scale
    colours: dict[str, tuple[int, int, int]] = {}
    for box in boxes:
        colour = colours.setdefault(box.label, PALETTE[len(colours) % len(PALETTE)])
        x1, y1, x2, y2 = (int(round(v)) for v in box.bbox)
        if box.kind == "point" or (x1 == x2 and y1 == y2):
            radius = max(4, int(6 * scale))
            cv2.circle(canvas, (x1, y1), radius + thickness, (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.circle(canvas, (x1, y1), radius, colour, thickness, cv2.LINE_AA)
            corner = (x1 + radius + 2, y1 - radius)
        else:
            cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
            corner = (x1, y1)
        if box.label:
            _label(canvas, _printable(box.label), corner, colour, font_scale, max(1, thickness // 2))
    return canvas


def _label(canvas: np.ndarray, text: str, corner: tuple[int, int], colour, font_scale: float, weight: int) -> None:
    """White text on a dark plate just above `corner` (below it when there is no room above)."""
    import cv2

    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, weight)
    pad = max(2, text_h // 4)
    plate_h = text_h + baseline + 2 * pad
    height, width = canvas.shape[:2]
    left = min(max(0, corner[0]), max(0, width - text_w - 2 * pad))
    top = corner[1] - plate_h if corner[1] - plate_h >= 0 else min(corner[1], height - plate_h)
    top = max(0, top)
    cv2.rectangle(canvas, (left, top), (left + text_w + 2 * pad, top + plate_h), (20, 20, 20), cv2.FILLED)
    cv2.rectangle(canvas, (left, top), (left + text_w + 2 * pad, top + plate_h), colour, 1)
    cv2.putText(
        canvas,
        text,
        (left + pad, top + pad + text_h),
        cv2.FONT_HERSHEY_SIMPLEX,
        font_scale,
        (255, 255, 255),
        weight,
        cv2.LINE_AA,
    )


def _printable(label: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only; anything else would come out as '?'.
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in label.strip())
    return text[:60]


def write_annotated(
    frames: Sequence[Frame], answers: Sequence[Answer], directory: str, inputs: Sequence[str] = ()
) -> list[str]:
    """Each frame with the boxes attributed to it drawn, as PNG; returns the paths."""
    drawn = [
        replace(f, image=draw_boxes(f.image, [b for a in answers for b in a.boxes if b.frame == f.index]))
        for f in frames
    ]
    return save_frames(drawn, directory, suffix="_annotated", option="--annotate", inputs=inputs)
