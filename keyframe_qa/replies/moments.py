"""Time spans in model replies: every way a reply states when something happens, read without raising.

Qwen2.5-VL and Qwen3-VL answer temporal-grounding prompts with spans in many shapes: plain seconds
("12.5 - 15.0 seconds"), clock times ("00:12.5 to 00:15", "1:02:03", "[00:15, 00:32]"), "from X to Y",
"between X and Y", start and end in words ("Starting time: 0.8 seconds. Ending time: 1.1 seconds"; "the
start time is 0 seconds, and the end time is 12 seconds", as TimeLens reads them), JSON
(`{"start": 12.5, "end": 15}`, `[[12.5, 15.0]]`, `{"12.5-15.0": "a person enters"}`,
`{"timestamps": ["00:12", "00:15"]}`, Qwen3-VL's spatio-temporal `[{"time": 1.0, "bbox_2d": [...]}]`),
several events at once, single points ("at 12.5 seconds", "at second 2"), and replies cut off by the
token limit. A thinking model's reasoning (`<think>...</think>`) is not its answer: only the answer after
it is read; a reply cut off inside its reasoning keeps what the reasoning states, each span marked
`thinking`. `parse_moments` keeps every span that is complete, in seconds as written (mapping onto the
video is the caller's), with the event's words as its label; text that states no time yields no span.

Like the box parser it never raises, and it is linear in the reply's length: regex runs are bounded, a
label is read from a bounded stretch around its span, and at most MAX_SPANS spans are read.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Optional

from .reading import balanced_spans, loads_tolerant, thinking_parts

MAX_SPANS = 10_000  # spans read from one reply: far more than a window's frames (a flood stops here)
LABEL_CHARS = 200  # a label is read from at most this many characters on either side of its span

# A time as replies write it: h:mm:ss(.f), m:ss(.f), or seconds, with an optional unit.
# Digit runs are bounded (and may not start inside a longer number), so a reply of endless digits is read
# in linear time: no span is longer than a few days of video anyway.
_CLOCK = r"(?<![\d.])\d{1,3}:\d{1,2}(?::\d{1,2})?(?:\.\d{1,6})?"
_SECONDS = r"(?<![\d.])\d{1,7}(?:\.\d{1,6})?"
_UNIT = r"(?:\s{0,4}(?:seconds|second|secs|sec|s)\b)?"
_TIME = rf"(?:{_CLOCK}|{_SECONDS}){_UNIT}"
_GAP = r"[^\d\n]{0,40}?"  # the words between a keyword and its time ("time for this event is")
_RANGE = re.compile(
    # "Starting time: 0.8 seconds. Ending time: 1.1 seconds"; "the start time ... is 0 seconds, and the end ..."
    rf"(?P<keyed>\b(?:start(?:s|ed|ing)?|begin(?:s|ning)?)\b{_GAP}(?P<ka>{_TIME})[^\d]{{0,60}}?"
    rf"\b(?:end(?:s|ed|ing)?|finish(?:es|ed|ing)?)\b{_GAP}(?P<kb>{_TIME}))"
    # a bracketed pair of times: [00:15, 00:32]
    rf"|(?P<bracketed>[\[(]\s{{0,4}}(?P<ba>{_TIME})\s{{0,4}},\s{{0,4}}(?P<bb>{_TIME})\s{{0,4}}[\])])"
    rf"|(?:\b(?:from|between)\s{{1,8}})?(?P<a>{_TIME})\s{{0,8}}(?:-|–|—|~|\bto\b|\btill\b|\buntil\b|\band\b)"
    rf"\s{{0,8}}(?P<b>{_TIME})",
    re.IGNORECASE,
)
# "at 12.5 seconds", "around 0:05", "at second 2", "at the 5 second mark"
_POINT = re.compile(
    rf"\b(?:at|around|about)\s{{1,8}}(?:(?:the\s{{1,4}})?(?:second|time|timestamp|moment)\s{{1,4}})?"
    rf"(?P<a>{_TIME})",
    re.IGNORECASE,
)
_START_KEYS = ("start", "start_time", "begin", "from", "start_s", "start_sec", "start_seconds")
_END_KEYS = ("end", "end_time", "finish", "to", "end_s", "end_sec", "end_seconds")
_PAIR_KEYS = ("timestamps", "timestamp", "time", "times", "span", "interval", "segment", "range", "time_range")
_POINT_KEYS = ("time", "timestamp", "t", "second", "seconds", "time_s")  # one time: Qwen3-VL's spatio-temporal list
_LABEL_KEYS = ("label", "event", "description", "caption", "action", "query", "name")
_MAX_DEPTH = 20
# Words around a span that say only that it is a span, not what happens then.
_FILLER = re.compile(
    r"\b(?:from|between|at|around|about|in|during|within|the event|the action|the video|the clip|it|this|that|"
    r"happens|happened|occurs|occurred|takes place|took place|is|was|are|were|seen|seconds?|secs?|s|"
    r"start(?:s|ed|ing)?|end(?:s|ed|ing)?|begin(?:s|ning)?|finish(?:es|ed|ing)?|time|timestamp|mark|for|and|"
    r"then|of)\b",
    re.IGNORECASE,
)
_LIST_MARK = re.compile(r"^\s{0,8}(?:[-*•]|\d{1,4}[.)])\s{0,8}")
_EDGES = " .,;:-–—()[]"


@dataclass(frozen=True)
class StatedSpan:
    """One span a reply states, in seconds as the reply wrote them."""

    start: float  # seconds as written (relative to whatever the prompt told the model)
    end: float  # seconds as written; equal to `start` for a single point
    label: str  # what the reply said happens then ("" when it said nothing)
    point: bool = False  # the reply gave one time, not a span
    reversed: bool = False  # the reply wrote the end before the start (swapped here)
    thinking: bool = False  # stated in the reasoning of a reply cut off before its answer (a guess, not an answer)


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
    the order they appear: the answer's, after a thinking model's reasoning; the reasoning's, marked
    `thinking`, when the reply was cut off inside it. Never raises."""
    try:
        text, _, cut_in_thinking = thinking_parts(str(reply))
        spans = _parse(text)
        return [replace(span, thinking=True) for span in spans] if cut_in_thinking else spans
    except RecursionError:
        return []


