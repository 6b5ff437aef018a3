"""The OpenAI engine against a real server (`transformers serve` on the tiny checkpoint), never a mock.

The same prompt through the server and through the in-process engine must give the same prompt
token count and the same greedy answers; errors a user meets (a dead port, a model not served, a
server that resizes, one killed mid-batch) are one clear line.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter

import pytest

from keyframe_qa.jobs.batch import iter_lines
from keyframe_qa.testing.serving_tool import free_port, start_server, stop_server
from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
from tests.helpers import assert_one_line_error, assert_same_generation, clip_copies, openai_args, run, wait_for_lines

SECRET = "sk-keyframe-qa-test-secret"


@pytest.fixture(scope="module")
def exact_clips(tmp_path_factory):
    """Clips whose display size is already a budget size (336x224 = 12x8 tokens of 28 px): no resize on
    either path, so both engines see the very same pixels."""
    folder = tmp_path_factory.mktemp("exact")
    paths = []
    for number in range(6):
        path = str(folder / f"clip{number}.mp4")
        write_video(path, SyntheticSpec(width=336, height=224, frame_count=20, fps=10, gop=10, bframes=0))
        paths.append(path)
    return paths


def test_the_server_gives_the_local_engines_prompt_tokens_and_greedy_answers(
    capsys, monkeypatch, exact_clips, tiny_model, openai_server
):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    common = [
        exact_clips[0],
        "What is in the frames?",
        "Is there a cut?",
        "--at",
        "0.5,1.5",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "8",
    ]
    code, out, err = run(capsys, "ask", *common)
    assert code == 0, err
    local = json.loads(out)
    code, out, err = run(capsys, "ask", *common, *openai_args(openai_server))
    assert code == 0, err
    served = json.loads(out)
    assert SECRET not in out and SECRET not in err  # the key is sent, never recorded
    assert served["model"]["engine"] == "openai" and served["model"]["base_url"] == openai_server
    assert served["model"]["prompt_check"] == "exact" and served["model"]["family"] == "qwen2-vl"
    assert served["usage"]["visual_tokens"] == local["usage"]["visual_tokens"] == 2 * 96
    assert served["usage"]["prompt_tokens"] == local["usage"]["prompt_tokens"]  # the server's count, and ours
    assert_same_generation(served["answers"], local["answers"])
    assert served["usage"]["completion_tokens"] == local["usage"]["completion_tokens"]
    assert [a["truncated"] for a in served["answers"]] == [a["truncated"] for a in local["answers"]]


def test_batch_with_concurrency_4_answers_every_video_as_the_local_engine_does(
    capsys, exact_clips, tiny_model, openai_server, tmp_path
):
    common = ["-q", "Describe it.", "--at", "1", "--model", tiny_model, "--max-new-tokens", "6"]
    code, out, err = run(capsys, "batch", *exact_clips, *common, "-o", str(tmp_path / "local.jsonl"))
    assert code == 0, err
    code, out, err = run(
        capsys,
        "batch",
        *exact_clips,
        *common,
        *openai_args(openai_server),
        "--concurrency",
        "4",
        "-o",
        str(tmp_path / "served.jsonl"),
    )
    assert code == 0, err
    local = {r["video"]["path"]: r for r in iter_lines(str(tmp_path / "local.jsonl"))}
    served = {r["video"]["path"]: r for r in iter_lines(str(tmp_path / "served.jsonl"))}
    assert set(served) == set(exact_clips) and all(r["status"] == "ok" for r in served.values())
    for path, record in served.items():
        assert_same_generation(record["answers"], local[path]["answers"])
        assert record["usage"] == local[path]["usage"]
    code, out, err = run(
        capsys,
        "batch",
        *exact_clips,
        *common,
        *openai_args(openai_server),
        "--concurrency",
        "4",
        "-o",
        str(tmp_path / "served.jsonl"),
    )
    assert code == 0 and "0 answered, 0 failed, 6 already done" in err  # resume keeps its meaning


def test_a_dead_port_is_one_line(capsys, videos, tiny_model):
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, out, err = run(
        capsys, "ask", videos["plain.mp4"], "q?", "--at", "1", "--model", tiny_model, *openai_args(url)
    )
    assert code == 1
    assert_one_line_error(err, f"cannot reach the server at {url}: connection refused")


def test_a_model_the_server_does_not_serve_is_one_line(capsys, videos, openai_server):
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q?",
        "--at",
        "1",
        "--model",
        "someone/other-vl",
        "--family",
        "qwen2.5-vl",
        *openai_args(openai_server),
    )
    assert code == 1
    assert_one_line_error(err, "model 'someone/other-vl' is not served there")


def test_the_family_is_read_from_the_config_or_given_never_guessed(capsys, videos, openai_server):
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q?",
        "--at",
        "1",
        "--model",
        "Qwen/Qwen2-VL-2B-Instruct",
        *openai_args(openai_server),
    )
    assert code == 2  # the name says Qwen2-VL, but no config of it is here: no guess
    assert_one_line_error(err, "give --family qwen2-vl, qwen2.5-vl or qwen3-vl")


def test_a_server_that_resizes_the_frames_is_an_error(capsys, exact_clips, tiny_model, openai_server):
    # The tiny processor's longest_edge is 1003520 pixels: a budget above it makes the server shrink.
    code, out, err = run(
        capsys,
        "ask",
        exact_clips[0],
        "q?",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--min-pixels",
        "1300000",
        "--max-new-tokens",
        "2",
        *openai_args(openai_server),
    )
    assert code == 1
    assert_one_line_error(err, "it resized the frames")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--engine", "openai"], "--engine openai needs --base-url"),
        (["--engine", "openai", "--base-url", "localhost:8000"], "must start with http://"),
        (
            ["--engine", "openai", "--base-url", "http://127.0.0.1:99999/v1"],
            "a port that is not a number from 1 to 65535",
        ),
        (["--engine", "openai", "--base-url", "http://127.0.0.1:0/v1"], "has port 0"),
        (["--engine", "openai", "--base-url", "http://127.0.0.1:x/v1"], "a port that is not a number"),
        (["--engine", "openai", "--base-url", "http:///v1"], "names no host"),
        (["--engine", "openai", "--base-url", "http://local host/v1"], "holds a space"),
        (["--base-url", "http://127.0.0.1:9/v1"], "--base-url, --family and --max-images go with --engine openai"),
    ],
)
def test_engine_usage_errors(capsys, videos, tiny_model, args, fragment):
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "q?", "--at", "1", "--model", tiny_model, *args)
    assert code == 2, err
    assert_one_line_error(err, fragment)


def test_concurrency_needs_a_server_engine(capsys, videos, tiny_model, tmp_path):
    code, out, err = run(
        capsys,
        "batch",
        videos["plain.mp4"],
        "-q",
        "q",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--concurrency",
        "4",
        "-o",
        str(tmp_path / "o.jsonl"),
    )
    assert code == 2
    assert_one_line_error(err, "--concurrency above 1 needs --engine openai")


class _FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the real server, answering the first two chat requests 503 (a server under load)."""

    upstream = ""
    refusals = 0

    def do_POST(self):  # noqa: N802 - the handler's protocol
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        if self.path.endswith("/chat/completions") and cls.refusals < 2:
            cls.refusals += 1
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"detail": "busy"}')
            return
        request = urllib.request.Request(
            cls.upstream + self.path.removeprefix("/v1"), data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as reply:
                status, data = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_transient_503s_are_retried(capsys, exact_clips, tiny_model, openai_server):
    _FlakyProxy.upstream, _FlakyProxy.refusals = openai_server, 0
    proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _FlakyProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/v1"
        code, out, err = run(
            capsys,
            "ask",
            exact_clips[0],
            "q?",
            "--at",
            "1",
            "--model",
            tiny_model,
            "--max-new-tokens",
            "2",
            *openai_args(url),
        )
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert code == 0, err
    assert _FlakyProxy.refusals == 2 and json.loads(out)["answers"][0]["answer"] is not None


def test_a_server_killed_mid_batch_stops_the_run_and_a_rerun_resumes(exact_clips, tiny_model, openai_server, tmp_path):
    process, url = start_server(tiny_model, str(tmp_path))
    clips = clip_copies(tmp_path / "clips", exact_clips[0], 10)
    output = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "keyframe_qa",
        "batch",
        str(clips),
        "-q",
        "Describe it in detail.",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "40",
        "--engine",
        "openai",
        "--concurrency",
        "2",
        "-o",
        str(output),
    ]
    batch = subprocess.Popen(
        command + ["--base-url", url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_lines(output, 2, batch, 120)
        stop_server(process)
        _, err = batch.communicate(timeout=120)
    finally:
        if process.poll() is None:
            stop_server(process)
    assert batch.returncode == 1, err
    assert err.strip().splitlines()[-1].startswith("Error: cannot reach the server at")
    finished = list(iter_lines(str(output)))  # every line there parses
    assert 2 <= len([r for r in finished if r["status"] == "ok"]) < 10
    rerun = subprocess.run(command + ["--base-url", openai_server], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    oks = Counter(r["video"]["path"] for r in iter_lines(str(output)) if r["status"] == "ok")
    assert len(oks) == 10 and set(oks.values()) == {1}  # all answered, none twice


def test_a_reply_slower_than_the_timeout_is_one_line(capsys, exact_clips, tiny_model, openai_server):
    code, out, err = run(
        capsys,
        "ask",
        exact_clips[0],
        "q?",
        "--at",
        "1",
        "--model",
        tiny_model,
        *openai_args(openai_server, "--timeout", "0.001"),
    )
    assert code == 1
    assert_one_line_error(err, "did not answer within 0.001s (raise --timeout")


class _KeyedFront(_FlakyProxy):
    """A front that wants a bearer key, as hosted endpoints do, and forwards to the real server."""

    key = ""

    def do_POST(self):  # noqa: N802
        if self.headers.get("Authorization") != f"Bearer {type(self).key}":
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "invalid api key"}}')
            return
        super().do_POST()


def test_the_key_comes_from_the_named_variable_and_a_refused_key_is_one_line(
    capsys, monkeypatch, exact_clips, tiny_model, openai_server
):
    _KeyedFront.upstream, _KeyedFront.refusals, _KeyedFront.key = openai_server, 2, SECRET  # no 503s here
    front = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _KeyedFront)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{front.server_address[1]}/v1"
    common = [exact_clips[0], "q?", "--at", "1", "--model", tiny_model, "--max-new-tokens", "2"]
    try:
        monkeypatch.setenv("MY_ENDPOINT_KEY", SECRET)
        code, out, err = run(capsys, "ask", *common, *openai_args(url, "--api-key-env", "MY_ENDPOINT_KEY"))
        assert code == 0, err
        assert SECRET not in out
        monkeypatch.setenv("MY_ENDPOINT_KEY", "wrong")
        code, out, err = run(capsys, "ask", *common, *openai_args(url, "--api-key-env", "MY_ENDPOINT_KEY"))
        assert code == 1
        assert_one_line_error(err, "answered 401: the API key was refused (invalid api key)")
    finally:
        front.shutdown()
        front.server_close()


