"""Requests that cannot work are refused at once, before decoding or loading a model; the small
things a user meets first (bare command, per-frame video, damaged streams, a missing model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import av
import pytest

import keyframe_qa.jobs.ask as pipeline_module
from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
from tests.helpers import assert_one_line_error, run


@pytest.fixture()
def no_work(monkeypatch):
    """Fail the test if a frame is decoded or a model loaded."""

    def forbidden(*args, **kwargs):
        raise AssertionError("expensive work started before the request was refused")

    monkeypatch.setattr(pipeline_module, "read_selected", forbidden)
    monkeypatch.setattr(pipeline_module, "build_engine", forbidden)


TEN_THOUSAND = ",".join(f"{i * 0.0005:.4f}" for i in range(10000))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--fps", "500"], "--fps 500 would pick 3000 frames, but"),
        (["--every", "0.000001"], "use --every 0.1 or more"),
        (["--num-frames", "1000000"], "use --num-frames 60 or fewer"),
        (["--at", TEN_THOUSAND], "10000 times: their frames and labels alone take at least"),
        (
            ["--at", "1,2,3", "--max-visual-tokens", "2"],
            "more than --max-visual-tokens 2 can give one visual token each",
        ),
        (["--at", "1,2,3,4,5", "--mode", "video", "--max-visual-tokens", "2"], "one visual token each"),
        (["--at", "1,2,3", "--per-frame", "--mode", "video", "--max-visual-tokens", "2"], "even one visual token"),
    ],
)
def test_impossible_selections_are_usage_errors_before_decoding(capsys, videos, tiny_model, no_work, args, fragment):
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "q?", "--model", tiny_model, *args)
    assert code == 2, err
    assert_one_line_error(err, fragment)


HUGE = "9" * 400


@pytest.mark.parametrize(
    "option",
    ["--num-frames", "--max-visual-tokens", "--max-new-tokens", "--min-pixels", "--max-pixels", "--max-scenes"],
)
def test_huge_whole_numbers_are_usage_errors(capsys, videos, tiny_model, option):
    extra = ["--scenes"] if option == "--max-scenes" else []
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "q?", "--model", tiny_model, option, HUGE, *extra)
    assert code == 2, err
    assert_one_line_error(err, option)
    assert "Overflow" not in err


@pytest.mark.parametrize(
    "option, value",
    [("--every", "1e400"), ("--fps", "inf"), ("--every", "nan"), ("--threshold", "1e999"), ("--at", HUGE)],
)
def test_infinite_and_nan_numbers_are_usage_errors(capsys, videos, tiny_model, option, value):
    extra = ["--scenes"] if option == "--threshold" else []
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "q?", "--model", tiny_model, option, value, *extra)
    assert code == 2, err
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1


def test_huge_numbers_in_a_compare_config_are_config_errors(capsys, tmp_path, videos):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"defaults:\n  max_new_tokens: {HUGE}\ncomparisons:\n  - name: a\n    video: {videos['plain.mp4']}\n"
        "    before: 1\n    after: 2\n    questions: [q]\n"
    )
    code, out, err = run(capsys, "compare", str(config))
    assert code == 2
    assert "defaults.max_new_tokens: Input should be less than or equal to 1048576" in err


def test_budgets_are_checked_against_the_family_before_any_work(capsys, videos, tiny_models, no_work):
    tiny_models("qwen3-vl")
    capsys.readouterr()  # building the checkpoint prints its own progress
    # 900 pixels is more than one Qwen2-VL token (28x28) but less than one Qwen3-VL token (32x32).
    code, out, err = run(
        capsys, "ask", videos["plain.mp4"], "q?", "--at", "1", "--max-pixels", "900", "--model", tiny_models("qwen3-vl")
    )
    assert code == 2
    assert_one_line_error(err, "--max-pixels 900 is below one visual token (32x32 = 1024 pixels)")


def test_a_prompt_over_the_context_is_refused_before_decoding(capsys, videos, tiny_model, no_work):
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q?",
        "--num-frames",
        "50",
        "--min-pixels",
        "1000000",
        "--max-visual-tokens",
        "1000000",
        "--model",
        tiny_model,
    )
    assert code == 2
    assert_one_line_error(err, "over the model's context of 32768 tokens")
    assert "the prompt needs at least 64333 tokens plus up to 256" in err and "lower --max-visual-tokens" in err


def test_the_exact_prompt_length_is_checked_against_the_context(capsys, videos, tiny_model, tmp_path):
    short = tmp_path / "short-context"
    shutil.copytree(tiny_model, short)
    config = json.loads((short / "config.json").read_text())
    for section in (config, config.get("text_config") or {}):
        if "max_position_embeddings" in section:
            section["max_position_embeddings"] = 141
    (short / "config.json").write_text(json.dumps(config))
    # The early bound (88 visual tokens, 2 markers, the label and the question: 133, + 8 <= 141) passes;
    # the chat template's system turn and role markers do not fit.
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "Describe the picture in detail please.",
        "--at",
        "1",
        "--model",
        str(short),
        "--max-new-tokens",
        "8",
    )
    assert code == 2, err
    # In-process the library's load bars were enabled by earlier tests; the CLI's own line is the last.
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: the prompt needs ") and "at least" not in last  # the engine's count is exact
    assert "plus up to 8 for the reply, over the model's context of 141 tokens" in last


def test_bare_command_prints_help_and_exits_0(capsys):
    code, out, err = run(capsys)
    assert code == 0
    assert out.startswith("Usage: keyframe-qa") and "Commands:" in out and err == ""


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_video_mode_per_frame_asks_a_one_frame_video_each(capsys, videos, tiny_models, family):
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q?",
        "--at",
        "1,2,3",
        "--mode",
        "video",
        "--per-frame",
        "--model",
        tiny_models(family),
        "--max-new-tokens",
        "2",
        "--max-visual-tokens",
        "600",
    )
    assert code == 0, err
    report = json.loads(out)
    factor = 32 if family == "qwen3-vl" else 28
    for frame in report["frames"]:
        # A one-frame video fills a whole temporal patch: every token of its grid is its own.
        assert frame["visual_tokens"] == (frame["input_width"] // factor) * (frame["input_height"] // factor)
    assert report["usage"]["visual_tokens"] <= 600
    assert [a["frame"] for a in report["answers"]] == [0, 1, 2]


def test_video_mode_per_frame_in_batch_answers_every_video(capsys, videos, tiny_model, tmp_path):
    output = tmp_path / "out.jsonl"
    code, out, err = run(
        capsys,
        "batch",
        videos["plain.mp4"],
        videos["cut.mp4"],
        "-q",
        "q",
        "--at",
        "1,2",
        "--mode",
        "video",
        "--per-frame",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(output),
    )
    assert code == 0, err
    assert [json.loads(text)["status"] for text in output.read_text().splitlines()] == ["ok", "ok"]


def test_scenes_on_a_bad_file_prints_one_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    result = subprocess.run(
        [sys.executable, "-m", "keyframe_qa", "scenes", str(bad), "--no-cache"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert (
        result.stderr.count("\n") == 1
        and result.stderr.startswith("Error: ")
        and "not a readable video" in result.stderr
    )


def damage_keyframe(source: str, target: str, which: int = 1) -> float:
    """Flip bits in the slice data of the `which`-th keyframe; returns its time. The decoder conceals
    the damage and outputs the frame (and those predicted from it) visibly broken."""
    data = bytearray(open(source, "rb").read())
    with av.open(source) as container:
        stream = container.streams.video[0]
        keys = [(p.pts, p.pos, p.size) for p in container.demux(stream) if p.size and p.is_keyframe]
        time_base = stream.time_base
    pts, pos, size = keys[which]
    for offset in range(pos + size // 2, pos + size // 2 + min(2000, size // 3), 50):
        data[offset] ^= 0x10
    open(target, "wb").write(bytes(data))
    return float(pts * time_base)


def test_a_damaged_stream_marks_its_frames_corrupt_with_one_warning(capsys, tmp_path):
    clean = str(tmp_path / "clean.mp4")
    write_video(clean, SyntheticSpec(width=320, height=240, frame_count=40, fps=10, gop=10, bframes=0))
    damaged = str(tmp_path / "damaged.mp4")
    broken_at = damage_keyframe(clean, damaged)
    code, out, err = run(capsys, "frames", damaged, "--every", "0.5", "--out", str(tmp_path / "d"))
    assert code == 0, err
    warnings = [text for text in err.splitlines() if text.startswith("warning:")]
    assert len(warnings) == 1 and 'marked "corrupt"' in warnings[0]
    frames = json.loads((tmp_path / "d" / "frames.json").read_text())["frames"]
    corrupt = [f["timestamp"] for f in frames if f.get("corrupt")]
    assert corrupt and corrupt[0] == broken_at and all(broken_at <= t < broken_at + 1.0 for t in corrupt)
    code, out, err = run(capsys, "frames", clean, "--every", "0.5", "--out", str(tmp_path / "c"))
    assert code == 0 and "warning" not in err
    assert not any("corrupt" in f for f in json.loads((tmp_path / "c" / "frames.json").read_text())["frames"])


def test_a_model_missing_from_the_cache_is_announced_before_the_hub_wait(capsys, videos, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    said_before_the_wait = []

    def hub(*args, **kwargs):  # stands in for the network only: what was on stderr when the wait began
        said_before_the_wait.append(capsys.readouterr().err)
        raise OSError("hub unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "q?", "--at", "1", "--model", "someone/some-model")
    assert code == 1
    assert "someone/some-model is not in the Hugging Face cache" in said_before_the_wait[0]
    assert "set HF_HUB_OFFLINE=1 to skip the wait" in said_before_the_wait[0]
    assert_one_line_error(err, "uv run hf download someone/some-model")


def test_compare_refuses_to_write_over_its_config_and_checks_budgets_per_family(
    capsys, tmp_path, videos, tiny_models, monkeypatch
):
    import keyframe_qa.engines

    tiny_models("qwen3-vl")
    capsys.readouterr()
    config = tmp_path / "c.yaml"
    text = (
        f"defaults:\n  model: {tiny_models('qwen3-vl')}\n  max_pixels: 900\ncomparisons:\n  - name: a\n"
        f"    video: {videos['plain.mp4']}\n    before: 1\n    after: 2\n    questions: [q]\n"
    )
    config.write_text(text)
    code, out, err = run(capsys, "compare", str(config), "-o", str(config))
    assert code == 2
    assert_one_line_error(err, "is an input of this run")
    assert config.read_text() == text
    monkeypatch.setattr(
        keyframe_qa.engines, "build_engine", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model loaded"))
    )
    code, out, err = run(capsys, "compare", str(config))
    assert code == 2
    assert "comparisons.0 (a): --max-pixels 900 is below one visual token (32x32 = 1024 pixels) for qwen3-vl" in err
