"""The CLI end to end on tiny local checkpoints, and every error a user can hit."""

import json
import os

import av
import numpy as np
import pytest

from keyframe_qa.testing.synthetic import read_frame_number
from tests.helpers import ask_json, assert_one_line_error, run

FRAME_KEYS = {
    "index",
    "requested",
    "timestamp",
    "frame_number",
    "width",
    "height",
    "input_width",
    "input_height",
    "visual_tokens",
    "file",
}


@pytest.mark.parametrize("mode", ["images", "video"])
def test_ask_end_to_end_on_tiny_qwen2_vl(capsys, videos, tiny_model, tmp_path, mode):
    report = ask_json(
        capsys,
        videos["plain.mp4"],
        "Is it the same person in both frames?",
        "Where is the car?",
        "--at",
        "0.55,0:01",
        "--model",
        tiny_model,
        "--mode",
        mode,
        "--max-new-tokens",
        "6",
        "--save-frames",
        str(tmp_path / "frames"),
    )
    assert set(report) == {"schema_version", "video", "model", "frames", "answers", "usage", "timings", "selection"}
    assert report["selection"] == {"method": "at", "per_frame": False}
    assert report["schema_version"] == 1
    assert report["video"] == {
        "path": videos["plain.mp4"],
        "duration": 6.0,
        "fps": 10.0,
        "width": 320,
        "height": 240,
        "frame_count": 60,
        "size_bytes": os.path.getsize(videos["plain.mp4"]),
        "mtime_ns": os.stat(videos["plain.mp4"]).st_mtime_ns,
        "index": {"source": "sample table", "frame_numbers": "exact", "note": None},
    }
    assert report["model"] == {
        "id": tiny_model,
        "family": "qwen2-vl",
        "mode": mode,
        "device": "cpu",
        "dtype": "float32",
        "engine": "transformers",
        "generation": {
            "max_new_tokens": 6,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "repetition_penalty": None,
            "seed": None,
        },
        # The tiny checkpoint's processor config states its own limits (as many do).
        "pixel_limits": {
            "min_pixels": {"value": 3136 if mode == "images" else 100352, "source": "checkpoint"},
            "max_pixels": {"value": 1003520 if mode == "images" else 602112, "source": "checkpoint"},
        },
    }
    assert [f["frame_number"] for f in report["frames"]] == [5, 10]
    assert [f["requested"] for f in report["frames"]] == [0.55, 1.0]
    assert [f["timestamp"] for f in report["frames"]] == [0.5, 1.0]
    for record in report["frames"]:
        assert set(record) == FRAME_KEYS
        assert record["input_width"] % 28 == 0 and record["input_height"] % 28 == 0
        image = np.asarray(av.open(record["file"]).decode(video=0).__next__().to_ndarray(format="rgb24"))
        assert read_frame_number(image) == record["frame_number"]
    per_frame = sum(f["visual_tokens"] for f in report["frames"])
    assert report["usage"]["visual_tokens"] == per_frame
    if mode == "images":
        assert all(f["visual_tokens"] == (f["input_width"] // 28) * (f["input_height"] // 28) for f in report["frames"])
    assert [a["question"] for a in report["answers"]] == ["Is it the same person in both frames?", "Where is the car?"]
    for answer in report["answers"]:
        assert set(answer) == {"question", "answer", "raw", "boxes", "truncated"}
    assert report["usage"]["completion_tokens"] > 0
    assert report["usage"]["prompt_tokens"] > report["usage"]["visual_tokens"]
    assert set(report["timings"]) == {"probe_s", "decode_s", "model_load_s", "generate_s", "total_s"}


@pytest.mark.parametrize("family, mode", [("qwen2.5-vl", "video"), ("qwen2.5-vl", "images"), ("qwen3-vl", "video")])
def test_family_is_detected_from_the_config(capsys, videos, tiny_models, family, mode):
    model_dir = tiny_models(family)
    report = ask_json(
        capsys,
        videos["plain.mp4"],
        "What happens?",
        "--at",
        "1,2,3",
        "--model",
        model_dir,
        "--mode",
        mode,
        "--max-new-tokens",
        "4",
        "--max-visual-tokens",
        "200",
    )
    assert report["model"]["family"] == family
    factor = 32 if family == "qwen3-vl" else 28
    assert all(f["input_width"] % factor == 0 for f in report["frames"])
    assert report["usage"]["visual_tokens"] <= 200


def test_model_from_environment_and_output_file(capsys, videos, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYFRAME_QA_MODEL", tiny_model)
    output = tmp_path / "out" / "answer.json"
    code, out, err = run(
        capsys, "ask", videos["cut.mp4"], "Same scene?", "--at", "2.4,2.5", "-o", str(output), "--max-new-tokens", "3"
    )
    assert code == 0, err
    assert out == ""  # stdout carries only JSON, and here the JSON went to the file
    report = json.loads(output.read_text())
    assert report["model"]["id"] == tiny_model
    assert [f["frame_number"] for f in report["frames"]] == [24, 25]
    assert not [p for p in os.listdir(output.parent) if p.startswith(".keyframe-qa-")]


def test_real_clip_runs_through_ask(capsys, bigbuckbunny, tiny_model):
    report = ask_json(
        capsys,
        bigbuckbunny,
        "What animal is this?",
        "--at",
        "1.5,4",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "4",
        "--max-visual-tokens",
        "400",
    )
    assert (report["video"]["width"], report["video"]["height"]) == (1280, 720)
    assert report["usage"]["visual_tokens"] <= 400
    assert [f["frame_number"] for f in report["frames"]] == [37, 100]


def test_several_questions_share_the_frames_prefix_and_answer_the_same(videos, tiny_models):
    """Answers with the shared prefix cache equal answers computed from scratch, for every family."""
    import keyframe_qa.engines.transformers as model_module
    from keyframe_qa.jobs.ask import load_model
    from keyframe_qa.model.budget import plan_budget
    from keyframe_qa.records import GenerationSettings, VisualPrompt
    from keyframe_qa.video.frames import read_frames
    from keyframe_qa.video.probe import probe

    frames = read_frames(probe(videos["plain.mp4"]), [0.5, 2.5, 4.0])
    questions = ["Is it the same person?", "What colour is the car?", "Describe the scene."]
    for family in ("qwen2-vl", "qwen2.5-vl", "qwen3-vl"):
        model = load_model(tiny_models(family))
        for mode in ("images", "video"):
            budgets = plan_budget([(f.width, f.height) for f in frames], model.family, mode=mode, max_visual_tokens=300)
            prompt = VisualPrompt(
                images=[f.image for f in frames],
                budgets=budgets,
                labels=[f"frame {i}" for i in range(3)],
                mode=mode,
                times=[f.timestamp for f in frames],
            )
            settings = GenerationSettings(max_new_tokens=10, do_sample=False)
            shared = model.answer(prompt, questions, settings)
            separate = [model.answer(prompt, [q], settings)[0] for q in questions]
            assert [r.raw for r in shared] == [r.raw for r in separate], (family, mode)
            pixels = model.model_inputs(prompt)
            encoded = [model._encode(prompt, pixels, q) for q in questions]
            assert model_module._shared_prefix_length(encoded, model.model.config.vision_end_token_id) > 0
            # The visual tokens in the prompt itself are the ones reported per frame.
            pad = model.processor.image_token_id if mode == "images" else model.processor.video_token_id
            assert int((encoded[0]["input_ids"] == pad).sum()) == sum(b.visual_tokens for b in budgets)
            if family == "qwen2.5-vl" and mode == "video":
                # 3 frames over 0.5..4.0 s: 2 frames per temporal patch at (3 - 1) / 3.5 frames per second.
                assert encoded[0]["second_per_grid_ts"] == pytest.approx([2 / (2 / 3.5)])


def test_processor_grid_mismatch_is_caught():
    import torch

    from keyframe_qa.engines.transformers import _check_grid
    from keyframe_qa.errors import ModelError
    from keyframe_qa.model.families import family_from_config
    from keyframe_qa.records import FrameBudget, VisualPrompt

    prompt = VisualPrompt(images=[None], budgets=[FrameBudget(308, 252, 99)], labels=["f"], mode="images", times=[0])
    _check_grid(torch.tensor([[1, 18, 22]]).tolist(), prompt, family_from_config({"model_type": "qwen2_vl"}))
    with pytest.raises(ModelError):
        _check_grid(torch.tensor([[1, 20, 22]]).tolist(), prompt, family_from_config({"model_type": "qwen2_vl"}))


# ---- errors: one line, the right exit code, no traceback -------------------------------------------------


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory, videos):
    folder = tmp_path_factory.mktemp("broken")
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    data = open(videos["plain.mp4"], "rb").read()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = folder / "garbage.mkv"
    mkv = bytearray(open(videos["offset.mkv"], "rb").read())
    mkv[200:] = bytes((i * 37) % 251 for i in range(len(mkv) - 200))
    garbage.write_bytes(bytes(mkv))
    audio = folder / "audio.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return {
        "empty": str(empty),
        "text": str(text),
        "truncated": str(truncated),
        "garbage": str(garbage),
        "audio": str(audio),
        "folder": str(folder),
    }


@pytest.mark.parametrize(
    "which, fragment",
    [
        ("missing", "video not found"),
        ("folder", "is a directory"),
        ("empty", "is empty"),
        ("text", "not a readable video"),
        ("truncated", "not a readable video"),
        ("garbage", "garbage.mkv"),
        ("audio", "has no video stream"),
    ],
)
def test_bad_videos_fail_with_one_line_and_exit_1(capsys, broken_files, tiny_model, which, fragment):
    path = broken_files.get(which, os.path.join(broken_files["folder"], "nope.mp4"))
    code, out, err = run(capsys, "ask", path, "q?", "--at", "0.1", "--model", tiny_model)
    assert code == 1
    assert out == ""
    assert_one_line_error(err, fragment)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--at", "abc"], "cannot read time"),
        (["--at", "-1"], "negative"),
        (["--at", "7"], "lasts 6.000s"),
        (["--at", "1:75"], "below 60"),
        (["--at", "1", "--every", "2"], "--at and --every cannot be combined"),
        (["--at", "1", "--mode", "audio"], "audio"),
        (["--at", "1", "--max-visual-tokens", "0"], "max-visual-tokens"),
        (["--at", "1", "--bogus"], "--bogus"),
    ],
)
def test_usage_errors_exit_2(capsys, videos, tiny_model, args, fragment):
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "q?", "--model", tiny_model, *args)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, fragment)


