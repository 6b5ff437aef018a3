"""Video mode through vLLM (slow tier): the exact frames as one video, with their true times.

vLLM's CPU build serves a tiny Qwen2.5-VL checkpoint (the family whose position ids carry time: a wrong rate
moves them). Against it `ask --mode video` must give what the in-process engine gives on the same checkpoint:
the same prompt tokens, the same greedy tokens, the same first-token log-probabilities (to a millionth, where a
wrong fps moves them by a ten-thousandth, so the comparison can tell), and the same `time_fidelity`, for even
and uneven frames; `when --mode video` runs with default options. A vLLM started without
--trust-request-mm-kwargs is refused in one line naming the flag.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import urllib.request

import pytest

from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
from tests.helpers import assert_one_line_error, fresh_cli, run, same_reply, served_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("vllm-qwen25")), "qwen2.5-vl", architecture="vllm")


def _serve(model: str, folder: str, trusted: bool):
    from keyframe_qa.testing.vllm_tool import ensure_vllm, start_vllm

    python, why = ensure_vllm()
    if python is None:
        pytest.skip(f"vLLM's CPU build cannot be installed here: {why}")
    return start_vllm(python, model, folder, trust_request_kwargs=trusted)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    from keyframe_qa.testing.vllm_tool import stop_vllm

    process, url = _serve(model, str(tmp_path_factory.mktemp("vllm-video-log")), True)
    yield url
    stop_vllm(process)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("vllm-video") / "clip.mp4")
    write_video(path, SyntheticSpec(width=336, height=224, frame_count=80, fps=10, gop=10))
    return path


@pytest.mark.parametrize(
    "selection, status",
    [
        (["--fps", "2"], "exact"),  # even frames, within the 4 fps Qwen2.5-VL tells apart
        (["--at", "0,1,1.1,4.2,5"], "approximate"),  # uneven: one rate cannot describe them, and both engines say so
    ],
)
def test_video_mode_gives_the_in_process_prompt_greedy_tokens_and_time_fidelity(
    capsys, clip, model, server, selection, status
):
    common = [clip, "What happens?", *selection, "--mode", "video", "--model", model, "--max-new-tokens", "8"]
    served = fresh_cli("ask", *common, *served_args(server))
    code, out, err = run(capsys, "ask", *common)
    assert code == 0, err
    local = json.loads(out)
    assert served["model"]["prompt_check"] == "exact"
    assert served["usage"] == local["usage"]
    assert served["model"]["time_fidelity"] == local["model"]["time_fidelity"]
    assert served["model"]["time_fidelity"]["status"] == status
    for theirs, mine in zip(served["answers"], local["answers"]):
        assert same_reply(theirs["raw"], mine["raw"]), (theirs["raw"], mine["raw"])


def test_vllm_computes_the_in_process_log_probabilities_from_our_times(clip, model, server):
    import torch

    from keyframe_qa import extract_frames, load_model
    from keyframe_qa.engines import EngineSpec, build_engine
    from keyframe_qa.model.budget import plan_budget
    from keyframe_qa.model.prompt import build_prompt

    local = load_model(model)
    frames = extract_frames(clip, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    prompt = build_prompt(
        frames, plan_budget([(f.width, f.height) for f in frames], local.family, mode="video"), "video"
    )
    inputs = local._encode_rows([(prompt, "What happens?", local.model_inputs(prompt))])
    with torch.inference_mode():
        logprobs = torch.log_softmax(local.model(**inputs).logits[0, -1].float(), dim=-1)
    top = torch.topk(logprobs, 5)
    mine = [float(value) for value in top.values]

    engine = build_engine(EngineSpec(engine="openai", model_id=model, base_url=server))
    urls, extra = engine._media(prompt)
    _, content = engine._content(prompt, "What happens?", urls)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 5,
        **extra,
    }

    def first_token(request: dict) -> list[float]:
        posted = urllib.request.Request(
            server + "/chat/completions",
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(posted, timeout=300) as reply:
            entries = json.load(reply)["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        return [entry["logprob"] for entry in entries]

    assert first_token(body) == pytest.approx(mine, abs=1e-6, rel=0)
    # The comparison can tell: at four times the rate, the patches sit at other positions and the numbers move.
    wrong = copy.deepcopy(body)
    wrong["media_io_kwargs"]["video"]["fps"] *= 4
    assert first_token(wrong) != pytest.approx(mine, abs=1e-6, rel=0)


def test_when_in_video_mode_with_default_options(clip, model, server):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keyframe_qa",
            "when",
            clip,
            "a red square",
            "--mode",
            "video",
            "--model",
            model,
            "--max-new-tokens",
            "16",
            *served_args(server),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"]["prompt_check"] == "exact" and report["model"]["mode"] == "video"
    assert [p["mode"] for p in report["passes"]] == ["video"]  # 8 s: one window of 17 frames, one video
    assert report["model"]["time_fidelity"]["status"] == "exact"


def test_a_vllm_that_does_not_trust_request_kwargs_is_refused_in_one_line(capsys, clip, model, tmp_path_factory):
    from keyframe_qa.testing.vllm_tool import stop_vllm

    process, url = _serve(model, str(tmp_path_factory.mktemp("vllm-untrusting-log")), False)
    try:
        common = [clip, "q", "--at", "1,2", "--model", model, "--max-new-tokens", "2", *served_args(url)]
        code, out, err = run(capsys, "ask", *common, "--mode", "video")
        assert code == 2 and out == ""
        assert_one_line_error(err, "start vLLM with --trust-request-mm-kwargs for --mode video")
        code, out, err = run(capsys, "ask", *common)  # images need no trust
        assert code == 0, err
    finally:
        stop_vllm(process)