def test_the_prompt_counter_is_exact_in_a_fresh_cli_process(exact_clips, tiny_model, openai_server):
    # In a process of its own, where nothing else imported jinja2.ext first (transformers does, in the tests'),
    # the server engine's prompt check must still be exact.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keyframe_qa",
            "ask",
            exact_clips[0],
            "q",
            "--at",
            "1",
            "--model",
            tiny_model,
            "--max-new-tokens",
            "2",
            *openai_args(openai_server),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"]["prompt_check"] == "exact"
    probe = (
        "import sys, keyframe_qa.engines.openai as o; "
        "o.PromptCounter.for_checkpoint(sys.argv[1]) or sys.exit(3); "
        "print(sorted(m for m in sys.modules if m.startswith('transformers')))"
    )
    done = subprocess.run([sys.executable, "-c", probe, tiny_model], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # the counter needs no transformers


def test_frames_planned_for_one_family_are_never_answered_by_another(videos, tiny_models):
    # Budgets (and the frames shrunk to them) follow the family's patch size: an engine of another family
    # would see pictures the report does not describe, so that is refused, not silently re-planned.
    from keyframe_qa import AskRequest, EngineSpec, SelectionRequest, load_model
    from keyframe_qa.errors import ModelError
    from keyframe_qa.jobs.ask import answer_prepared, prepare

    request = AskRequest(
        video=videos["plain.mp4"],
        questions=("What is it?",),
        selection=SelectionRequest(times=(1.0,)),
        engine=EngineSpec(model_id=tiny_models("qwen2-vl")),
    )
    prepared = prepare(request)
    other = load_model(tiny_models("qwen2.5-vl"))
    with pytest.raises(ModelError, match=r"planned for .*\(qwen2-vl\), but the engine is .*\(qwen2.5-vl\)"):
        answer_prepared(prepared, other)
    assert answer_prepared(prepared, load_model(tiny_models("qwen2-vl")))["answers"]
