"""The model-free `scenes` and `frames` commands, and `ask` with sampling and scenes."""

import csv
import io
import json
import os
import subprocess
import sys

import cv2
import pytest

from keyframe_qa.testing.synthetic import read_frame_number
from tests.helpers import ask_json, assert_one_line_error, run


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYFRAME_QA_CACHE_DIR", str(tmp_path / "cache"))


def test_scenes_command_json(capsys, videos):
    code, out, err = run(capsys, "scenes", videos["cut.mp4"], "--keyframe", "first")
    assert code == 0, err
    report = json.loads(out)
    assert report["schema_version"] == 1
    assert report["detector"] == {"name": "content", "threshold": 27.0, "min_scene_len": {"frames": 15}}
    assert report["video"]["frame_count"] == 50
    assert report["scenes"] == [
        {
            "index": 0,
            "start_frame": 0,
            "end_frame": 25,
            "start": 0.0,
            "end": 2.5,
            "keyframes": [{"frame_number": 0, "timestamp": 0.0}],
        },
        {
            "index": 1,
            "start_frame": 25,
            "end_frame": 50,
            "start": 2.5,
            "end": 5.0,
            "keyframes": [{"frame_number": 25, "timestamp": 2.5}],
        },
    ]


def test_scenes_command_csv_and_max_scenes(capsys, videos):
    code, out, err = run(
        capsys,
        "scenes",
        videos["cut.mp4"],
        "--csv",
        "--max-scenes",
        "1",
        "--detector",
        "histogram",
        "--min-scene-len",
        "0.5s",
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1
    assert rows[0]["keyframe_frame"] == "12"  # both scenes last 2.5 s: the earlier one wins the tie


def test_scenes_command_stdout_stays_json_with_progress_on_a_terminal_only(videos, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    command = [sys.executable, "-m", "keyframe_qa", "scenes", videos["cut.mp4"], "--no-cache"]
    env = dict(os.environ, KEYFRAME_QA_CACHE_DIR=str(tmp_path))
    # stderr a pipe (a log, CI): no bar redrawn into it.
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["scenes"]) == 2
    assert result.stderr == ""
    # stderr a terminal: PySceneDetect's bar, and stdout still only JSON.
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a width
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    out, _ = process.communicate(timeout=120)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert process.returncode == 0
    assert len(json.loads(out)["scenes"]) == 2
    assert b"Progress" in seen and b"frames/s" in seen


def test_frames_command_writes_images_and_index(capsys, videos, tmp_path):
    out_dir = tmp_path / "frames"
    code, out, err = run(capsys, "frames", videos["plain.mp4"], "--every", "2", "--out", str(out_dir))
    assert code == 0, err
    assert out == ""
    index = json.loads((out_dir / "frames.json").read_text())
    assert index["selection"] == {"method": "every", "every": 2.0}
    assert [f["frame_number"] for f in index["frames"]] == [0, 20, 40]
    for record in index["frames"]:
        image = cv2.cvtColor(cv2.imread(str(out_dir / record["file"])), cv2.COLOR_BGR2RGB)
        assert read_frame_number(image) == record["frame_number"]
        assert record["file"].endswith(f"{record['timestamp']:010.3f}s.png")


def test_frames_command_jpeg_and_max_side(capsys, videos, tmp_path):
    out_dir = tmp_path / "previews"
    code, out, err = run(
        capsys,
        "frames",
        videos["sar.mp4"],
        "--at",
        "0.1",
        "--out",
        str(out_dir),
        "--format",
        "jpg",
        "--quality",
        "70",
        "--max-side",
        "256",
    )
    assert code == 0, err
    (record,) = json.loads((out_dir / "frames.json").read_text())["frames"]
    image = cv2.imread(str(out_dir / record["file"]))
    assert record["file"].endswith(".jpg")
    assert image.shape[:2] == (144, 256)  # 1024x576 display frame shrunk to a 256 longer side
    # The record describes the file written; the displayed frame's size is kept beside it.
    assert (record["width"], record["height"]) == (256, 144)
    assert (record["display_width"], record["display_height"]) == (1024, 576)


def test_frames_command_by_scene(capsys, videos, tmp_path):
    code, out, err = run(capsys, "frames", videos["cut.mp4"], "--scenes", "--out", str(tmp_path / "s"))
    assert code == 0, err
    index = json.loads((tmp_path / "s" / "frames.json").read_text())
    assert [(f["scene"], f["frame_number"]) for f in index["frames"]] == [(0, 12), (1, 37)]


def test_ask_per_scene_per_frame(capsys, videos, tiny_model):
    report = ask_json(
        capsys,
        videos["cut.mp4"],
        "What colour is the background?",
        "Is there text?",
        "--scenes",
        "--per-frame",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "3",
    )
    assert [(f["scene"], f["frame_number"]) for f in report["frames"]] == [(0, 12), (1, 37)]
    assert [(a["frame"], a["question"]) for a in report["answers"]] == [
        (0, "What colour is the background?"),
        (0, "Is there text?"),
        (1, "What colour is the background?"),
        (1, "Is there text?"),
    ]
    assert report["selection"]["method"] == "scenes" and report["selection"]["per_frame"] is True


def test_ask_without_selection_samples_and_says_so(capsys, videos, tiny_model):
    report = ask_json(
        capsys,
        videos["plain.mp4"],
        "What happens?",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "--max-visual-tokens",
        "640",
    )
    assert report["selection"]["method"] == "default"
    assert len(report["frames"]) == 10  # 12 at 2 fps, capped to 640 // 64
    assert report["usage"]["visual_tokens"] <= 640


def test_ask_video_mode_passes_the_sampling_rate(capsys, videos, tiny_models, monkeypatch):
    import keyframe_qa.engines.transformers as model_module

    seen = []
    real = model_module._video_metadata
    monkeypatch.setattr(
        model_module, "_video_metadata", lambda prompt, pixels: seen.append(real(prompt, pixels)) or seen[-1]
    )
    report = ask_json(
        capsys,
        videos["plain.mp4"],
        "What happens?",
        "--fps",
        "2",
        "--mode",
        "video",
        "--model",
        tiny_models("qwen2.5-vl"),
        "--max-new-tokens",
        "2",
        "--max-visual-tokens",
        "2000",
    )
    assert len(report["frames"]) == 12
    assert seen and all(meta.sampled_fps == 2.0 for meta in seen)  # Qwen2.5-VL's rate, to the last bit
    times = [frame["timestamp"] for frame in report["frames"]]
    assert all(isinstance(index, int) for index in seen[0].frames_indices)  # whole numbers, as vLLM wants them
    assert [index / seen[0].fps for index in seen[0].frames_indices] == pytest.approx(times, abs=5e-7)
    assert times[:3] == pytest.approx([0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["ask", "{plain}", "q", "--at", "1", "--scenes"], "--at and --scenes cannot be combined"),
        (["ask", "{plain}", "q", "--every", "1", "--num-frames", "3"], "cannot be combined"),
        (["ask", "{plain}", "q", "--fps", "0"], "--fps"),
        (["ask", "{plain}", "q", "--num-frames", "-2"], "--num-frames"),
        (["ask", "{plain}", "q", "--scenes", "--max-scenes", "0"], "--max-scenes"),
        (["scenes", "{plain}", "--max-scenes", "0"], "--max-scenes"),
        (["scenes", "{plain}", "--detector", "magic"], "--detector"),
        (["scenes", "{plain}", "--min-scene-len", "soon"], "--min-scene-len"),
        (["scenes", "{plain}", "--threshold", "-3"], "--threshold"),
        (["frames", "{plain}", "--every", "-1", "--out", "{tmp}"], "--every"),
        (["frames", "{plain}", "--at", "1", "--fps", "2", "--out", "{tmp}"], "cannot be combined"),
        (["frames", "{plain}", "--at", "1"], "--out"),
    ],
)
def test_selection_usage_errors_exit_2(capsys, videos, tiny_model, tmp_path, args, fragment):
    filled = [a.format(plain=videos["plain.mp4"], tmp=str(tmp_path / "o")) for a in args]
    if filled[0] == "ask":
        filled += ["--model", tiny_model]
    code, out, err = run(capsys, *filled)
    assert code == 2, err
    assert out == ""
    assert_one_line_error(err, fragment)


def test_scenes_on_a_bad_file_is_a_run_time_error(capsys, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    code, out, err = run(capsys, "scenes", str(bad))
    assert code == 1
    assert_one_line_error(err, "not a readable video")
