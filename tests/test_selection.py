"""Uniform sampling, the default sampling and contradictory selections."""

import pytest

from keyframe_qa.errors import UsageError
from keyframe_qa.selection.scenes import SceneOptions
from keyframe_qa.selection.select import SelectionRequest, select
from keyframe_qa.video.probe import probe


@pytest.fixture(scope="module")
def plain(videos):
    return probe(videos["plain.mp4"])  # 6.0 s at 10 fps


def test_every(plain):
    selection = select(plain, SelectionRequest(every=1.5))
    assert selection.times == (0.0, 1.5, 3.0, 4.5)
    assert selection.requested == (None,) * 4
    assert selection.record == {"method": "every", "every": 1.5}


def test_fps(plain):
    assert select(plain, SelectionRequest(fps=0.5)).times == (0.0, 2.0, 4.0)


def test_num_frames_spreads_over_the_middles(plain):
    assert select(plain, SelectionRequest(num_frames=3)).times == (1.0, 3.0, 5.0)


def test_default_samples_like_qwen_vl_utils(plain):
    selection = select(plain, SelectionRequest())
    assert len(selection.times) == 12  # 6 s at 2 fps
    assert selection.record["method"] == "default" and "qwen-vl-utils" in selection.record["note"]


def test_default_is_capped_by_the_budget(plain):
    selection = select(plain, SelectionRequest(max_visual_tokens=64 * 5))
    assert len(selection.times) == 5
    assert "capped" in selection.record["note"]
    video = select(plain, SelectionRequest(max_visual_tokens=128 * 3, mode="video"))
    assert len(video.times) == 6  # three temporal patches of two frames


def test_scenes_selection_tags_frames_with_scene_indices(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYFRAME_QA_CACHE_DIR", str(tmp_path))
    video = probe(videos["cut.mp4"])
    selection = select(video, SelectionRequest(scenes=True, scene_options=SceneOptions(keyframe="first")))
    assert selection.times == (0.0, 2.5)
    assert selection.scenes == (0, 1)
    assert selection.record["scenes_found"] == 2


@pytest.mark.parametrize(
    "request_kwargs, scene_kwargs, fragment",
    [
        (dict(times=(1.0,), scenes=True), {}, "--at and --scenes"),
        (dict(every=1.0, fps=2.0), {}, "--every and --fps"),
        (dict(num_frames=3, every=1.0), {}, "--every and --num-frames"),
        (dict(every=0.0), {}, "--every"),
        (dict(every=-1.0), {}, "--every"),
        (dict(num_frames=0), {}, "--num-frames"),
        (dict(fps=0.0), {}, "--fps"),
        (dict(scenes=True), dict(max_scenes=0), "--max-scenes"),
        (dict(scenes=True), dict(detector="magic"), "unknown detector"),
        (dict(scenes=True), dict(threshold=-1.0), "--threshold"),
    ],
)
def test_bad_selections_cannot_be_made(request_kwargs, scene_kwargs, fragment):
    # Checked when the records are made: no selection that cannot work exists to be passed on.
    with pytest.raises(UsageError, match=fragment):
        SelectionRequest(**request_kwargs, scene_options=SceneOptions(**scene_kwargs))