def test_model_errors(capsys, videos, tmp_path, monkeypatch):
    not_a_checkpoint = tmp_path / "empty-model"
    not_a_checkpoint.mkdir()
    bad_config = tmp_path / "bad-config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text("{not json")
    other_model = tmp_path / "other"
    other_model.mkdir()
    (other_model / "config.json").write_text('{"model_type": "llama"}')
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    cases = [
        (str(tmp_path / "no-such-folder"), "does not exist"),
        (str(not_a_checkpoint), "has no config.json"),
        (str(bad_config), "cannot read"),
        (str(other_model), "unsupported model type 'llama'"),
        ("nobody/no-such-model", "hf download nobody/no-such-model"),
    ]
    for model_id, fragment in cases:
        code, out, err = run(capsys, "ask", videos["plain.mp4"], "q?", "--at", "1", "--model", model_id)
        assert code == 1, (model_id, err)
        assert_one_line_error(err, fragment)
        if model_id.startswith("nobody"):
            assert str(tmp_path / "hf-home") in err  # says where it looked


def test_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KEYFRAME_QA_DEBUG", "1")
    code, out, err = run(capsys, "ask", str(tmp_path / "nope.mp4"), "q?", "--at", "1")
    assert code == 1
    assert "Traceback" in err and "Error: video not found" in err


def test_python_dash_m_and_console_script_run(videos):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "keyframe_qa", "ask", videos["plain.mp4"], "q", "--at", "99"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error: time 99s")


def test_the_closing_line_names_every_file_written(capsys, videos, tiny_model, tmp_path):
    out, page = tmp_path / "a.json", tmp_path / "a.html"
    code, stdout, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "Where is the car?",
        "--at",
        "1,2",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(out),
        "--html",
        str(page),
        "--save-frames",
        str(tmp_path / "f"),
        "--annotate",
        str(tmp_path / "ann"),
    )
    assert code == 0, err
    assert (
        f"wrote {out}, the page {page}, 2 frames in {tmp_path / 'f'} and 2 annotated frames in {tmp_path / 'ann'}"
        in err
    )
    code, stdout, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "--save-frames",
        str(tmp_path / "g"),
    )
    assert code == 0 and json.loads(stdout) and f"wrote 1 frame in {tmp_path / 'g'}" in err
    code, stdout, err = run(
        capsys, "ask", videos["plain.mp4"], "q", "--at", "1", "--model", tiny_model, "--max-new-tokens", "2"
    )
    assert code == 0 and "wrote" not in err
