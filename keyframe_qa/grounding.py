"""Bounding boxes in model replies, mapped to pixels of the displayed frame.

Each family reports boxes differently (see REFERENCE.md): Qwen2-VL as `(x1,y1),(x2,y2)` on a
0-1000 grid, Qwen2.5-VL as JSON `bbox_2d` in pixels of the resized model input, Qwen3-VL as JSON
`bbox_2d` on a 0-1000 grid. Whatever the reply holds, parsing never raises: text that is not a box
yields no box.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Optional

from .records import Box

_NUM = r"-?\d+(?:\.\d+)?"
_QWEN2_BOX = re.compile(
    r"(?:<\|object_ref_start\|>(?P<label>.*?)<\|object_ref_end\|>\s*)?"
    r"(?:<\|box_start\|>)?\s*\(\s*(?P<x1>{n})\s*,\s*(?P<y1>{n})\s*\)\s*,\s*\(\s*(?P<x2>{n})\s*,\s*(?P<y2>{n})\s*\)"
    r"\s*(?:<\|box_end\|>)?".format(n=_NUM),
    re.DOTALL,
)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL)


def parse_boxes(
    text: str,
    box_format: str,
    input_size: tuple[int, int],
    frame_size: tuple[int, int],
    frame: Optional[int] = None,
) -> list[Box]:
    """Boxes in `text`, as [x1, y1, x2, y2] in pixels of a `frame_size` (width, height) frame.

    `box_format` is the family's: "qwen2-vl", "absolute-json" (Qwen2.5-VL, pixels of the
    `input_size` model input) or "relative-json" (Qwen3-VL, 0-1000).
    """
    try:
        if box_format == "qwen2-vl":
            raw = list(_qwen2_boxes(text))
            scale = (1000.0, 1000.0)
        else:
            raw = list(_json_boxes(text))
            scale = (float(input_size[0]), float(input_size[1])) if box_format == "absolute-json" else (1000.0, 1000.0)
    except Exception:  # noqa: BLE001 - a reply is untrusted text; a parse failure means no boxes
        return []
    width, height = frame_size
    boxes = []
    for label, (x1, y1, x2, y2) in raw:
        xs = sorted((x1 * width / scale[0], x2 * width / scale[0]))
        ys = sorted((y1 * height / scale[1], y2 * height / scale[1]))
        bbox = (
            _clip(xs[0], width), _clip(ys[0], height), _clip(xs[1], width), _clip(ys[1], height),
        )
        boxes.append(Box(label=label, frame=frame, bbox=tuple(round(v, 1) for v in bbox)))
    return boxes


def _clip(value: float, limit: int) -> float:
    return min(max(value, 0.0), float(limit))


def _qwen2_boxes(text: str) -> Iterable[tuple[str, tuple[float, float, float, float]]]:
    for match in _QWEN2_BOX.finditer(text):
        label = (match.group("label") or "").strip()
        yield label, tuple(float(match.group(k)) for k in ("x1", "y1", "x2", "y2"))


def _json_boxes(text: str) -> Iterable[tuple[str, tuple[float, float, float, float]]]:
    for candidate in _json_candidates(text):
        data = _loads_lenient(candidate)
        if data is None:
            continue
        found = list(_boxes_in(data))
        if found:
            yield from found
            return


def _json_candidates(text: str) -> list[str]:
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if starts:
        candidates.append(text[min(starts):])
    return candidates


def _loads_lenient(candidate: str) -> Any:
    candidate = candidate.strip()
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    # A reply cut off by max_new_tokens: keep the complete objects of a list.
    end = candidate.rfind("}")
    while end > 0:
        try:
            return json.loads(candidate[: end + 1] + ("]" if candidate.startswith("[") else ""))
        except ValueError:
            end = candidate.rfind("}", 0, end)
    return None


def _boxes_in(data: Any) -> Iterable[tuple[str, tuple[float, float, float, float]]]:
    if isinstance(data, list):
        for item in data:
            yield from _boxes_in(item)
    elif isinstance(data, dict):
        label = str(data.get("label", "") or "")
        box = data.get("bbox_2d")
        point = data.get("point_2d")
        if _numbers(box, 4):
            yield label, tuple(float(v) for v in box)
        elif _numbers(point, 2):
            x, y = (float(v) for v in point)
            yield label, (x, y, x, y)


def _numbers(value: Any, count: int) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
