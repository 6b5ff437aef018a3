"""Batched generation across videos (`batch --batch-size N`) and the retry after running out of GPU memory."""

import json
import os

import numpy as np
import pytest
import torch
from transformers.models.qwen2_vl import modeling_qwen2_vl

from keyframe_qa import AskRequest, EngineSpec, GenerationRequest
from keyframe_qa.engines.transformers import QwenVLModel
from keyframe_qa.jobs.batch import iter_lines, run_batch
from keyframe_qa.jobs.batch_inputs import collect_items
from keyframe_qa.model.budget import plan_request
from keyframe_qa.records import GenerationSettings, VisualPrompt
from keyframe_qa.selection.select import SelectionRequest
from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
from tests.helpers import assert_one_line_error, run

SIZES = [(160, 120), (96, 160), (128, 96), (200, 100), (64, 64)]


@pytest.fixture(scope="module")
def engine(tiny_model):
    return QwenVLModel(tiny_model, device="cpu")


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory):
    """Five short clips, each of another frame size, and one file that is not a video."""
    root = tmp_path_factory.mktemp("mixed")
    for number, (width, height) in enumerate(SIZES):
        write_video(str(root / f"clip{number}.mp4"), SyntheticSpec(frame_count=20, fps=10, width=width, height=height))
    (root / "zz_broken.mp4").write_text("not a video")
    return root


def prompt(engine, count, width, height, seed, mode="images"):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    budgets = plan_request([(width, height)] * count, engine.family, mode=mode, max_visual_tokens=None)
    return VisualPrompt(
        images=images,
        budgets=budgets,
        labels=[f"frame {i + 1} at 0:00:0{i}.000" for i in range(count)],
        mode=mode,
        times=[float(i) for i in range(count)],
    )


@pytest.mark.parametrize("mode", ["images", "video"])
def test_a_batch_of_prompts_gives_the_replies_of_one_at_a_time(engine, mode):
    calls = [
        (prompt(engine, 2, 160, 120, 0, mode), ["What is this?", "Describe it in a few words, please."]),
        (prompt(engine, 1 if mode == "images" else 2, 200, 100, 1, mode), ["Same?"]),
        (prompt(engine, 3 if mode == "images" else 2, 64, 64, 2, mode), ["Which colour is the top left corner?"]),
    ]
    settings = GenerationSettings(max_new_tokens=12, do_sample=False)
    one_at_a_time = [engine.answer(p, questions, settings) for p, questions in calls]
    batched = engine.answer_batch(calls, settings)
    assert batched == one_at_a_time
    replies = [r for group in batched for r in group]
    # Prompts of different lengths were left-padded, and the padding after an early end was cut off.
    assert len({r.prompt_tokens for r in replies}) > 1
    if mode == "images":
        assert {r.truncated for r in replies} == {True, False}


def test_batch_size_answers_every_video_as_one_at_a_time_does(mixed_sizes, tiny_model, tmp_path):
    items = collect_items([str(mixed_sizes)])
    template = AskRequest(
        video="",
        questions=("What is it?",),
        engine=EngineSpec(model_id=tiny_model, device="cpu"),
        selection=SelectionRequest(num_frames=2),
        generation=GenerationRequest(max_new_tokens=6),
    )
    one = run_batch(items, template, str(tmp_path / "one.jsonl"), progress=False)
    batched = run_batch(items, template, str(tmp_path / "batched.jsonl"), progress=False, batch_size=4)
    assert (one.done, one.failed, batched.done, batched.failed) == (5, 1, 5, 1)
    assert one.batches == () and sum(batched.batches) == 5 and max(batched.batches) > 1

    def answers(path):
        return {
            os.path.basename(r["video"]["path"]): (
                r["status"],
                [a["answer"] for a in r.get("answers", [])],
                [(f["input_width"], f["input_height"]) for f in r.get("frames", [])],
            )
            for r in iter_lines(path)
        }

    assert answers(tmp_path / "batched.jsonl") == answers(tmp_path / "one.jsonl")
    # The settings hash does not include the batch size: a rerun with another batch size resumes.
    again = run_batch(items, template, str(tmp_path / "batched.jsonl"), progress=False, batch_size=2)
    assert (again.done, again.skipped) == (0, 5)


def test_batch_size_on_the_command_line(capsys, mixed_sizes, tiny_model, tmp_path):
    output = tmp_path / "out.jsonl"
    code, out, err = run(
        capsys,
        "batch",
        str(mixed_sizes),
        "-q",
        "What?",
        "-q",
        "Where?",
        "--at",
        "0.5",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "3",
        "--batch-size",
        "4",
        "-o",
        str(output),
    )
    assert code == 1  # the file that is not a video
    assert "5 answered, 1 failed" in err and "generate batches of" in err
    assert sum(1 for r in iter_lines(output) if r["status"] == "ok") == 5


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "2", "--engine", "openai", "--base-url", "http://localhost:1/v1"], "in-process model"),
        (["--batch-size", "2", "--ray"], "in-process model"),
        (["--batch-size", "2", "--temperature", "0.7", "--seed", "3"], "--seed with sampling needs --batch-size 1"),
    ],
)
def test_batch_size_usage_errors(capsys, mixed_sizes, tiny_model, tmp_path, extra, fragment):
    code, out, err = run(
        capsys, "batch", str(mixed_sizes), "-q", "What?", "--model", tiny_model, "-o", str(tmp_path / "o.jsonl"), *extra
    )
    assert code == 2
    assert_one_line_error(err, fragment)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.fixture()
