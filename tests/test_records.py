"""The records are written out, and OPTIONS stays the one declaration of every option they carry."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

from keyframe_qa import AskRequest, EngineSpec, GenerationRequest, SceneOptions, SelectionRequest, WhenRequest
from keyframe_qa.answering import AnswerOptions
from keyframe_qa.errors import UsageError
from keyframe_qa.options import OPTIONS

RECORDS = (AskRequest, WhenRequest, SelectionRequest, SceneOptions, EngineSpec, GenerationRequest, AnswerOptions)
# Options that belong to one command's own arguments, not to a record (the frames command's image settings,
# a batch's scheduling).
COMMAND_ONLY = {"image_format", "quality", "max_side", "query", "concurrency", "batch_size", "limit"}


def _option_fields(record: type) -> list[dataclasses.Field]:
    return [item for item in dataclasses.fields(record) if "option" in item.metadata]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_each_option_field_is_declared_once_in_options(record):
    hints = typing.get_type_hints(record)
    for item in dataclasses.fields(record):
        required = item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        nested = dataclasses.is_dataclass(item.default_factory)  # `engine`: the EngineSpec holding --engine
        if item.name in OPTIONS and not required and not nested:  # (required: an argument, `when`'s QUERY)
            # A field named as an option is that option: made by option(), never a second declaration.
            assert item.metadata.get("option") == item.name, f"{record.__name__}.{item.name} is not option()"
        if "option" not in item.metadata:
            continue
        declared = OPTIONS[item.metadata["option"]]
        assert item.name == declared.name
        assert item.default == declared.default, f"{record.__name__}.{item.name}"
        assert item.metadata["help"] == declared.help
        # The written type is the declared kind (Optional where the default is decided later).
        hint = hints[item.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = typing.get_origin(args[0]) or args[0] if typing.get_origin(hint) is typing.Union else hint
        base = typing.get_origin(base) or base
        assert base is declared.kind, f"{record.__name__}.{item.name}: {hint} is not {declared.kind.__name__}"
        if declared.default is None:
            assert type(None) in typing.get_args(hint), f"{record.__name__}.{item.name} must be Optional"


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_records_are_frozen_and_every_field_says_what_it_is(record):
    assert record.__dataclass_params__.frozen
    source = inspect.getsource(record)
    for item in dataclasses.fields(record):
        (line,) = [text for text in source.splitlines() if text.strip().startswith(f"{item.name}:")]
        assert "#" in line, f"{record.__name__}.{item.name} has no comment"


def test_every_option_is_carried_by_a_record_or_a_command():
    carried = {item.metadata["option"] for record in RECORDS for item in _option_fields(record)}
    assert carried | COMMAND_ONLY == set(OPTIONS)
    assert not carried & COMMAND_ONLY


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: EngineSpec(engine="magic"), "unknown engine"),
        (lambda: GenerationRequest(top_p=2.0), "--top-p must be"),
        (lambda: SceneOptions(min_scene_len="soon"), "--min-scene-len"),
        (lambda: SelectionRequest(every=1.0, num_frames=3), "choose frames one way"),
        (lambda: SelectionRequest(times=()), "--at needs at least one time"),
        (lambda: SelectionRequest(candidates="keyframes"), "goes with --relevant"),
        (lambda: AskRequest(video="v.mp4", questions=("q",), max_visual_tokens=0), "--max-visual-tokens"),
        (lambda: WhenRequest(video="v.mp4", query="x", window_frames=1), "--window-frames"),
    ],
)
def test_a_record_that_cannot_work_cannot_be_made(make, fragment):
    with pytest.raises(UsageError, match=fragment):
        make()


def test_times_live_in_the_selection_alone():
    # Once a flat `times` beside `selection` was a run-time error; now there is only one place to say them.
    assert "times" not in {item.name for item in dataclasses.fields(AskRequest)}
    request = AskRequest(video="v.mp4", questions=("q",), selection=SelectionRequest(times=(1.0, 2.5)))
    assert request.selection.times == (1.0, 2.5) and request.selection.method == "at"
