import math

import pytest
from qwen_vl_utils import smart_resize as reference_smart_resize

from keyframe_qa.errors import UsageError
from keyframe_qa.model.budget import plan_budget, smart_resize
from keyframe_qa.model.families import family_from_config

QWEN2 = family_from_config({"model_type": "qwen2_vl"})
QWEN3 = family_from_config({"model_type": "qwen3_vl"})


@pytest.mark.parametrize("factor", [28, 32])
@pytest.mark.parametrize(
    "width, height",
    [(320, 240), (1920, 1080), (1024, 576), (704, 576), (176, 144), (3840, 2160), (60, 40), (1080, 1920), (1000, 10)],
)
@pytest.mark.parametrize("tokens", [(4, 16384), (128, 768), (16, 64), (1, 1)])
def test_smart_resize_matches_qwen_vl_utils(factor, width, height, tokens):
    low, high = tokens[0] * factor * factor, tokens[1] * factor * factor
    ours = smart_resize(height, width, factor, low, high)
    theirs = reference_smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)
    if min(theirs) > 0 and theirs[0] * theirs[1] <= high:
        assert ours == theirs
    else:  # the reference can produce a 0 side or overshoot max_pixels at extreme sizes; we do not
        assert min(ours) >= factor and ours[0] * ours[1] <= high


@pytest.mark.parametrize("mode", ["images", "video"])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
@pytest.mark.parametrize("cap", [1, 50, 300, 5000])
def test_total_visual_tokens_never_exceed_the_cap(mode, count, cap):
    try:
        budgets = plan_budget([(1920, 1080)] * count, QWEN2, mode=mode, max_visual_tokens=cap)
    except UsageError:
        slots = count if mode == "images" else math.ceil(count / 2)
        assert cap < slots  # only refused when not even one token per frame fits
        return
    assert sum(b.visual_tokens for b in budgets) <= cap
    for b in budgets:
        assert b.input_width % 28 == 0 and b.input_height % 28 == 0


def test_budget_is_split_fairly_between_frames():
    budgets = plan_budget([(1920, 1080)] * 4, QWEN2, max_visual_tokens=1000)
    assert len({(b.input_width, b.input_height) for b in budgets}) == 1
    assert budgets[0].visual_tokens <= 250


def test_per_frame_pixel_limits_apply():
    (budget,) = plan_budget([(1920, 1080)], QWEN3, max_pixels=200_000, max_visual_tokens=None)
    assert budget.input_width * budget.input_height <= 200_000
    assert budget.input_width % 32 == 0
    assert budget.visual_tokens == (budget.input_width // 32) * (budget.input_height // 32)


def test_video_tokens_are_paid_per_pair_of_frames():
    budgets = plan_budget([(640, 480)] * 3, QWEN2, mode="video", max_visual_tokens=None)
    per_patch = (budgets[0].input_width // 28) * (budgets[0].input_height // 28)
    assert sum(b.visual_tokens for b in budgets) == 2 * per_patch


@pytest.mark.parametrize(
    "kwargs",
    [dict(min_pixels=10_000, max_pixels=5_000), dict(max_pixels=100), dict(max_visual_tokens=0), dict(mode="audio")],
)
def test_impossible_budgets_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        plan_budget([(640, 480)], QWEN2, **kwargs)