def gpu_memory_for(monkeypatch):
    """Inject an allocation failure: the vision tower runs out of memory above a number of patches."""
    limit = {"patches": None, "failures": 0}
    forward = modeling_qwen2_vl.Qwen2VisionTransformerPretrainedModel.forward

    def limited(self, hidden_states, grid_thw, **kwargs):
        patches = int(grid_thw.prod(dim=-1).sum())
        if limit["patches"] is not None and patches > limit["patches"]:
            limit["failures"] += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB ({patches} patches)")
        return forward(self, hidden_states, grid_thw, **kwargs)

    monkeypatch.setattr(modeling_qwen2_vl.Qwen2VisionTransformerPretrainedModel, "forward", limited)
    return limit


def ask_json(capsys, video, tiny_model, *extra):
    code, out, err = run(
        capsys, "ask", video, "What is it?", "--at", "0.5,1.5", "--model", tiny_model, "--max-new-tokens", "4", *extra
    )
    return code, (json.loads(out) if code == 0 else None), err


def test_out_of_memory_retries_once_with_half_the_visual_tokens(capsys, mixed_sizes, tiny_model, gpu_memory_for):
    video = str(mixed_sizes / "clip0.mp4")
    code, full, _ = ask_json(capsys, video, tiny_model, "--max-visual-tokens", "40")
    used = sum(f["visual_tokens"] for f in full["frames"])
    half = used // 2
    code, fresh, _ = ask_json(capsys, video, tiny_model, "--max-visual-tokens", str(half))
    assert code == 0
    # Each visual token is 4 patches (2x2 merge): the GPU is made to hold more than half, less than all.
    gpu_memory_for["patches"] = (used + half) * 2
    code, report, err = ask_json(capsys, video, tiny_model, "--max-visual-tokens", "40")
    assert code == 0 and gpu_memory_for["failures"] == 1
    assert any(
        f"ran out of memory with {used} visual tokens; retrying once with --max-visual-tokens {half}" in line
        for line in err.strip().splitlines()
    ), err
    retry = report["memory_retry"]
    assert (retry["visual_tokens_before"], retry["max_visual_tokens"]) == (used, half)
    assert retry["visual_tokens"] == sum(f["visual_tokens"] for f in report["frames"]) <= half
    assert "CUDA out of memory" in retry["error"]
    # The retry decoded the frames again at the smaller size: the same frames, budgets and answer as asking
    # for half the tokens in the first place.
    assert report["frames"] == fresh["frames"]
    assert report["answers"][0]["answer"] == fresh["answers"][0]["answer"]


def test_out_of_memory_again_after_the_retry_is_one_error_line(capsys, mixed_sizes, tiny_model, gpu_memory_for):
    gpu_memory_for["patches"] = 10
    code, _, err = ask_json(capsys, str(mixed_sizes / "clip0.mp4"), tiny_model, "--max-visual-tokens", "40")
    assert code == 1 and gpu_memory_for["failures"] == 2
    # transformers draws its own "Loading weights" bar on stderr; our lines are the rest.
    warning, error = [line for line in err.strip().splitlines() if not line.startswith("Loading weights")]
    assert warning.startswith("warning: ") and "retrying once with --max-visual-tokens 15" in warning
    assert_one_line_error(error, "the GPU ran out of memory")


def batch_of_two(tiny_model, mixed_sizes, output):
    """clip3 (two 200x100 frames: 224 patches at 60 tokens, 112 at half) and clip4 (two 64x64: 32) in one batch."""
    items = collect_items([str(mixed_sizes / f"clip{n}.mp4") for n in (3, 4)])
    template = AskRequest(
        video="",
        questions=("What is it?",),
        engine=EngineSpec(model_id=tiny_model, device="cpu"),
        selection=SelectionRequest(num_frames=2),
        generation=GenerationRequest(max_new_tokens=3),
        max_visual_tokens=60,
    )
    summary = run_batch(items, template, str(output), progress=False, batch_size=2)
    return summary, {os.path.basename(r["video"]["path"]): r for r in iter_lines(output)}


def test_a_batch_out_of_memory_runs_again_one_prompt_at_a_time(mixed_sizes, tiny_model, tmp_path, gpu_memory_for):
    gpu_memory_for["patches"] = 230  # each fits alone, not both together
    summary, lines = batch_of_two(tiny_model, mixed_sizes, tmp_path / "out.jsonl")
    assert (summary.done, summary.failed) == (2, 0) and gpu_memory_for["failures"] == 1
    assert summary.batches == (2, 1, 1)
    assert all("memory_retry" not in record for record in lines.values())


def test_a_video_out_of_memory_in_a_batch_is_recorded_and_the_run_goes_on(
    mixed_sizes, tiny_model, tmp_path, gpu_memory_for
):
    gpu_memory_for["patches"] = 60  # clip3 does not fit even at half its budget; clip4 does
    summary, lines = batch_of_two(tiny_model, mixed_sizes, tmp_path / "out.jsonl")
    assert (summary.done, summary.failed) == (1, 1)
    assert lines["clip3.mp4"]["status"] == "error" and "ran out of memory" in lines["clip3.mp4"]["error"]
    assert lines["clip4.mp4"]["status"] == "ok"
