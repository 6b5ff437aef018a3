import pytest

from keyframe_qa.errors import UsageError
from keyframe_qa.timecodes import format_time, parse_time, parse_time_list


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("5.5", 5.5),
        ("10", 10.0),
        (".25", 0.25),
        ("0", 0.0),
        ("1:05.5", 65.5),
        ("01:05", 65.0),
        ("00:01:05.500", 65.5),
        ("1:00:00", 3600.0),
        ("2:03:04.250", 7384.25),
        (" 7 ", 7.0),
    ],
)
def test_parse_time_accepts_seconds_and_clock_forms(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-1", "-0:05", "abc", "1:75", "1:60:00", "5s", "1::2", "", "1:2:3:4", "nan", "inf"])
def test_parse_time_rejects_malformed_and_negative(text):
    with pytest.raises(UsageError):
        parse_time(text)


def test_parse_time_list_keeps_order():
    assert parse_time_list("10,5.5,0:01") == [10.0, 5.5, 1.0]


def test_parse_time_list_rejects_empty_entries():
    with pytest.raises(UsageError):
        parse_time_list("5,,6")
    with pytest.raises(UsageError):
        parse_time_list(" , ")


def test_format_time():
    assert format_time(3725.5) == "1:02:05.500"
