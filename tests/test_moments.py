"""Spans in model replies (`keyframe_qa.parse_moments`): every way real replies state times, never raising."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyframe_qa import parse_moments
from keyframe_qa.replies.boxes import FrameGeometry, find_boxes
from keyframe_qa.replies.moments import MAX_SPANS, StatedSpan, parse_time_text


@pytest.mark.parametrize(
    "reply, spans",
    [
        ("The event happens from 12.5 to 15.0 seconds.", [(12.5, 15.0)]),
        ("00:12.5 - 00:15", [(12.5, 15.0)]),
        ("between 1:02:03 and 1:02:10.5", [(3723.0, 3730.5)]),
        ("12.5s–15s", [(12.5, 15.0)]),
        (
            '[{"start": 3, "end": 7.5, "event": "door opens"}, {"start": "00:20", "end": "00:25", "event": "leaves"}]',
            [(3.0, 7.5), (20.0, 25.0)],
        ),
        ('```json\n{"12.5-15.0": "a person enters"}\n```', [(12.5, 15.0)]),
        ("[[1.5, 3.0], [10, 12]]", [(1.5, 3.0), (10.0, 12.0)]),
        ('{"timestamps": ["00:12", "00:15"]}', [(12.0, 15.0)]),
        ('{"events": [{"start_time": "0:01:00", "end_time": "0:01:30.5"}]}', [(60.0, 90.5)]),
        ("1. 2.0 - 4.0 seconds: a car passes\n2. 10.0 - 11.5 seconds: it stops", [(2.0, 4.0), (10.0, 11.5)]),
        ("It happens at 12.5 seconds.", [(12.5, 12.5)]),
        ('[{"start": 3, "end": 7.5}, {"start": 9, "en', [(3.0, 7.5)]),  # cut off by the token limit
        ("No such event is shown.", []),
        ("Frame 2 shows it, and frame 3.", []),
        ("", []),
    ],
)
def test_real_reply_shapes(reply, spans):
    assert [(s.start, s.end) for s in parse_moments(reply)] == spans


# Held-out real temporal-grounding replies that an earlier parser misread, one class each, read as a careful
# person reads them.
@pytest.mark.parametrize(
    "reply, spans",
    [
        # A thinking model: the answer after the reasoning counts, not the guesses inside it.
        ("<think>Maybe from 1 to 2 seconds, or 3 - 4 s.</think>The person waves from 5 to 7 seconds.", [(5.0, 7.0)]),
        ('<think>\nThe clip starts at 0 s.\n</think>\n\n[{"start": 2.5, "end": 4}]', [(2.5, 4.0)]),
        # Points in words.
        ("A dog appears at second 0, a cat at second 1, and a bird at second 2.", [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)]),
        # TimeLens' wordings.
        ("Starting time: 0.8 seconds. Ending time: 1.1 seconds", [(0.8, 1.1)]),
        ("The start time for this event is 0 seconds, and the end time is 12 seconds", [(0.0, 12.0)]),
        ("The event is at [00:15, 00:32].", [(15.0, 32.0)]),
        ("The person starts waving at 3 seconds and ends at 5 seconds.", [(3.0, 5.0)]),
        # Qwen3-VL's spatio-temporal list: points in time, each with its box.
        (
            '[{"time": 1.0, "bbox_2d": [10, 20, 30, 40], "label": "cup"}, {"time": "00:02.5", "bbox_2d": [1, 2, 3, 4], '
            '"label": "cup"}]',
            [(1.0, 1.0), (2.5, 2.5)],
        ),
    ],
)
def test_real_replies_that_were_misread(reply, spans):
    assert [(s.start, s.end) for s in parse_moments(reply)] == spans


def test_a_reply_cut_inside_its_reasoning_keeps_what_it_states_marked_as_such():
    spans = parse_moments("<think>The door opens from 3 to 4.5 seconds, I think. Let me check the frames aga")
    assert [(s.start, s.end, s.thinking) for s in spans] == [(3.0, 4.5, True)]
    assert all(not s.thinking for s in parse_moments("<think>hm</think> from 3 to 4.5 seconds"))


@pytest.mark.parametrize(
    "reply, labels",
    [
        ("The event happens in 3.6 - 5.2 seconds.", [""]),
        ("A dog appears at second 0, a cat at second 1, and a bird at second 2.", ["A dog appears", "a cat", "a bird"]),
        ("a person enters between 3 and 5 s, then leaves between 8 and 9 s", ["a person enters", "leaves"]),
        ("The start time for this event is 0 seconds, and the end time is 12 seconds", [""]),
        ('[{"time": 1.0, "bbox_2d": [10, 20, 30, 40], "label": "cup"}]', ["cup"]),
    ],
)
def test_a_label_is_the_events_words(reply, labels):
    assert [s.label for s in parse_moments(reply)] == labels


def test_labels_points_and_reversed_ranges():
    (event,) = parse_moments('[{"start": 3, "end": 7.5, "event": "door opens"}]')
    assert event.label == "door opens" and not event.point
    lines = parse_moments("- 2.0 - 4.0 seconds: a car passes")
    assert lines[0].label == "a car passes"
    (point,) = parse_moments("It happens at 12.5 seconds.")
    assert point.point and point.start == point.end == 12.5
    (swapped,) = parse_moments("from 15 to 12.5 seconds")
    assert swapped == StatedSpan(12.5, 15.0, "", reversed=True)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("12.5", 12.5),
        ("12.5s", 12.5),
        ("3 seconds", 3.0),
        ("00:12.5", 12.5),
        ("1:02:03.5", 3723.5),
        ("abc", None),
        ("1:2:3:4", None),
    ],
)
def test_time_text(text, seconds):
    assert parse_time_text(text) == seconds


@pytest.mark.parametrize(
    "reply",
    [
        "[" * 5000 + "]" * 5000,
        "{" * 300,
        "\x00" * 100,
        "1" * 10_000,
        '{"start": "nan", "end": "inf"}',
        '{"start": true, "end": false}',
    ],
)
def test_hostile_replies_never_raise(reply):
    assert isinstance(parse_moments(reply), list)


def _format(seconds: float, style: str) -> str:
    if style == "seconds":
        return f"{seconds:.1f}"
    if style == "unit":
        return f"{seconds:.1f}s"
    minutes, rest = divmod(seconds, 60)
    if style == "mm:ss":
        return f"{int(minutes):02d}:{rest:04.1f}"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}"


TEMPLATES = [
    "from {a} to {b}",
    "{a} - {b}",
    "The event occurs between {a} and {b}.",
    "{a} to {b}: the door opens",
    '{{"start": "{a}", "end": "{b}"}}',
    '[["{a}", "{b}"]]',
    '{{"{a} - {b}": "event"}}',
    '{{"timestamps": ["{a}", "{b}"], "label": "x"}}',
    # TimeLens' wordings and a bracketed pair.
    "Starting time: {a}. Ending time: {b}.",
    "The start time for this event is {a}, and the end time is {b}.",
    "The event is at [{a}, {b}].",
    "The person starts waving at {a} and ends at {b}.",
    # A thinking model's answer after its reasoning, which states other times.
    "<think>Not from 0 to 0.5, I think; maybe {b}?</think>It happens from {a} to {b}.",
]
POINT_TEMPLATES = [
    "It happens at {a}.",
    "A dog appears at second {a}.",
    '[{{"time": "{a}", "bbox_2d": [1, 2, 3, 4]}}]',
    "<think>from 0 to 1</think>It happens around {a}.",
]


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 36000),
    length=st.integers(1, 6000),
    style=st.sampled_from(["seconds", "unit", "mm:ss", "h:mm:ss"]),
    template=st.sampled_from(TEMPLATES),
)
def test_spans_written_in_any_supported_format_parse_back(start, length, style, template):
    a, b = start / 10, (start + length) / 10
    reply = template.format(a=_format(a, style), b=_format(b, style))
    spans = parse_moments(reply)
    assert len(spans) == 1, (reply, spans)
    assert abs(spans[0].start - a) < 0.051 and abs(spans[0].end - b) < 0.051, (reply, spans)


@settings(max_examples=100, deadline=None)
@given(
    start=st.integers(0, 36000),
    style=st.sampled_from(["seconds", "unit", "mm:ss", "h:mm:ss"]),
    template=st.sampled_from(POINT_TEMPLATES),
)
def test_points_written_in_any_supported_format_parse_back(start, style, template):
    a = start / 10
    (span,) = parse_moments(template.format(a=_format(a, style)))
    assert span.point and abs(span.start - a) < 0.051


def test_json_values_nested_anywhere():
    reply = json.dumps({"answer": {"moments": [{"interval": [1, 2], "description": "waves"}]}})
    (span,) = parse_moments(reply)
    assert (span.start, span.end, span.label) == (1.0, 2.0, "waves")


# --- linear in the reply's length -----------------------------------------------------------------------
# A server may send up to 16 MiB. Each bound below is minutes short of what a quadratic parser needs (the
# one-line reply of the issue took 2.5 s at 21 KB before, so hours at 16 MB) and many times what a linear one
# takes; benchmarks/replies.py measures the time against the length.
MB = 1 << 20
FRAMES = [FrameGeometry(i, (280, 280), (320, 240), f"0:00:0{i}.000") for i in range(4)]


def _parse_all(text: str) -> float:
    started = time.perf_counter()
    parse_moments(text)
    for family in ("qwen2-vl", "qwen2.5-vl", "qwen3-vl"):
        find_boxes(text, family, FRAMES)
    return time.perf_counter() - started


@pytest.mark.parametrize("piece", ["from 1 to 2 seconds. ", "from 1 to 2 seconds.\n"])
def test_a_16_megabyte_reply_parses_in_linear_time(piece):
    text = piece * (16 * MB // len(piece))
    assert _parse_all(text) < 60
    assert len(parse_moments(text)) == MAX_SPANS  # a flood of spans is read up to the bound


@pytest.mark.parametrize(
    "piece",
    [
        "[\\'",
        "<|object_ref_start|>",
        "frame" + " " * 1000,
        "1,2,3,4" + " " * 1000,
        "[",
        '{"bbox_2d": [1, 2, 3, 4], "label": "a"}, ',
        "[00:15 " + "  " * 100,
        "starting " + "x" * 30,
        "from 1 to",
        "<think>at ",
    ],
)
def test_hostile_reply_shapes_parse_in_linear_time(piece):
    text = (piece * (MB // 4 // len(piece) + 1))[: MB // 4]
    assert _parse_all(text) < 20


def test_a_long_line_of_strings_is_read_once():
    # Each string once looked for its line's end to the end of the reply: 4 MB on one line took minutes.
    text = "[" + '"a", ' * (4 * MB // 5)
    assert _parse_all(text) < 20
