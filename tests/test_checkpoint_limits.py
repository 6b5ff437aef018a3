"""The checkpoint's own processor limits in both engines, and time told truly to the model in video mode.

The tiny checkpoints keep the image processor's own `size.longest_edge` of 1,003,520 pixels (about 1,280
visual tokens, the Qwen README's value that many fine-tuned checkpoints ship), like a real one would.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
from tests.helpers import _patch_times, assert_one_line_error, assert_same_generation, openai_args, run


@pytest.fixture(scope="module")
def full_hd(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("hd") / "counter.mp4")
    write_video(path, SyntheticSpec(width=1920, height=1080, frame_count=12, fps=10, gop=6))
    return path


@pytest.fixture(scope="module")
def four_scenes(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("scenes") / "four.mp4")
    write_video(path, SyntheticSpec(frame_count=80, fps=10, cuts=(17, 40, 61)))
    return path


def test_a_1080p_frame_gets_the_checkpoints_own_size_in_both_engines(capsys, full_hd, tiny_model, openai_server):
    common = [full_hd, "What is shown?", "--at", "0.5", "--model", tiny_model, "--max-new-tokens", "6"]
    code, out, err = run(capsys, "ask", *common)
    assert code == 0, err
    local = json.loads(out)
    (frame,) = local["frames"]
    # The reference path (qwen-vl-utils' rule under the processor's own 1,003,520-pixel cap): 52x94 patches.
    assert (frame["input_width"], frame["input_height"], frame["visual_tokens"]) == (1316, 728, 1222)
    assert local["model"]["pixel_limits"]["max_pixels"] == {"value": 1003520, "source": "checkpoint"}
    code, out, err = run(capsys, "ask", *common, *openai_args(openai_server))
    assert code == 0, err  # the server no longer resizes what we send, so its prompt count is ours
    served = json.loads(out)
    assert served["frames"][0]["visual_tokens"] == 1222
    assert served["usage"]["prompt_tokens"] == local["usage"]["prompt_tokens"]
    assert_same_generation(served["answers"], local["answers"])


def test_a_larger_max_pixels_works_in_process_and_is_refused_with_a_server(
    capsys, full_hd, tiny_model, openai_server, monkeypatch
):
    import keyframe_qa.jobs.ask as pipeline

    common = [full_hd, "q", "--at", "0.5", "--model", tiny_model, "--max-new-tokens", "2", "--max-pixels", "2200000"]
    code, out, err = run(capsys, "ask", *common)
    assert code == 0, err
    report = json.loads(out)
    assert report["frames"][0]["visual_tokens"] == 1932 * 1092 // 28 // 28  # honoured: 2,691 tokens
    assert report["model"]["pixel_limits"]["max_pixels"] == {"value": 2200000, "source": "option"}

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    monkeypatch.setattr(pipeline, "probe", forbidden)
    code, out, err = run(capsys, "ask", *common, *openai_args(openai_server))
    assert code == 2
    assert_one_line_error(err, "--max-pixels 2200000 is above the 1003520 pixels per frame")
    assert "--mm-processor-kwargs" in err


def test_a_batch_against_a_server_refuses_a_larger_max_pixels_up_front(
    capsys, full_hd, tiny_model, openai_server, tmp_path
):
    output = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys,
        "batch",
        full_hd,
        "-q",
        "q",
        "--at",
        "0.5",
        "--model",
        tiny_model,
        "--max-pixels",
        "2200000",
        *openai_args(openai_server),
        "-o",
        str(output),
    )
    assert code == 2 and "is above the 1003520 pixels per frame" in err
    assert not output.exists()


def test_video_mode_uses_the_checkpoints_video_limits(capsys, videos, tiny_model):
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--num-frames",
        "2",
        "--mode",
        "video",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
    )
    assert code == 0, err
    limits = json.loads(out)["model"]["pixel_limits"]
    assert limits == {
        "min_pixels": {"value": 100352, "source": "checkpoint"},
        "max_pixels": {"value": 602112, "source": "checkpoint"},
    }


def test_without_limits_in_its_config_the_defaults_apply_and_say_so(capsys, videos, tiny_model, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare)
    config = json.loads((bare / "processor_config.json").read_text())
    config["image_processor"].pop("size")
    (bare / "processor_config.json").write_text(json.dumps(config))
    code, out, err = run(
        capsys, "ask", videos["plain.mp4"], "q", "--at", "1", "--model", str(bare), "--max-new-tokens", "2"
    )
    assert code == 0, err
    assert json.loads(out)["model"]["pixel_limits"]["max_pixels"] == {"value": 16384 * 28 * 28, "source": "default"}


# --- time told truly ------------------------------------------------------------------------------


def test_qwen25_video_mode_above_its_time_resolution_warns_and_says_so(capsys, videos, tiny_models):
    model = tiny_models("qwen2.5-vl")
    capsys.readouterr()
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--fps",
        "5",
        "--mode",
        "video",
        "--model",
        model,
        "--max-new-tokens",
        "2",
        "--max-visual-tokens",
        "4000",
    )
    assert code == 0, err
    fidelity = json.loads(out)["model"]["time_fidelity"]
    # 30 frames at 5 fps: 15 temporal patches placed at int(k * 2 * 0.4) -> 12 distinct positions.
    assert fidelity["status"] == "approximate" and fidelity["patches"] == 15 and fidelity["distinct_positions"] == 12
    warnings = [line for line in err.splitlines() if line.startswith("warning:") and "Qwen2.5-VL" in line]
    assert len(warnings) == 1 and "12 distinct time positions" in warnings[0] and "--mode images" in warnings[0]


def test_qwen25_uneven_times_in_video_mode_warn(capsys, videos, tiny_models):
    model = tiny_models("qwen2.5-vl")
    capsys.readouterr()
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--at",
        "0,0.5,4,4.5",
        "--mode",
        "video",
        "--model",
        model,
        "--max-new-tokens",
        "2",
    )
    assert code == 0, err
    fidelity = json.loads(out)["model"]["time_fidelity"]
    assert fidelity["status"] == "approximate" and "unevenly spaced" in fidelity["note"]
    assert fidelity["max_error_s"] >= 1.0
    assert "unevenly spaced" in err


def test_qwen25_even_frames_within_its_resolution_are_exact(capsys, videos, tiny_models):
    model = tiny_models("qwen2.5-vl")
    capsys.readouterr()
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--fps",
        "2",
        "--mode",
        "video",
        "--model",
        model,
        "--max-new-tokens",
        "2",
    )
    assert code == 0, err
    fidelity = json.loads(out)["model"]["time_fidelity"]
    assert fidelity["status"] == "exact" and fidelity["distinct_positions"] == fidelity["patches"]
    assert fidelity["max_error_s"] == 0 and "Qwen2.5-VL video mode" not in err


def _time_markers(engine, frames) -> list[float]:
    from keyframe_qa.model.budget import plan_budget
    from keyframe_qa.model.prompt import build_prompt

    budgets = plan_budget([(f.width, f.height) for f in frames], engine.family, mode="video", max_visual_tokens=2000)
    prompt = build_prompt(frames, budgets, "video")
    inputs = engine._encode_rows([(prompt, "When?", engine.model_inputs(prompt))])
    text = engine.tokenizer.decode(inputs["input_ids"][0].tolist())
    return [float(value) for value in re.findall(r"<([0-9.]+) seconds>", text)]


@pytest.mark.parametrize(
    "times",
    [
        [0.0, 0.5, 1.0, 1.5],  # even, 2 fps
        [k / 30 for k in range(7, 19)],  # every frame of a 30 fps stretch
        [0.3, 1.0, 1.1, 4.2, 5.0],  # uneven
        [12.25],  # one frame (per frame)
        [0.0, 604800.0],  # a week apart
        [k * 0.001 for k in range(4)],  # 1000 fps
    ],
)
def test_the_video_metadata_tells_the_rate_to_the_bit_and_the_times_to_the_microsecond(times):
    from transformers.video_utils import VideoMetadata

    from keyframe_qa.model.time_positions import sampling_rate, video_metadata

    told = video_metadata(times)
    assert all(isinstance(index, int) for index in told["frames_indices"])  # vLLM refuses anything else
    assert isinstance(told["total_num_frames"], int) and told["total_num_frames"] >= len(times)
    # The processor's own arithmetic (HF's VideoMetadata): Qwen2.5-VL's rate, then Qwen3-VL's frame times.
    metadata = VideoMetadata(**told)
    assert metadata.sampled_fps == sampling_rate(times)
    assert metadata.timestamps == pytest.approx(times, abs=5e-7, rel=0)
    expected_rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 1.0
    assert sampling_rate(times) == pytest.approx(expected_rate, rel=1e-12)


def test_qwen3_prints_the_frames_real_times_for_uneven_times_and_scene_keyframes(videos, four_scenes, tiny_models):
    from keyframe_qa import extract_frames, load_model
    from keyframe_qa.jobs.ask import select_frames
    from keyframe_qa.selection.select import SelectionRequest
    from keyframe_qa.video.probe import probe

    engine = load_model(tiny_models("qwen3-vl"))
    uneven = [0.3, 1.0, 1.1, 4.2, 5.0]
    frames = extract_frames(videos["plain.mp4"], uneven)
    markers = _time_markers(engine, frames)
    expected = _patch_times([f.timestamp for f in frames])
    assert len(markers) == len(expected) == 3
    assert all(abs(m - e) <= 0.05 + 1e-9 for m, e in zip(markers, expected)), (markers, expected)
    assert markers[0] > 0.5  # not the 0, 1, 2... that indices at 2 fps would give

    _, frames = select_frames(probe(four_scenes), SelectionRequest(scenes=True, use_cache=False, mode="video"))
    times = [f.timestamp for f in frames]
    assert len(times) == 4 and times[0] > 0.2
    markers = _time_markers(engine, frames)
    assert all(abs(m - e) <= 0.05 + 1e-9 for m, e in zip(markers, _patch_times(times))), (markers, times)


def test_ask_with_stderr_to_a_file_draws_no_bar(videos, tiny_models, tmp_path, monkeypatch):
    from keyframe_qa.cli import main

    model = tiny_models("qwen2.5-vl")  # loaded for the first time here: its weights load now, bar or no bar
    log = tmp_path / "stderr.log"
    with open(log, "w") as handle:
        monkeypatch.setattr(sys, "stderr", handle)
        code = main(
            [
                "ask",
                videos["plain.mp4"],
                "q",
                "--at",
                "1",
                "--model",
                model,
                "--max-new-tokens",
                "2",
                "-o",
                str(tmp_path / "out.json"),
            ]
        )
    assert code == 0
    text = log.read_text()
    assert "Loading weights" not in text and "\r" not in text and "it/s" not in text, text


@pytest.mark.parametrize("resample", [None, 2, 3, 0, 1])
def test_the_resize_is_torchvisions_pixel_for_pixel(resample):
    # Bicubic and bilinear go straight to torch's interpolate (no torchvision import); the rest through
    # torchvision. Either way the pixels are torchvision's, which the processors use.
    import numpy as np
    import torch
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as tvF

    from keyframe_qa.engines.resize import filter_name, resize_like_processor

    rng = np.random.default_rng(0)
    for _ in range(12):
        height, width = (int(v) for v in rng.integers(40, 700, 2))
        target_h, target_w = (int(v) for v in rng.integers(28, 900, 2))
        image = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        expected = tvF.resize(
            torch.from_numpy(image).permute(2, 0, 1),
            [target_h, target_w],
            interpolation=InterpolationMode(filter_name(resample)),
            antialias=True,
        )
        assert np.array_equal(
            resize_like_processor(image, target_w, target_h, resample), expected.permute(1, 2, 0).numpy()
        )


def test_the_server_client_resizes_without_importing_torchvision(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from keyframe_qa.engines.resize import resize_like_processor; "
        "resize_like_processor(np.zeros((240, 320, 3), np.uint8), 224, 168); "
        "print('torchvision' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
