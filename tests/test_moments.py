"""Spans in model replies (`keyframe_qa.parse_moments`): every way real replies state times, never raising."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyframe_qa import parse_moments
from keyframe_qa.moments import StatedSpan, parse_time_text


@pytest.mark.parametrize("reply, spans", [
    ("The event happens from 12.5 to 15.0 seconds.", [(12.5, 15.0)]),
    ("00:12.5 - 00:15", [(12.5, 15.0)]),
    ("between 1:02:03 and 1:02:10.5", [(3723.0, 3730.5)]),
    ("12.5s–15s", [(12.5, 15.0)]),
    ('[{"start": 3, "end": 7.5, "event": "door opens"}, {"start": "00:20", "end": "00:25", "event": "leaves"}]',
     [(3.0, 7.5), (20.0, 25.0)]),
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
])
def test_real_reply_shapes(reply, spans):
    assert [(s.start, s.end) for s in parse_moments(reply)] == spans


def test_labels_points_and_reversed_ranges():
    (event,) = parse_moments('[{"start": 3, "end": 7.5, "event": "door opens"}]')
    assert event.label == "door opens" and not event.point
    lines = parse_moments("- 2.0 - 4.0 seconds: a car passes")
    assert lines[0].label == "a car passes"
    (point,) = parse_moments("It happens at 12.5 seconds.")
    assert point.point and point.start == point.end == 12.5
    (swapped,) = parse_moments("from 15 to 12.5 seconds")
    assert swapped == StatedSpan(12.5, 15.0, "", reversed=True)


@pytest.mark.parametrize("text, seconds", [("12.5", 12.5), ("12.5s", 12.5), ("3 seconds", 3.0), ("00:12.5", 12.5),
                                           ("1:02:03.5", 3723.5), ("abc", None), ("1:2:3:4", None)])
def test_time_text(text, seconds):
    assert parse_time_text(text) == seconds


@pytest.mark.parametrize("reply", ["[" * 5000 + "]" * 5000, "{" * 300, "\x00" * 100, "1" * 10_000,
                                   '{"start": "nan", "end": "inf"}', '{"start": true, "end": false}'])
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
    "from {a} to {b}", "{a} - {b}", "The event occurs between {a} and {b}.", "{a} to {b}: the door opens",
    '{{"start": "{a}", "end": "{b}"}}', '[["{a}", "{b}"]]', '{{"{a} - {b}": "event"}}',
    '{{"timestamps": ["{a}", "{b}"], "label": "x"}}',
]


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 36000), length=st.integers(1, 6000), style=st.sampled_from(["seconds", "unit", "mm:ss",
                                                                                          "h:mm:ss"]),
       template=st.sampled_from(TEMPLATES))
def test_spans_written_in_any_supported_format_parse_back(start, length, style, template):
    a, b = start / 10, (start + length) / 10
    reply = template.format(a=_format(a, style), b=_format(b, style))
    spans = parse_moments(reply)
    assert len(spans) == 1, (reply, spans)
    assert abs(spans[0].start - a) < 0.051 and abs(spans[0].end - b) < 0.051, (reply, spans)


def test_json_values_nested_anywhere():
    reply = json.dumps({"answer": {"moments": [{"interval": [1, 2], "description": "waves"}]}})
    (span,) = parse_moments(reply)
    assert (span.start, span.end, span.label) == (1.0, 2.0, "waves")
