"""Generation settings as the model's own, replies cut at the limit flagged, seeded sampling repeatable,
and model-input pixels equal to what each family's processor makes itself."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from keyframe_qa.model.generation import GenerationRequest, resolve_generation
from keyframe_qa.records import GenerationSettings
from tests.helpers import assert_one_line_error, run

GREEDY_RECORD = {
    "max_new_tokens": 256,
    "do_sample": False,
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "repetition_penalty": None,
    "seed": None,
}


def ask_report(capsys, *args):
    code, out, err = run(capsys, "ask", *args)
    assert code == 0, err
    return json.loads(out), err


def test_greedy_is_the_default_and_recorded(capsys, videos, tiny_model):
    report, _ = ask_report(capsys, videos["plain.mp4"], "q?", "--at", "1", "--model", tiny_model)
    assert report["model"]["generation"] == GREEDY_RECORD
    again, _ = ask_report(capsys, videos["plain.mp4"], "q?", "--at", "1", "--model", tiny_model)
    assert again["answers"][0]["raw"] == report["answers"][0]["raw"]  # deterministic


def test_find_defaults_to_1024_new_tokens_unless_told(capsys, videos, tiny_model):
    report, _ = ask_report(
        capsys, videos["plain.mp4"], "--find", "car", "--at", "1", "--model", tiny_model, "--max-visual-tokens", "100"
    )
    assert report["model"]["generation"]["max_new_tokens"] == 1024
    report, _ = ask_report(
        capsys, videos["plain.mp4"], "--find", "car", "--at", "1", "--model", tiny_model, "--max-new-tokens", "5"
    )
    assert report["model"]["generation"]["max_new_tokens"] == 5


def test_a_reply_cut_at_the_limit_is_flagged_with_one_warning(capsys, videos, tiny_model):
    report, err = ask_report(
        capsys, videos["plain.mp4"], "q1?", "q2?", "--at", "1", "--model", tiny_model, "--max-new-tokens", "4"
    )
    assert [a["truncated"] for a in report["answers"]] == [True, True]
    assert all(a["answer"] is not None for a in report["answers"])
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "2 replies stopped at --max-new-tokens 4" in warnings[0] and "raise --max-new-tokens" in warnings[0]


def test_a_reply_that_ends_on_its_own_is_not_truncated(videos, tiny_model):
    """Make the token the tiny model says first its end-of-sequence token: the reply then ends by itself."""
    from keyframe_qa.jobs.ask import load_model
    from keyframe_qa.model.budget import plan_budget
    from keyframe_qa.records import VisualPrompt
    from keyframe_qa.video.frames import read_frames
    from keyframe_qa.video.probe import probe

    model = load_model(tiny_model)
    frames = read_frames(probe(videos["plain.mp4"]), [1.0])
    budgets = plan_budget([(f.width, f.height) for f in frames], model.family, max_visual_tokens=100)
    prompt = VisualPrompt(
        images=[f.image for f in frames], budgets=budgets, labels=["frame 1"], mode="images", times=[1.0]
    )
    first = model.answer(prompt, ["q?"], GenerationSettings(max_new_tokens=1, do_sample=False))[0]
    assert first.truncated and first.completion_tokens == 1
    token = model.tokenizer.encode(first.raw, add_special_tokens=False)[0]
    model.model.generation_config.eos_token_id = token
    ended = model.answer(prompt, ["q?"], GenerationSettings(max_new_tokens=5, do_sample=False))[0]
    assert ended.completion_tokens == 1 and not ended.truncated


def test_sampling_options_are_recorded_and_a_seed_repeats_the_answer(capsys, videos, tiny_model):
    args = [
        videos["plain.mp4"],
        "q?",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "12",
        "--temperature",
        "1.5",
        "--top-p",
        "0.95",
        "--top-k",
        "200",
        "--repetition-penalty",
        "1.1",
    ]
    first, _ = ask_report(capsys, *args, "--seed", "7")
    assert first["model"]["generation"] == {
        "max_new_tokens": 12,
        "do_sample": True,
        "temperature": 1.5,
        "top_p": 0.95,
        "top_k": 200,
        "repetition_penalty": 1.1,
        "seed": 7,
    }
    again, _ = ask_report(capsys, *args, "--seed", "7")
    other, _ = ask_report(capsys, *args, "--seed", "8")
    assert again["answers"][0]["raw"] == first["answers"][0]["raw"]
    # Fixed seeds: the outcome is fixed too; two seeds over 12 tokens of a 512-token vocabulary differ.
    assert other["answers"][0]["raw"] != first["answers"][0]["raw"]


def test_sampling_model_uses_the_checkpoints_generation_config(capsys, videos, tiny_model, tmp_path):
    sampler = tmp_path / "sampler"
    shutil.copytree(tiny_model, sampler)
    config = json.loads((sampler / "generation_config.json").read_text())
    config.update(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)
    (sampler / "generation_config.json").write_text(json.dumps(config))
    base = [videos["plain.mp4"], "q?", "--at", "1", "--model", str(sampler), "--max-new-tokens", "3"]
    report, _ = ask_report(capsys, *base, "--sampling", "model", "--seed", "1")
    assert report["model"]["generation"] == {
        "max_new_tokens": 3,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
        "seed": 1,
    }
    report, _ = ask_report(capsys, *base, "--sampling", "model", "--temperature", "0")
    assert report["model"]["generation"]["do_sample"] is False  # an explicit option wins
    report, _ = ask_report(capsys, *base)  # without --sampling model the checkpoint's sampling is not used
    assert report["model"]["generation"]["do_sample"] is False


def test_resolution_rules():
    defaults = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20}
    greedy = resolve_generation(GenerationRequest(), defaults)
    assert (greedy.do_sample, greedy.temperature, greedy.max_new_tokens) == (False, None, 256)
    assert resolve_generation(GenerationRequest(), defaults, find=True).max_new_tokens == 1024
    top_k_only = resolve_generation(GenerationRequest(top_k=5), None)
    assert (top_k_only.do_sample, top_k_only.temperature, top_k_only.top_k) == (True, 1.0, 5)
    model = resolve_generation(GenerationRequest(sampling="model", top_p=0.5), defaults)
    assert (model.temperature, model.top_p, model.top_k) == (0.7, 0.5, 20)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--temperature", "-1"], "--temperature"),
        (["--top-p", "1.5"], "--top-p must be above 0 and at most 1"),
        (["--top-p", "0"], "--top-p"),
        (["--top-k", "0"], "--top-k"),
        (["--repetition-penalty", "nan"], "--repetition-penalty"),
        (["--seed", "-1"], "--seed"),
        (["--sampling", "beam"], "--sampling"),
    ],
)
def test_bad_generation_options_are_usage_errors(capsys, videos, tiny_model, args, fragment):
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "q?", "--at", "1", "--model", tiny_model, *args)
    assert code == 2, err
    assert_one_line_error(err, fragment)


def test_compare_configs_take_the_same_settings(capsys, tmp_path, videos, tiny_model):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"defaults:\n  model: {tiny_model}\n  max_new_tokens: 4\n  temperature: 1.2\n  seed: 3\n"
        f"comparisons:\n  - name: a\n    video: {videos['plain.mp4']}\n    before: 1\n    after: 2\n"
        f"    questions: [q]\n    overrides: {{top_k: 50}}\n"
    )
    code, out, err = run(capsys, "compare", str(config))
    assert code == 0, err
    (comparison,) = json.loads(out)["comparisons"]
    assert comparison["generation"] == {
        "max_new_tokens": 4,
        "do_sample": True,
        "temperature": 1.2,
        "top_p": None,
        "top_k": 50,
        "repetition_penalty": None,
        "seed": 3,
    }
    config.write_text(config.read_text().replace("seed: 3", "seed: 3\n  top_p: 2"))
    code, out, err = run(capsys, "compare", str(config))
    assert code == 2 and "defaults.top_p: Input should be less than or equal to 1" in err


# --- model-input pixels: our budget + the engine's resize + processor(do_resize=False) must equal the
# processor resizing the display frame itself, for each family, enlarging, shrinking, and both at once.
GEOMETRIES = {
    "enlarge": ((100, 80), 200),  # (display width, height), minimum tokens: far above the frame's size
    "shrink": ((1280, 720), None),  # with max tokens 300 below
    "one-up-one-down": ((1100, 20), None),  # width rounds down to a multiple of 28 and of 32, height up
}


def _frame(width, height):
    import cv2

    rng = np.random.default_rng(width * 7 + height)
    coarse = rng.integers(0, 256, (height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)  # detail at several scales


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_model_input_pixels_equal_the_processors_own_resize(tiny_models, family, geometry):
    from keyframe_qa.engines.transformers import _check_grid
    from keyframe_qa.jobs.ask import load_model
    from keyframe_qa.model.budget import plan_budget
    from keyframe_qa.records import VisualPrompt

    model = load_model(tiny_models(family))
    (width, height), min_tokens = GEOMETRIES[geometry]
    unit = model.family.factor**2
    low = (min_tokens or 4) * unit
    high = (300 if geometry == "shrink" else 16384) * unit
    image = _frame(width, height)
    (budget,) = plan_budget([(width, height)], model.family, min_pixels=low, max_pixels=high, max_visual_tokens=None)
    if geometry == "enlarge":
        assert budget.input_width > width and budget.input_height > height
    elif geometry == "shrink":
        assert budget.input_width < width and budget.input_height < height
    else:
        assert budget.input_width < width and budget.input_height > height
    prompt = VisualPrompt(images=[image], budgets=[budget], labels=["frame 1"], mode="images", times=[0.0])
    (ours,) = model.model_inputs(prompt)
    processor = model.processor.image_processor
    mine = processor(images=[ours], do_resize=False, return_tensors="pt")
    reference = processor(
        images=[image], do_resize=True, size={"shortest_edge": low, "longest_edge": high}, return_tensors="pt"
    )
    assert mine["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    _check_grid(mine["image_grid_thw"].tolist(), prompt, model.family)
    # pixel_values are normalised: (x / 255 - mean) / std; back to 0-255 levels per channel.
    std = max(processor.image_std)
    levels = (mine["pixel_values"] - reference["pixel_values"]).abs().max().item() * std * 255
    assert levels <= 1.0, f"{levels:.2f} levels apart"


def test_video_frames_use_the_video_processors_resize(tiny_models):
    from keyframe_qa.jobs.ask import load_model
    from keyframe_qa.model.budget import plan_budget
    from keyframe_qa.records import VisualPrompt

    model = load_model(tiny_models("qwen2-vl"))
    frames = [_frame(1280, 720), _frame(1280, 720)]
    budgets = plan_budget([(1280, 720)] * 2, model.family, mode="video", max_visual_tokens=200)
    prompt = VisualPrompt(images=frames, budgets=budgets, labels=["a", "b"], mode="video", times=[0.0, 1.0])
    ours = model.model_inputs(prompt)
    assert all(o.shape == (budgets[0].input_height, budgets[0].input_width, 3) for o in ours)
    video = model.processor.video_processor
    unit = model.family.factor**2
    # The bounds the budget used for a pair of frames with 200 tokens: the processor lands on the same size.
    high = 200 * unit
    reference = video(
        videos=[np.stack(frames)],
        do_resize=True,
        do_sample_frames=False,
        size={"shortest_edge": min(128 * unit, high), "longest_edge": high},
        return_tensors="pt",
    )
    mine = video(videos=[np.stack(ours)], do_resize=False, do_sample_frames=False, return_tensors="pt")
    assert mine["video_grid_thw"].tolist() == reference["video_grid_thw"].tolist()
    levels = (mine["pixel_values_videos"] - reference["pixel_values_videos"]).abs().max().item()
    assert levels * max(video.image_std) * 255 <= 1.0
