"""Bounding boxes in model replies: parsed per family, tied to a frame, mapped to its display pixels.

Each family reports boxes its own way (see REFERENCE.md): Qwen2-VL as `(x1,y1),(x2,y2)` on a 0-1000
grid between special tokens, Qwen2.5-VL as JSON `bbox_2d` in pixels of the resized model input,
Qwen3-VL as JSON `bbox_2d` on a 0-1000 grid; both JSON families also give `point_2d` points. Parsing
never raises: text that holds no box yields no box.

With several frames in one prompt, a box is attributed to a frame by, in order: a `frame` the
model named in the box's JSON object; the last frame mentioned ("Frame 2", or a frame's time label)
before the box in the reply; the last frame mentioned anywhere. `frame_source` records which.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

from .families import Family
from .records import Box

_NUM = r"-?\d+(?:\.\d+)?"
_QWEN2_BOX = re.compile(
    r"(?:<\|object_ref_start\|>(?P<label>.*?)<\|object_ref_end\|>\s*)?"
    r"(?:<\|box_start\|>)?\s*\(\s*(?P<x1>{n})\s*,\s*(?P<y1>{n})\s*\)\s*,\s*\(\s*(?P<x2>{n})\s*,\s*(?P<y2>{n})\s*\)"
    r"\s*(?:<\|box_end\|>)?".format(n=_NUM),
    re.DOTALL,
)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL)
_FRAME_MENTION = re.compile(r"\bframe\s*(?:#|no\.?|number)?\s*(\d+)\b", re.IGNORECASE)
_BOX_FORMATS = {"qwen2-vl": "qwen2-vl", "qwen2.5-vl": "absolute-json", "qwen3-vl": "relative-json"}


@dataclass(frozen=True)
class FrameGeometry:
    """What mapping a box needs to know about one frame."""

    index: int  # position in the selection (what Box.frame refers to)
    input_size: tuple[int, int]  # (width, height) of the picture the model saw
    frame_size: tuple[int, int]  # (width, height) of the displayed frame
    label: str = ""  # the time label used in the prompt, e.g. "0:00:05.500"


@dataclass(frozen=True)
class _RawBox:
    label: str
    coords: tuple[float, float, float, float]  # in the family's own space
    kind: str  # "box" or "point"
    position: int  # where the box starts in the reply text
    named_frame: Optional[int]  # 1-based frame number the model gave in the box itself


def parse_boxes(
    text: str,
    family: Union[str, Family],
    input_size: tuple[int, int],
    frame_size: tuple[int, int],
) -> list[Box]:
    """Boxes in a reply as [x1, y1, x2, y2] in pixels of a `frame_size` (width, height) frame.

    `family` is "qwen2-vl", "qwen2.5-vl" or "qwen3-vl" (or a Family); `input_size` is the (width,
    height) of the model input the reply refers to. Corners are ordered and clipped to the frame;
    points come back as zero-size boxes with kind "point".
    """
    geometry = FrameGeometry(index=0, input_size=input_size, frame_size=frame_size)
    return [_to_box(raw, _box_format(family), geometry, None, None) for raw in _parse(text, _box_format(family))]


def find_boxes(text: str, family: Union[str, Family], frames: Sequence[FrameGeometry],
               asked_about: Optional[int] = None) -> list[Box]:
    """Boxes in a reply about `frames`, each tied to one frame and mapped to that frame's pixels.

    `asked_about` is the frame a per-frame question was about: every box belongs to it.
    """
    box_format = _box_format(family)
    raws = _parse(text, box_format)
    if not raws or not frames:
        return []
    by_index = {f.index: f for f in frames}
    boxes = []
    for raw in raws:
        if asked_about is not None:
            frame, source = asked_about, "per-frame"
        elif len(frames) == 1:
            frame, source = frames[0].index, "only-frame"
        else:
            frame, source = _attribute(text, raw, frames)
        geometry = by_index.get(frame, frames[0])
        boxes.append(_to_box(raw, box_format, geometry, frame, source))
    return boxes


def _box_format(family: Union[str, Family]) -> str:
    if isinstance(family, Family):
        return family.box_format
    if family in _BOX_FORMATS:
        return _BOX_FORMATS[family]
    if family in _BOX_FORMATS.values():
        return family
    raise ValueError(f"unknown family {family!r}: use one of {', '.join(_BOX_FORMATS)}")


def _parse(text: str, box_format: str) -> list[_RawBox]:
    try:
        if box_format == "qwen2-vl":
            return list(_qwen2_boxes(text))
        return list(_json_boxes(text))
    except Exception:  # noqa: BLE001 - a reply is untrusted text; a parse failure means no boxes
        return []


def _to_box(raw: _RawBox, box_format: str, geometry: FrameGeometry, frame: Optional[int],
            source: Optional[str]) -> Box:
    width, height = geometry.frame_size
    if box_format == "absolute-json":
        scale_x, scale_y = float(geometry.input_size[0]), float(geometry.input_size[1])
    else:
        scale_x = scale_y = 1000.0
    x1, y1, x2, y2 = raw.coords
    xs = sorted((x1 * width / scale_x, x2 * width / scale_x))
    ys = sorted((y1 * height / scale_y, y2 * height / scale_y))
    bbox = (_clip(xs[0], width), _clip(ys[0], height), _clip(xs[1], width), _clip(ys[1], height))
    return Box(label=raw.label, frame=frame, bbox=tuple(round(v, 1) for v in bbox), kind=raw.kind,
               frame_source=source)


def _clip(value: float, limit: int) -> float:
    return min(max(value, 0.0), float(limit))


def _attribute(text: str, raw: _RawBox, frames: Sequence[FrameGeometry]) -> tuple[Optional[int], str]:
    count = len(frames)
    if raw.named_frame is not None and 1 <= raw.named_frame <= count:
        return frames[raw.named_frame - 1].index, "named"
    mentions = _mentions(text, frames)
    before = [frame for position, frame in mentions if position < raw.position]
    if before:
        return before[-1], "mentioned"
    if mentions:
        return mentions[-1][1], "mentioned-later"
    return None, "unknown"


def _mentions(text: str, frames: Sequence[FrameGeometry]) -> list[tuple[int, int]]:
    """(position, frame index) of every frame named in the text, by number or by time label."""
    found = []
    for match in _FRAME_MENTION.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= len(frames):
            found.append((match.start(), frames[number - 1].index))
    for frame in frames:
        if frame.label:
            found.extend((m.start(), frame.index) for m in re.finditer(re.escape(frame.label), text))
    return sorted(found)


def _qwen2_boxes(text: str) -> Iterable[_RawBox]:
    previous_end, previous_label = None, ""
    for match in _QWEN2_BOX.finditer(text):
        label = (match.group("label") or "").strip()
        # A run of boxes after one object_ref belongs to that object.
        if not label and previous_end is not None and not text[previous_end:match.start()].strip(" ,;\n"):
            label = previous_label
        previous_end, previous_label = match.end(), label
        coords = tuple(float(match.group(k)) for k in ("x1", "y1", "x2", "y2"))
        yield _RawBox(label, coords, "box", match.start(), None)


def _json_boxes(text: str) -> Iterable[_RawBox]:
    for offset, candidate in _json_candidates(text):
        data = _loads_lenient(candidate)
        if data is None:
            continue
        found = [_RawBox(label, coords, kind, offset, named) for label, coords, kind, named in _boxes_in(data)]
        if found:
            yield from found
            return


def _json_candidates(text: str) -> list[tuple[int, str]]:
    candidates = [(m.start(1), m.group(1)) for m in _FENCE.finditer(text)]
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if starts:
        candidates.append((min(starts), text[min(starts):]))
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


def _boxes_in(data: Any) -> Iterable[tuple[str, tuple[float, float, float, float], str, Optional[int]]]:
    if isinstance(data, list):
        for item in data:
            yield from _boxes_in(item)
    elif isinstance(data, dict):
        label = str(data.get("label", "") or "")
        named = _frame_number(data.get("frame"))
        box, point = data.get("bbox_2d"), data.get("point_2d")
        if _numbers(box, 4):
            yield label, tuple(float(v) for v in box), "box", named
        elif _numbers(point, 2):
            x, y = (float(v) for v in point)
            yield label, (x, y, x, y), "point", named


def _frame_number(value: Any) -> Optional[int]:
    """A frame number the model gave: 2, "2" or "Frame 2"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.search(r"\d+", value)
        return int(match.group()) if match else None
    return None


def _numbers(value: Any, count: int) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def grounding_prompt(target: str, family: Union[str, Family], frame_count: int) -> str:
    """The family's recommended prompt for finding `target`, asking which frame when there are several."""
    target = " ".join(target.split()).replace('"', "'")
    if _box_format(family) == "qwen2-vl":
        prompt = f'Locate every instance of "{target}" and output the bounding box of each.'
        if frame_count > 1:
            prompt += ' Before each box, name the frame it is in, for example "Frame 2".'
        return prompt
    prompt = f'Locate every instance of: "{target}". Report bbox coordinates in JSON format'
    if frame_count > 1:
        prompt += ', with a "frame" key giving the number of the frame each one is in'
    return prompt + "."
