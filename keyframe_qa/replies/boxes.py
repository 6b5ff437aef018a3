"""Bounding boxes in model replies: parsed per family, tied to a frame, mapped to its display pixels.

Each family reports boxes its own way (see REFERENCE.md): Qwen2-VL as `(x1,y1),(x2,y2)` on a 0-1000
grid between special tokens, Qwen2.5-VL as JSON `bbox_2d` in pixels of the resized model input,
Qwen3-VL as JSON `bbox_2d` on a 0-1000 grid; both JSON families also give `point_2d` points. Parsing
never raises: text that holds no box yields no box.

Every parser here is linear in the reply's length (a server may send up to 16 MiB): regexes have
bounded runs, plain text is skipped at C speed, frame mentions are found once, the tolerant fallbacks
(json-repair, Python literals) read only values small enough to be a real answer, and at most
MAX_BOXES boxes are read. A thinking model's reasoning (`<think>...</think>`) is not its answer:
only what follows it is read (`answer_text`).

With several frames in one prompt, a box is attributed to a frame by, in order: a `frame` the
model named in the box's JSON object; the last frame mentioned ("Frame 2", or a frame's time label)
before the box in the reply; the last frame mentioned anywhere. `frame_source` records which.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from ..model.families import Family
from ..records import Box
from .reading import answer_text, balanced_spans, loads_tolerant

MAX_BOXES = 10_000  # boxes read from one reply: far more than any picture holds (a flood stops here)
_SP = r"[ \t\r\n]{0,16}"  # white space inside a box: bounded, so no run of blanks is scanned twice
_NUM = r"-?\d{1,12}(?:\.\d{1,12})?"
_QWEN2_BOX = re.compile(
    r"(?:<\|object_ref_start\|>(?P<label>[^<]{0,200}?)<\|object_ref_end\|>\s{0,16})?(?:<\|box_start\|>)?"
    + _SP
    + r"\("
    + _SP
    + rf"(?P<x1>{_NUM})"
    + _SP
    + ","
    + _SP
    + rf"(?P<y1>{_NUM})"
    + _SP
    + r"\)"
    + _SP
    + ","
    + _SP
    + r"\("
    + _SP
    + rf"(?P<x2>{_NUM})"
    + _SP
    + ","
    + _SP
    + rf"(?P<y2>{_NUM})"
    + _SP
    + r"\)"
    + _SP
    + r"(?:<\|box_end\|>)?"
)
_FRAME_MENTION = re.compile(r"\bframe[ \t]{0,4}(?:#|no\.?|number)?[ \t]{0,4}(\d{1,9})\b", re.IGNORECASE)
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
    return [
        _to_box(raw, _box_format(family), geometry, None, None)
        for raw in _parse(answer_text(text), _box_format(family))
    ]


def find_boxes(
    text: str, family: Union[str, Family], frames: Sequence[FrameGeometry], asked_about: Optional[int] = None
) -> list[Box]:
    """Boxes in a reply about `frames`, each tied to one frame and mapped to that frame's pixels.

    `asked_about` is the frame a per-frame question was about: every box belongs to it.
    """
    box_format = _box_format(family)
    text = answer_text(text)
    raws = _parse(text, box_format)
    if not raws or not frames:
        return []
    by_index = {f.index: f for f in frames}
    boxes = []
    mentions = _mentions(text, frames) if asked_about is None and len(frames) > 1 else []
    frame: Optional[int]
    for raw in raws:
        if asked_about is not None:
            frame, source = asked_about, "per-frame"
        elif len(frames) == 1:
            frame, source = frames[0].index, "only-frame"
        else:
            frame, source = _attribute(raw, frames, mentions)
        geometry = by_index.get(frame, frames[0]) if frame is not None else frames[0]
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
            return list(_qwen2_boxes(text))[:MAX_BOXES]
        return list(_json_boxes(text))[:MAX_BOXES]
    except Exception:  # noqa: BLE001 - a reply is untrusted text; a parse failure means no boxes
        return []


def _to_box(raw: _RawBox, box_format: str, geometry: FrameGeometry, frame: Optional[int], source: Optional[str]) -> Box:
    width, height = geometry.frame_size
    if box_format == "absolute-json":
        scale_x, scale_y = float(geometry.input_size[0]), float(geometry.input_size[1])
    else:
        scale_x = scale_y = 1000.0
    x1, y1, x2, y2 = raw.coords
    xs = sorted((x1 * width / scale_x, x2 * width / scale_x))
    ys = sorted((y1 * height / scale_y, y2 * height / scale_y))
    bbox = (_clip(xs[0], width), _clip(ys[0], height), _clip(xs[1], width), _clip(ys[1], height))
    left, top, right, bottom = (round(v, 1) for v in bbox)
    return Box(label=raw.label, frame=frame, bbox=(left, top, right, bottom), kind=raw.kind, frame_source=source)


def _clip(value: float, limit: int) -> float:
    return min(max(value, 0.0), float(limit))


def _attribute(
    raw: _RawBox, frames: Sequence[FrameGeometry], mentions: list[tuple[int, int]]
) -> tuple[Optional[int], str]:
    count = len(frames)
    if raw.named_frame is not None and 1 <= raw.named_frame <= count:
        return frames[raw.named_frame - 1].index, "named"
    before = bisect.bisect_left(mentions, (raw.position, -1))
    if before:
        return mentions[before - 1][1], "mentioned"
    if mentions:
        return mentions[-1][1], "mentioned-later"
    return None, "unknown"


def _mentions(text: str, frames: Sequence[FrameGeometry]) -> list[tuple[int, int]]:
    """(position, frame index) of every frame named in the text, by number or by time label, sorted:
    found in one pass each (all the labels as one pattern), whatever the number of frames."""
    found = []
    for match in _FRAME_MENTION.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= len(frames):
            found.append((match.start(), frames[number - 1].index))
    by_label: dict[str, int] = {}
    for frame in frames:
        if frame.label:
            by_label.setdefault(frame.label, frame.index)
    if by_label:
        # Longest first: a label that starts another is not matched in its place.
        pattern = re.compile("|".join(re.escape(label) for label in sorted(by_label, key=len, reverse=True)))
        found.extend((m.start(), by_label[m.group(0)]) for m in pattern.finditer(text))
    return sorted(found)


def _qwen2_boxes(text: str) -> Iterable[_RawBox]:
    previous_end, previous_label = None, ""
    # With the special tokens kept, a label is only what object_ref marks; without them, the words before.
    plain = "<|box_start|>" not in text
    for match in _QWEN2_BOX.finditer(text):
        label = (match.group("label") or "").strip()
        gap = text[previous_end if previous_end is not None else 0 : match.start()]
        if not label and previous_end is not None and not gap.strip(" ,;\n"):
            label = previous_label  # a run of boxes after one label belongs to that object
        elif not label and plain:
            label = _label_before(gap)  # decoded without special tokens: "red car(100,200),(500,600)"
        previous_end, previous_label = match.end(), label
        x1, y1, x2, y2 = (float(match.group(k)) for k in ("x1", "y1", "x2", "y2"))
        yield _RawBox(label, (x1, y1, x2, y2), "box", match.start(), None)


_LABEL_BREAK = re.compile(r"[.:;!?\n]|<\|[a-z_]+\|>")


def _label_before(gap: str) -> str:
    """The words right before a box, back to the previous sentence break: its label."""
    pieces = _LABEL_BREAK.split(gap)
    words = (pieces[-1] if pieces else "").strip(" ,-*\t").split()
    while words and words[0].lower() in _JOINERS:
        words.pop(0)  # "... and dog(5,6),(7,8)": the label is "dog"
    label = " ".join(words)
    return label if len(label) <= 80 else ""


_JOINERS = {"and", "or", "then", "also", "plus", "while"}


# Keys that name what a box is, best first (OCR replies use text_content; others name / description).
_LABEL_KEYS = ("label", "text_content", "name", "name_en", ("names", "en"), "description")
_BOX_KEYS = (("bbox_2d", 4, "box"), ("point_2d", 2, "point"))
_KEY_MENTION = re.compile(r"""["'](?:bbox_2d|point_2d)["']""")
# The label is the rest of the line, stripped afterwards (a lazy run before trailing blanks would scan a
# run of blanks once for each of its characters).
_T = r"[ \t]{0,16}"
_LINE_BOX = re.compile(
    r"^"
    + _T
    + r"(?:[-*][ \t]{1,16}|\d{1,6}[.)][ \t]{1,16})?[\[(]?"
    + _T
    + _T.join((f"({_NUM})", ",", f"({_NUM})", ",", f"({_NUM})", ",", f"({_NUM})"))
    + _T
    + r"[\])]?"
    + _T
    + r":?([^\n]*)$",
    re.MULTILINE,
)
_MAX_DEPTH = 64
_INNER_DEPTH = 4  # a value that is not JSON as a whole is looked into this deep (each level reads it again)


def _json_boxes(text: str) -> Iterable[_RawBox]:
    """Boxes in every JSON value of a reply, nested anywhere (tool-call arguments, {"objects": [...]}),
    in any number of blocks, tolerant of trailing commas, single quotes and Python literals; then the
    plain `x1,y1,x2,y2 label` lines outside them."""
    spans = balanced_spans(text)
    boxes = []
    for start, end in spans:
        boxes.extend(_boxes_in_span(text, start, end, 0))
        if len(boxes) >= MAX_BOXES:
            break
    starts = [start for start, _ in spans]
    for match in _LINE_BOX.finditer(text):
        inside = bisect.bisect_right(starts, match.start()) - 1
        if inside >= 0 and match.start() < spans[inside][1]:
            continue
        x1, y1, x2, y2 = (float(match.group(i)) for i in range(1, 5))
        boxes.append(_RawBox(match.group(5).strip(" \t")[:200], (x1, y1, x2, y2), "box", match.start(), None))
        if len(boxes) >= 2 * MAX_BOXES:
            break
    return sorted(boxes, key=lambda box: box.position)


def _boxes_in_span(text: str, start: int, end: int, depth: int) -> list[_RawBox]:
    value = loads_tolerant(text[start:end])
    found = list(_boxes_in(value, 0)) if isinstance(value, (dict, list)) else []
    if not found and depth < _INNER_DEPTH:
        # Not JSON as a whole (a stray brace around real objects): look at the complete values inside.
        inner = []
        for inner_start, inner_end in balanced_spans(text, start + 1, end - 1):
            inner.extend(_boxes_in_span(text, inner_start, inner_end, depth + 1))
        return inner
    # Place each box where its key stands in the reply, for frame attribution.
    keys = [start + m.start() for m in _KEY_MENTION.finditer(text, start, end)]
    return [
        _RawBox(label, coords, kind, keys[i] if len(keys) == len(found) else start, named)
        for i, (label, coords, kind, named) in enumerate(found)
    ]


def _boxes_in(data: Any, depth: int) -> Iterable[tuple[str, tuple[float, float, float, float], str, Optional[int]]]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(data, (list, tuple)):
        for item in data:
            yield from _boxes_in(item, depth + 1)
    elif isinstance(data, dict):
        for key, count, kind in _BOX_KEYS:
            value = data.get(key)
            if value is not None and _numbers(value, count):
                numbers = [float(v) for v in value]
                coords = (numbers[0], numbers[1]) + (
                    (numbers[2], numbers[3]) if kind == "box" else (numbers[0], numbers[1])
                )
                yield _label(data), coords, kind, _frame_number(data.get("frame"))
                return
        for value in data.values():  # boxes nested anywhere: {"objects": [...]}, tool-call arguments
            yield from _boxes_in(value, depth + 1)
    elif isinstance(data, str) and data.lstrip()[:1] in ("{", "["):
        # Tool-call arguments are often a JSON string inside the JSON.
        yield from _boxes_in(loads_tolerant(data), depth + 1)


def _label(data: dict) -> str:
    for key in _LABEL_KEYS:
        value: Any = data
        for part in key if isinstance(key, tuple) else (key,):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, (dict, list)) and str(value).strip():
            return str(value).strip()
    return ""


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
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
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
