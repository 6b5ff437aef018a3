"""Time spans in model replies: every way a reply states when something happens, read without raising.

Qwen2.5-VL and Qwen3-VL answer temporal-grounding prompts with spans in many shapes: plain seconds
("12.5 - 15.0 seconds"), clock times ("00:12.5 to 00:15", "1:02:03"), "from X to Y", "between X and Y",
JSON (`{"start": 12.5, "end": 15}`, `[[12.5, 15.0]]`, `{"12.5-15.0": "a person enters"}`,
`{"timestamps": ["00:12", "00:15"]}`), several events at once, a single point ("at 12.5 seconds"), and
replies cut off by the token limit. `parse_moments` keeps every span that is complete, in seconds as
written (mapping onto the video is the caller's), with the label the reply gave it; text that states no
time yields no span. Like the box parser, it never raises.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .grounding import balanced_spans, loads_tolerant

# A time as replies write it: h:mm:ss(.f), m:ss(.f), or seconds, with an optional unit.
# Digit runs are bounded (and may not start inside a longer number), so a reply of endless digits is read
# in linear time: no span is longer than a few days of video anyway.
_CLOCK = r"(?<![\d.])\d{1,3}:\d{1,2}(?::\d{1,2})?(?:\.\d{1,6})?"
_SECONDS = r"(?<![\d.])\d{1,7}(?:\.\d{1,6})?"
_UNIT = r"(?:\s*(?:seconds|second|secs|sec|s)\b)?"
_TIME = rf"(?:{_CLOCK}|{_SECONDS}){_UNIT}"
_RANGE = re.compile(
    rf"(?:\b(?:from|between)\s+)?(?P<a>{_TIME})\s*(?:-|–|—|~|\bto\b|\btill\b|\buntil\b|\band\b)\s*(?P<b>{_TIME})",
    re.IGNORECASE)
_POINT = re.compile(rf"\b(?:at|around|about)\s+(?P<a>{_TIME})", re.IGNORECASE)
_START_KEYS = ("start", "start_time", "begin", "from", "start_s", "start_sec", "start_seconds")
_END_KEYS = ("end", "end_time", "finish", "to", "end_s", "end_sec", "end_seconds")
_PAIR_KEYS = ("timestamps", "timestamp", "time", "times", "span", "interval", "segment", "range", "time_range")
_LABEL_KEYS = ("label", "event", "description", "caption", "action", "query", "name")
_MAX_DEPTH = 20


@dataclass(frozen=True)
class StatedSpan:
    """One span a reply states, in seconds as the reply wrote them."""

    start: float  # seconds as written (relative to whatever the prompt told the model)
    end: float  # seconds as written; equal to `start` for a single point
    label: str  # what the reply said happens then ("" when it said nothing)
    point: bool = False  # the reply gave one time, not a span
    reversed: bool = False  # the reply wrote the end before the start (swapped here)


def parse_time_text(text: str) -> Optional[float]:
    """Seconds from "12.5", "12.5s", "00:12.5", "1:02:03.5" (None for anything else)."""
    value = re.sub(r"\s*(?:seconds|second|secs|sec|s)\s*$", "", str(text).strip(), flags=re.IGNORECASE)
    if re.fullmatch(_SECONDS, value):
        seconds = float(value)
    elif re.fullmatch(_CLOCK, value):
        parts = value.split(":")
        seconds = 0.0
        for part in parts[:-1]:
            seconds = seconds * 60 + int(part)
        seconds = seconds * 60 + float(parts[-1])
    else:
        return None
    return seconds if math.isfinite(seconds) else None


def parse_moments(reply: str) -> list[StatedSpan]:
    """Every complete span `reply` states (JSON values first, then ranges and points in the text), in
    the order they appear. Never raises."""
    try:
        return _parse(str(reply))
    except RecursionError:
        return []


def _parse(text: str) -> list[StatedSpan]:
    found: list[tuple[int, StatedSpan]] = []
    spans = balanced_spans(text)
    for start, end in spans:
        value = loads_tolerant(text[start:end])
        found.extend((start, span) for span in _from_json(value, 0))
    covered = [(start, end) for start, end in spans if any(start <= position < end for position, _ in found)]
    outside = _outside(text, covered)
    taken: list[tuple[int, int]] = []
    for offset, chunk in outside:
        for match in _RANGE.finditer(chunk):
            span = _span(match.group("a"), match.group("b"), _line_label(chunk, match.start(), match.end()))
            if span is not None:
                found.append((offset + match.start(), span))
                taken.append((offset + match.start(), offset + match.end()))
        for match in _POINT.finditer(chunk):
            where = offset + match.start("a")
            if any(start <= where < end for start, end in taken):
                continue
            seconds = parse_time_text(match.group("a"))
            if seconds is not None:
                label = _line_label(chunk, match.start(), match.end())
                found.append((offset + match.start(), StatedSpan(seconds, seconds, label, point=True)))
    found.sort(key=lambda item: item[0])
    return [span for _, span in found]


def _outside(text: str, covered: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """The pieces of `text` outside the JSON values that held spans, with their offsets."""
    pieces, position = [], 0
    for start, end in sorted(covered):
        if start > position:
            pieces.append((position, text[position:start]))
        position = max(position, end)
    pieces.append((position, text[position:]))
    return pieces


def _span(first: Any, second: Any, label: str) -> Optional[StatedSpan]:
    a, b = _seconds(first), _seconds(second)
    if a is None or b is None:
        return None
    if b < a:
        return StatedSpan(b, a, label, reversed=True)
    return StatedSpan(a, b, label, point=a == b)


def _seconds(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, str):
        return parse_time_text(value)
    return None


def _from_json(value: Any, depth: int) -> Iterable[StatedSpan]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        label = next((str(value[k]) for k in _LABEL_KEYS if isinstance(value.get(k), (str, int, float))), "")
        start = next((value[k] for k in _START_KEYS if k in value), None)
        end = next((value[k] for k in _END_KEYS if k in value), None)
        if start is not None and end is not None:
            span = _span(start, end, label)
            if span is not None:
                yield span
                return
        for key in _PAIR_KEYS:
            pair = value.get(key)
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                span = _span(pair[0], pair[1], label)
                if span is not None:
                    yield span
                    return
            if isinstance(pair, str):
                spans = [s for _, s in _text_spans(pair, label)]
                if spans:
                    yield from spans
                    return
        for key, item in value.items():
            keyed = [s for _, s in _text_spans(str(key), item if isinstance(item, str) else "")]
            if keyed and not isinstance(item, (dict, list)):
                yield from keyed
            elif isinstance(item, (dict, list)):
                yield from _from_json(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        if len(value) == 2 and all(_seconds(v) is not None for v in value) and \
                not any(isinstance(v, (list, dict)) for v in value):
            span = _span(value[0], value[1], "")
            if span is not None:
                yield span
                return
        for item in value:
            if isinstance(item, (dict, list, tuple)):
                yield from _from_json(item, depth + 1)
            elif isinstance(item, str):
                yield from (s for _, s in _text_spans(item, ""))


def _text_spans(text: str, label: str) -> list[tuple[int, StatedSpan]]:
    spans = []
    for match in _RANGE.finditer(text):
        span = _span(match.group("a"), match.group("b"), label or _line_label(text, match.start(), match.end()))
        if span is not None:
            spans.append((match.start(), span))
    return spans


def _line_label(text: str, start: int, end: int) -> str:
    """What the rest of the span's line says, without the times, list marks and filler words."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    rest = (text[line_start:start] + " " + text[end:line_end])
    rest = re.sub(rf"{_TIME}", " ", rest)
    rest = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", rest)
    rest = re.sub(r"\b(?:from|between|at|around|about|the event|it|this|that|happens|occurs|is|was|seconds?|s)\b",
                  " ", rest, flags=re.IGNORECASE)
    return " ".join(rest.replace(":", " ").strip(" .,;:-–—").split()).strip(" .,;:-–—")