def _parse(text: str) -> list[StatedSpan]:
    found: list[tuple[int, StatedSpan]] = []
    covered = []
    for start, end in balanced_spans(text):
        if len(found) >= MAX_SPANS:
            break
        value = loads_tolerant(text[start:end])
        spans = list(_from_json(value, 0))
        if spans:
            found.extend((start, span) for span in spans)
            covered.append((start, end))
    for offset, chunk in _outside(text, covered):
        if len(found) >= MAX_SPANS:
            break
        ranges = _ranges_in(chunk)
        taken = [(match.start(), match.end()) for match, _ in ranges]
        found.extend((offset + match.start(), span) for match, span in ranges)
        if len(found) >= MAX_SPANS:
            break
        starts = [start for start, _ in taken]
        points = []
        for match in _POINT.finditer(chunk):
            where = match.start("a")
            before = bisect.bisect_right(starts, where) - 1
            if before >= 0 and where < taken[before][1]:
                continue  # a time of a range already read
            points.append(match)
            if len(points) + len(found) >= MAX_SPANS:
                break
        marks = sorted(taken + [(m.start(), m.end()) for m in points])
        for match in points:
            seconds = parse_time_text(match.group("a"))
            if seconds is not None:
                label = _label(chunk, match.start(), match.end(), marks)
                found.append((offset + match.start(), StatedSpan(seconds, seconds, label, point=True)))
    found.sort(key=lambda item: item[0])
    return [span for _, span in found[:MAX_SPANS]]


def _ranges_in(text: str) -> list[tuple[re.Match, StatedSpan]]:
    """The ranges `text` states, each with its match (labels read from between the neighbouring spans)."""
    matches = []
    for match in _RANGE.finditer(text):
        matches.append(match)
        if len(matches) >= MAX_SPANS:
            break
    marks = [(m.start(), m.end()) for m in matches]
    ranges = []
    for match in matches:
        first, second = (
            ("ka", "kb") if match.group("keyed") else ("ba", "bb") if match.group("bracketed") else ("a", "b")
        )
        span = _span(match.group(first), match.group(second), _label(text, match.start(), match.end(), marks))
        if span is not None:
            ranges.append((match, span))
    return ranges


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
        for key in _POINT_KEYS:
            point = value.get(key)
            seconds = None if isinstance(point, (list, tuple, dict)) else _seconds(point)
            if seconds is not None:
                yield StatedSpan(seconds, seconds, label, point=True)
                return
        for key, item in value.items():
            keyed = [s for _, s in _text_spans(str(key), item if isinstance(item, str) else "")]
            if keyed and not isinstance(item, (dict, list)):
                yield from keyed
            elif isinstance(item, (dict, list)):
                yield from _from_json(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        if (
            len(value) == 2
            and all(_seconds(v) is not None for v in value)
            and not any(isinstance(v, (list, dict)) for v in value)
        ):
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
    return [(match.start(), replace(span, label=label) if label else span) for match, span in _ranges_in(text)]


def _label(text: str, start: int, end: int, marks: list[tuple[int, int]]) -> str:
    """The event's words for the span at [start, end): what its clause says before it ("a dog appears at
    second 0"), else after it ("2.0 - 4.0 seconds: a car passes"), read back to the previous span (or line)
    and on to the next one, at most LABEL_CHARS each way, without times, list marks and the words that
    only say it is a span ("The event happens in 3.6 - 5.2 seconds" has no label)."""
    position = bisect.bisect_left(marks, (start, end))
    left = max(
        start - LABEL_CHARS,
        marks[position - 1][1] if position > 0 else 0,
        text.rfind("\n", max(0, start - LABEL_CHARS), start) + 1,
    )
    right = min(end + LABEL_CHARS, marks[position + 1][0] if position + 1 < len(marks) else len(text))
    line_end = text.find("\n", end, right)
    right = right if line_end < 0 else line_end
    before, after = _words(text[left:start]), _words(text[end:right])
    return before or after


def _words(piece: str) -> str:
    piece = re.sub(_TIME, " ", _LIST_MARK.sub("", piece))
    piece = _FILLER.sub(" ", piece)
    words = " ".join(piece.replace(":", " ").split()).strip(_EDGES).strip()
    # What is left of "The start time for this event is" or "Maybe ... Or" names no event.
    return "" if all(word.lower().strip(_EDGES) in _NO_EVENT for word in words.split()) else words


_NO_EVENT = {"", "the", "a", "an", "maybe", "perhaps", "or", "so", "answer", "yes", "no", "i", "think"}
