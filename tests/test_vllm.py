"""vLLM as a real engine (slow tier): its CPU build, in an environment of its own (testing/vllm_tool.py), serving
a tiny Qwen2-VL checkpoint with vLLM-sized attention heads. Against it the server engine must give what the
in-process engine gives on the same checkpoint: the same prompt tokens, the same greedy tokens, and an exact
prompt check in a fresh CLI process; `when` with default options must fit vLLM's 16-image limit.

Skipped (with the reason) when vLLM cannot be installed here. `.ci/run` runs this tier after the default one.

vLLM's text differs from the in-process reply in two known ways, allowed for in `same_reply`: it holds back an
incomplete UTF-8 byte at the very end of a reply cut by the token limit (the random model's tokens are raw
bytes), and it leaves the end token out of the text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
from tests.helpers import assert_one_line_error, fresh_cli, run, same_reply, served_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory) -> str:
    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("vllm-qwen2-vl")), "qwen2-vl", architecture="vllm")


@pytest.fixture(scope="module")
def vllm_server(vllm_model, tmp_path_factory):
    from keyframe_qa.testing.vllm_tool import ensure_vllm, start_vllm, stop_vllm

    python, why = ensure_vllm()
    if python is None:
        pytest.skip(f"vLLM's CPU build cannot be installed here: {why}")
    process, url = start_vllm(python, vllm_model, str(tmp_path_factory.mktemp("vllm-log")))
    yield url
    stop_vllm(process)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("vllm-clips")
    specs = {
        "small.mp4": SyntheticSpec(width=336, height=224, frame_count=40, fps=10, gop=10),
        "hd.mp4": SyntheticSpec(width=1920, height=1080, frame_count=4, fps=2, gop=2),
        # 30 s: windows of 32 frames at 1 a second, more than the server's 16 images a prompt.
        "long.mp4": SyntheticSpec(width=336, height=224, frame_count=300, fps=10, gop=30),
    }
    paths = {}
    for name, spec in specs.items():
        paths[name] = str(folder / name)
        write_video(paths[name], spec)
    for number in range(3):  # copies: a batch of four videos
        shutil.copy(paths["small.mp4"], folder / f"copy{number}.mp4")
    return paths


@pytest.mark.parametrize(
    "clip, times, extra",
    [
        ("small.mp4", "0.5,1.5", []),
        ("hd.mp4", "1", []),  # a 1080p frame, shrunk to its budget on our side (the server must not resize it again)
        ("small.mp4", "1", ["--find", "the marker", "--max-new-tokens", "24"]),
    ],
)
def test_vllm_gives_the_in_process_prompt_tokens_and_greedy_tokens(
    capsys, clips, vllm_model, vllm_server, clip, times, extra
):
    common = [
        clips[clip],
        "What is in the frames?",
        "--at",
        times,
        "--model",
        vllm_model,
        "--max-new-tokens",
        "8",
        *extra,
    ]
    served = fresh_cli("ask", *common, *served_args(vllm_server))
    code, out, err = run(capsys, "ask", *common)
    assert code == 0, err
    local = json.loads(out)
    assert served["model"]["prompt_check"] == "exact"
    assert served["usage"]["prompt_tokens"] == local["usage"]["prompt_tokens"]
    assert served["usage"]["visual_tokens"] == local["usage"]["visual_tokens"]
    assert served["usage"]["completion_tokens"] == local["usage"]["completion_tokens"]
    for theirs, mine in zip(served["answers"], local["answers"]):
        assert same_reply(theirs["raw"], mine["raw"]), (theirs["raw"], mine["raw"])


def test_batch_at_concurrency_4_gives_the_in_process_answers(capsys, clips, vllm_model, vllm_server, tmp_path):
    folder = os.path.dirname(clips["small.mp4"])
    videos = [clips["small.mp4"]] + [os.path.join(folder, f"copy{n}.mp4") for n in range(3)]
    common = [*videos, "-q", "Describe it.", "--at", "1", "--model", vllm_model, "--max-new-tokens", "8"]
    code, _, err = run(
        capsys, "batch", *common, *served_args(vllm_server), "--concurrency", "4", "-o", str(tmp_path / "served.jsonl")
    )
    assert code == 0, err
    code, _, err = run(capsys, "batch", *common, "-o", str(tmp_path / "local.jsonl"))
    assert code == 0, err

    def lines(name):
        records = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        return {record["video"]["path"]: record for record in records}

    served, local = lines("served.jsonl"), lines("local.jsonl")
    assert set(served) == set(local) == set(videos)
    for video in videos:
        assert served[video]["usage"]["prompt_tokens"] == local[video]["usage"]["prompt_tokens"]
        assert same_reply(served[video]["answers"][0]["raw"], local[video]["answers"][0]["raw"])


def test_when_with_default_options_fits_the_servers_16_image_limit(clips, vllm_model, vllm_server):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keyframe_qa",
            "when",
            clips["long.mp4"],
            "a red square",
            "--model",
            vllm_model,
            "--max-new-tokens",
            "16",
            *served_args(vllm_server),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["window_frames"] == 16 and all(p["frames"] <= 16 for p in report["passes"])
    assert done.stderr.count("takes at most 16 images in one prompt") == 1
    assert report["model"]["prompt_check"] == "exact"
    assert set(report["probes_read_by"]) <= {"probability", "text"}


def test_more_frames_than_the_server_takes_is_one_clear_refusal(capsys, clips, vllm_model, vllm_server):
    common = [
        "ask",
        clips["small.mp4"],
        "q",
        "--num-frames",
        "20",
        "--model",
        vllm_model,
        "--max-new-tokens",
        "2",
        *served_args(vllm_server),
    ]
    code, _, err = run(capsys, *common)
    assert code == 2
    assert_one_line_error(err, "takes at most 16 images in one prompt")
    assert "--max-images 16" in err and "--limit-mm-per-prompt" in err
    code, _, err = run(capsys, *common, "--max-images", "16")
    assert code == 2
    assert_one_line_error(err, "20 frames in one prompt, but")
