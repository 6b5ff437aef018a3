"""Every numeric option has a declared largest value, and a value past it is refused before any work,
naming that value: walked over OPTIONS, on the command line, at 1e9 and 1e300."""

from __future__ import annotations

import math

import click
import pytest

import keyframe_qa.jobs.frames as frames_module
import keyframe_qa.jobs.when as when_module
from keyframe_qa.cli import cli
from keyframe_qa.errors import UsageError
from keyframe_qa.options import OPTIONS, check_value, limits_text
from tests.helpers import assert_one_line_error, run

# A text option whose value holds a number (--candidates keyframes|RATE): its limits bound that number.
NUMERIC = [
    name
    for name, option in OPTIONS.items()
    if option.kind in (int, float) or (option.kind is str and option.high is not None)
]
# What else a command needs before it reads the option at all.
CONTEXT = {
    "candidates": ["--relevant", "2", "--query", "x"],
    "threshold": ["--scenes"],
    "max_scenes": ["--scenes"],
    "min_scene_len": ["--scenes"],
}
PREFERRED = ("frames", "when", "ask", "batch", "view")  # the cheapest command that takes the option


def _command(option) -> str:
    for name in PREFERRED:
        if any(option.cli_flag in p.opts for p in cli.commands[name].params if isinstance(p, click.Option)):
            return name
    raise AssertionError(f"no command takes {option.cli_flag}")


def _spelled(option, value: float) -> str:
    # A whole-number option is given the number in digits (1e9 is "not a whole number", refused anyway), and so
    # is the shortest scene, in seconds.
    if option.name == "min_scene_len":
        return f"{int(value)}s"
    return str(int(value)) if option.kind is int else f"{value:g}"


def test_every_numeric_option_declares_its_largest_value():
    assert len(NUMERIC) >= 24
    for name in NUMERIC:
        high = OPTIONS[name].high
        assert high is not None and math.isfinite(high), name
        assert "at most" in limits_text(OPTIONS[name]), name


@pytest.mark.parametrize("name", [n for n in NUMERIC if OPTIONS[n].kind in (int, float)])
def test_the_library_check_refuses_past_the_largest(name):
    option = OPTIONS[name]
    value = option.kind(option.high)
    assert check_value(name, value) == value
    for huge in (option.high + 1, 10**300 if option.kind is int else 1e300):
        with pytest.raises(UsageError, match="at most"):
            check_value(name, huge)


@pytest.fixture()
def no_work(monkeypatch):
    """Fail if a video is probed or a model built."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the option was refused")

    for module in (frames_module, when_module):
        monkeypatch.setattr(module, "probe", forbidden)
    import keyframe_qa.jobs.ask as ask_module

    monkeypatch.setattr(ask_module, "read_selected", forbidden)
    monkeypatch.setattr(ask_module, "build_engine", forbidden)


@pytest.mark.parametrize("value", [1e9, 1e300])
@pytest.mark.parametrize("name", NUMERIC)
def test_a_huge_value_of_every_numeric_option_is_refused_on_the_command_line(
    capsys, videos, tiny_model, tmp_path, no_work, name, value
):
    option = OPTIONS[name]
    if value <= option.high:
        pytest.skip(f"{option.cli_flag} takes {value:g} (it is at most {option.high:g})")
    command = _command(option)
    args = {
        "frames": [videos["plain.mp4"], "--out", str(tmp_path / "f")],
        "when": [videos["plain.mp4"], "a door", "--model", tiny_model],
        "ask": [videos["plain.mp4"], "q?", "--model", tiny_model, "--at", "1"],
        "batch": [videos["plain.mp4"], "-q", "q?", "--model", tiny_model, "--at", "1", "-o", str(tmp_path / "r.jsonl")],
        "view": [str(tmp_path / "results.jsonl"), "--html", str(tmp_path / "page.html")],
    }[command]
    code, out, err = run(capsys, command, *args, *CONTEXT.get(name, []), option.cli_flag, _spelled(option, value))
    assert code == 2, err
    assert_one_line_error(err, option.cli_flag)
    largest = int(option.high) if option.kind is int or name == "min_scene_len" else option.high
    assert f"at most {largest:g}" in err or f"at most {largest}" in err, err
    assert out == ""


def test_candidates_above_the_video_rate_are_refused_before_the_scorer_loads(
    capsys, videos, tiny_scorers, tmp_path, monkeypatch
):
    import keyframe_qa.engines.scorer as scorer_module

    monkeypatch.setattr(scorer_module, "load_scorer", lambda *a, **k: pytest.fail("the scorer loaded"))
    code, out, err = run(
        capsys,
        "frames",
        videos["plain.mp4"],
        "--out",
        str(tmp_path / "f"),
        "--relevant",
        "2",
        "--query",
        "x",
        "--candidates",
        "500",
        "--scorer",
        tiny_scorers("clip"),
    )
    assert code == 2, err
    assert_one_line_error(err, "use --candidates 10 or less (every frame)")
