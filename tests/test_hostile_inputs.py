"""What comes from outside, bounded: hostile HTTP servers on 127.0.0.1, huge text and digits, file
names that are not UTF-8, and the messages a user meets when things go wrong. Memory and time are
asserted by structure: what was refused before the probe, the decode or the model load, and how many
bytes a reply was allowed to be."""

from __future__ import annotations

import base64
import http.server
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import keyframe_qa.jobs.ask as pipeline_module
from keyframe_qa.jobs.batch import iter_lines
from tests.helpers import assert_one_line_error, run

LATIN1 = os.fsdecode(b"caf\xe9.mp4")


@pytest.fixture()
def forbid(monkeypatch):
    """forbid("probe", "read_selected", "build_engine"): fail if the pipeline starts that work."""

    def apply(*names):
        for name in names:

            def forbidden(*args, _name=name, **kwargs):
                raise AssertionError(f"{_name} ran before the request was refused")

            monkeypatch.setattr(pipeline_module, name, forbidden)

    return apply


# --- a hostile OpenAI-compatible server ----------------------------------------------------------


class Hostile(http.server.BaseHTTPRequestHandler):
    mode = "endless"
    sent = 0  # bytes of body sent, all requests together

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            getattr(self, f"_{self.mode}")()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self, status):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        chunk = b"[" * 65536
        deadline = time.monotonic() + 30  # bounded: the test server stops by itself
        while time.monotonic() < deadline:
            self.wfile.write(chunk)
            type(self).sent += len(chunk)

    def _endless(self):
        self._stream(200)

    def _endless_error(self):
        self._stream(500)

    def _drip(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(60):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(1)

    def _reply(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _number(self):
        self._reply(
            json.dumps(
                {
                    "choices": [{"message": {"content": 42}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
                }
            ).encode()
        )

    def _deep(self):
        self._reply(b"[" * 200_000 + b"]" * 200_000)

    def _list(self):
        self._reply(b"[1, 2, 3]")

    def _bad_usage(self):
        self._reply(
            json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": "many"}}).encode()
        )


@pytest.fixture()
def hostile():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Hostile.sent = 0

    def use(mode: str) -> str:
        Hostile.mode = mode
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield use
    server.shutdown()
    server.server_close()


def _ask_server(capsys, videos, url, *extra):
    return run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--at",
        "1",
        "--engine",
        "openai",
        "--base-url",
        url,
        "--model",
        "served",
        "--family",
        "qwen2-vl",
        *extra,
    )


@pytest.mark.parametrize(
    "mode, fragment",
    [
        ("endless", "sent a reply larger than 16 MiB"),
        ("number", "its content is a JSON number, not text"),
        ("deep", "nested too deeply"),
        ("list", "a JSON list, not an object"),
        ("bad_usage", "usage.prompt_tokens is not a count"),
    ],
)
def test_odd_or_endless_replies_are_one_line(capsys, videos, hostile, mode, fragment):
    code, _, err = _ask_server(capsys, videos, hostile(mode))
    assert code == 1
    assert_one_line_error(err, fragment)
    if mode == "endless":  # the client stopped reading at the cap: far less than the 30 s the server would send
        assert Hostile.sent < 64 * 1024 * 1024


def test_an_endless_error_body_is_read_only_up_to_its_cap(capsys, videos, hostile):
    code, _, err = _ask_server(capsys, videos, hostile("endless_error"), "--timeout", "20")
    assert code == 1
    assert_one_line_error(err, "answered 500: [[[[")
    assert len(err) < 1000  # the detail is cut, not the body echoed


def test_a_dripping_reply_ends_at_the_timeout_for_the_whole_reply(capsys, videos, hostile):
    started = time.monotonic()
    code, _, err = _ask_server(capsys, videos, hostile("drip"), "--timeout", "2")
    assert code == 1
    assert_one_line_error(err, "did not answer within 2s (raise --timeout")
    assert time.monotonic() - started < 30  # the server drips for 60 s: it was cut off, not waited for


@pytest.mark.parametrize("key", ["sk-abc\n", "sk abc", "sk-\x01"])
def test_an_api_key_no_header_can_carry_is_a_usage_error(capsys, videos, hostile, monkeypatch, forbid, key):
    monkeypatch.setenv("OPENAI_API_KEY", key)
    forbid("probe", "build_engine")
    code, _, err = _ask_server(capsys, videos, hostile("number"))
    assert code == 2
    assert_one_line_error(err, "the API key in $OPENAI_API_KEY contains a space, a newline")


def test_the_server_engine_reads_keyframe_qa_model(capsys, videos, openai_server, tiny_model, monkeypatch):
    monkeypatch.setenv("KEYFRAME_QA_MODEL", tiny_model)
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--at",
        "1",
        "--engine",
        "openai",
        "--base-url",
        openai_server,
        "--max-new-tokens",
        "2",
    )
    assert code == 0, err
    assert json.loads(out)["model"]["id"] == tiny_model


def test_an_empty_keyframe_qa_model_is_a_usage_error(capsys, videos, monkeypatch, forbid):
    monkeypatch.setenv("KEYFRAME_QA_MODEL", "")
    forbid("probe", "build_engine")
    code, _, err = run(capsys, "ask", videos["plain.mp4"], "q", "--at", "1")
    assert code == 2
    assert_one_line_error(err, "KEYFRAME_QA_MODEL is set but empty")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["ask", "{video}", "q", "--at", "1", "--model", ""], "--model is empty"),
        (["ask", "{video}", "q", "--at", "1", "--model", "  "], "--model is empty"),
        (
            ["frames", "{video}", "--relevant", "2", "--query", "x", "--scorer", "", "--out", "{tmp}/f"],
            "--scorer is empty",
        ),
        (["ask", "{video}", "q", "--relevant", "2", "--scorer", " "], "--scorer is empty"),
    ],
)
def test_an_empty_model_or_scorer_is_a_usage_error_like_an_empty_variable(
    capsys, videos, tmp_path, forbid, args, fragment
):
    forbid("probe", "build_engine")
    code, _, err = run(capsys, *[a.format(video=videos["plain.mp4"], tmp=tmp_path) for a in args])
    assert code == 2, err
    assert_one_line_error(err, fragment)


def test_offline_says_the_hub_was_not_asked(capsys, videos, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    code, _, err = run(capsys, "ask", videos["plain.mp4"], "q", "--at", "1", "--model", "nobody/not-cached-VL")
    assert code == 1
    assert_one_line_error(err, "HF_HUB_OFFLINE is set, so the hub was not asked")
    assert "could not be reached" not in err


# --- text and digits, bounded before the work ----------------------------------------------------


def test_a_huge_question_is_refused_before_the_probe(capsys, videos, tiny_model, forbid):
    forbid("probe", "read_selected", "build_engine")
    code, _, err = run(capsys, "ask", videos["bframes.mkv"], "why? " * 26_000, "--at", "1", "--model", tiny_model)
    assert code == 2
    assert_one_line_error(err, "a question takes at least")
    assert "KiB of text" in err and "shorten it" in err


def test_ten_thousand_times_on_matroska_are_refused_before_the_probe(capsys, videos, tiny_model, forbid):
    forbid("probe", "read_selected", "build_engine")
    times = ",".join(f"{i * 0.0002:.4f}" for i in range(10_000))
    code, _, err = run(capsys, "ask", videos["bframes.mkv"], "q", "--at", times, "--model", tiny_model)
    assert code == 2
    assert_one_line_error(err, "10000 times: their frames and labels alone take at least")


def test_a_ten_megabyte_manifest_question_is_a_row_error_without_tokenising_or_probing(
    capsys, videos, tiny_model, tmp_path, monkeypatch
):
    import keyframe_qa.answering as answering
    import keyframe_qa.model.text_tokens as text_tokens

    probed = []
    real_probe = pipeline_module.probe
    monkeypatch.setattr(pipeline_module, "probe", lambda path: probed.append(path) or real_probe(path))
    counter = text_tokens.text_counter(tiny_model)
    encoded = []
    monkeypatch.setattr(
        answering,
        "text_counter",
        lambda model_id: text_tokens.TextCounter(
            counter.max_token_bytes, lambda text: encoded.append(len(text)) or counter.encode(text)
        ),
    )
    huge = tmp_path / "huge.mp4"
    shutil.copy(videos["plain.mp4"], huge)
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(
        json.dumps({"video": str(huge), "at": 1, "question": "x" * 10_000_000})
        + "\n"
        + json.dumps({"video": videos["cut.mp4"], "at": 1, "question": "What is it?"})
        + "\n"
    )
    output = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys, "batch", str(manifest), "--model", tiny_model, "--max-new-tokens", "2", "-o", str(output)
    )
    assert code == 1, err
    lines = {os.path.basename(r["video"]["path"]): r for r in iter_lines(str(output))}
    assert lines["huge.mp4"]["status"] == "error" and "a question takes at least" in lines["huge.mp4"]["error"]
    assert lines["cut.mp4"]["status"] == "ok"
    assert str(huge) not in probed  # refused before the video was opened
    assert max(encoded) < 100_000  # the 10 MB text was never tokenised


@pytest.mark.parametrize("digits", [400, 5000])
def test_times_with_thousands_of_digits_are_usage_errors(capsys, videos, forbid, digits):
    forbid("probe")
    code, _, err = run(capsys, "ask", videos["plain.mp4"], "q", "--at", "1" + "0" * digits + ":00:00")
    assert code == 2
    assert "longer than any video's time" in err and "Traceback" not in err and "unexpected" not in err


def test_a_manifest_time_with_thousands_of_digits_is_a_row_error(capsys, videos, tiny_model, tmp_path):
    manifest = tmp_path / "rows.csv"
    manifest.write_text(f"video,at,question\n{videos['plain.mp4']},{'9' * 5000},q\n{videos['cut.mp4']},1,q\n")
    output = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys, "batch", str(manifest), "--model", tiny_model, "--max-new-tokens", "2", "-o", str(output)
    )
    assert code == 1
    assert sorted(r["status"] for r in iter_lines(str(output))) == ["error", "ok"]


# --- any file name Linux allows ------------------------------------------------------------------


def _valid_utf8(path) -> bytes:
    data = open(path, "rb").read()
    data.decode("utf-8")  # raises if not valid UTF-8
    return data


def test_a_latin1_name_is_answered_and_recoverable(capsys, videos, tiny_model, tmp_path):
    video = tmp_path / LATIN1
    shutil.copy(videos["plain.mp4"], video)
    output = tmp_path / "out.json"
    code, _, err = run(
        capsys,
        "ask",
        str(video),
        "q",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(output),
        "--save-frames",
        str(tmp_path / "frames"),
        "--html",
        str(tmp_path / "page.html"),
    )
    assert code == 0, err
    report = json.loads(_valid_utf8(output))
    assert report["video"]["path"].endswith("caf\ufffd.mp4")
    assert os.fsdecode(base64.b64decode(report["video"]["path_bytes"])) == str(video)
    _valid_utf8(tmp_path / "page.html")


def test_a_batch_answers_every_video_whatever_its_name_and_resumes(capsys, videos, tiny_model, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in (LATIN1, "plain.mp4", os.fsdecode(b"\xff\xfe.mkv")):
        shutil.copy(videos["plain.mp4"], folder / name)
    output = tmp_path / "out.jsonl"
    args = [
        "batch",
        str(folder),
        "-q",
        "q",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(output),
    ]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    _valid_utf8(output)
    lines = list(iter_lines(str(output)))
    assert [r["status"] for r in lines] == ["ok"] * 3
    from keyframe_qa.outputs.jsontext import path_of

    assert sorted(os.path.basename(path_of(r["video"])) for r in lines) == sorted(
        [LATIN1, "plain.mp4", os.fsdecode(b"\xff\xfe.mkv")]
    )
    code, _, err = run(capsys, *args)
    assert code == 0 and "0 answered, 0 failed, 3 already done" in err


def test_frames_and_scenes_json_are_valid_utf8_for_a_latin1_name(capsys, videos, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYFRAME_QA_CACHE_DIR", str(tmp_path / "cache"))
    video = tmp_path / LATIN1
    shutil.copy(videos["cut.mp4"], video)
    code, _, err = run(capsys, "frames", str(video), "--at", "1", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert json.loads(_valid_utf8(tmp_path / "out" / "frames.json"))["video"]["path_bytes"]
    code, out, err = run(capsys, "scenes", str(video))
    assert code == 0, err
    out.encode("utf-8")
    assert len(json.loads(out)["scenes"]) == 2


# --- what users notice ---------------------------------------------------------------------------


def test_a_batch_counts_truncations_once_and_names_its_failures(capsys, videos, tiny_model, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for number in range(3):
        shutil.copy(videos["plain.mp4"], folder / f"ok{number}.mp4")
    (folder / "broken.mp4").write_text("not a video\n" * 50)
    output = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys,
        "batch",
        str(folder),
        "-q",
        "Describe it in detail.",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "1",
        "-o",
        str(output),
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert not [line for line in lines if line.startswith("warning:")]  # no line per video
    assert "3 videos had replies stopped at --max-new-tokens 1" in err
    assert any(
        line.startswith("failed: ") and "broken.mp4" in line and "not a readable video" in line for line in lines
    )
    assert lines[-1].startswith("3 answered, 1 failed")
    assert all(r["truncated_replies"] == 1 for r in iter_lines(str(output)) if r["status"] == "ok")


def test_warnings_go_above_a_progress_bar_not_onto_it(monkeypatch):
    import io

    import keyframe_qa.console as messages

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(messages, "is_terminal", lambda _: True)
    bar = messages.Progress(3, desc="videos", unit="video")
    bar.update(1)
    messages.warn("something to know")
    bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert "warning: something to know" in text
    assert not [
        piece
        for piece in text.replace("\r", "\n").split("\n")
        if "warning:" in piece and not piece.startswith("warning:")
    ], text


def test_a_run_that_fails_to_start_leaves_the_results_file_as_it_was(capsys, videos, tmp_path, monkeypatch):
    import keyframe_qa.engines.openai as openai_engine

    monkeypatch.setattr(openai_engine, "BACKOFF_S", 0.01)  # the retries still happen, without the waits
    output = tmp_path / "out.jsonl"
    old = json.dumps({"schema_version": 1, "video": {"path": "/v/a.mp4"}, "status": "ok", "settings": "s"}) + "\n"
    output.write_text(old)
    dead = ["--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--family", "qwen2-vl"]
    code, _, err = run(
        capsys,
        "batch",
        videos["plain.mp4"],
        videos["broken.mp4"] if "broken.mp4" in videos else videos["cut.mp4"],
        "-q",
        "q",
        "--at",
        "1",
        *dead,
        "-o",
        str(output),
        "--overwrite",
    )
    assert code == 1 and "cannot reach the server" in err
    assert output.read_text() == old  # --overwrite empties only once a video is answered
    fresh = tmp_path / "new.jsonl"
    code, _, err = run(capsys, "batch", videos["plain.mp4"], "-q", "q", "--at", "1", *dead, "-o", str(fresh))
    assert code == 1 and not fresh.exists()  # no empty results file left behind


def test_an_output_path_ending_in_a_slash_is_a_folder(capsys, videos, tmp_path, forbid):
    forbid("probe")
    code, _, err = run(capsys, "ask", videos["plain.mp4"], "q", "--at", "1", "-o", str(tmp_path / "newdir") + "/")
    assert code == 2
    assert_one_line_error(err, "ends with / and so names a folder")
    assert not (tmp_path / "newdir").exists()


@pytest.mark.parametrize(
    "what, fragment",
    [("fifo", "is a named pipe (FIFO), not a video file"), ("/dev/zero", "is a character device, not a video file")],
)
def test_a_pipe_or_a_device_as_the_video_says_what_it_is(capsys, tmp_path, what, fragment):
    path = what
    if what == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    code, _, err = run(capsys, "frames", path, "--at", "1", "--out", str(tmp_path / "out"))
    assert code == 1
    assert_one_line_error(err, fragment)
    assert "empty" not in err


def test_an_ordinary_webm_prints_no_index_jargon(capsys, tmp_path):
    import imageio_ffmpeg

    webm = tmp_path / "clip.webm"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=4:size=320x240:rate=10",
            "-c:v",
            "libvpx-vp9",
            "-b:v",
            "200k",
            str(webm),
        ],
        check=True,
    )
    code, _, err = run(capsys, "frames", str(webm), "--at", "1.5,3", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert "warning" not in err and "seek windows" not in err
    index = json.loads((tmp_path / "out" / "frames.json").read_text())["video"]["index"]
    assert index["source"] == "packet scan" and "seek windows" in index["note"]  # the detail is kept here
    frames = json.loads((tmp_path / "out" / "frames.json").read_text())["frames"]
    assert [f["frame_number"] for f in frames] == [15, 30]


def test_decode_time_is_decoding_only(capsys, videos, tiny_model, monkeypatch):
    monkeypatch.setattr(pipeline_module, "warm_engine_imports", lambda: time.sleep(1.0))
    code, out, err = run(
        capsys, "ask", videos["plain.mp4"], "q", "--at", "1", "--model", tiny_model, "--max-new-tokens", "2"
    )
    assert code == 0, err
    timings = json.loads(out)["timings"]
    assert timings["decode_s"] < 1.0 <= timings["model_load_s"]  # the import went to the model's load


def test_a_truncated_weights_file_is_named(capsys, videos, tiny_model, tmp_path, forbid):
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_model, damaged)
    weights = damaged / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(os.path.getsize(weights) // 2)
    code, _, err = run(capsys, "ask", videos["plain.mp4"], "q", "--at", "1", "--model", str(damaged))
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: the weights file") and str(weights) in last and "truncated" in last


def test_a_disk_that_fills_mid_batch_names_the_file(videos, tiny_model, tmp_path):
    output = tmp_path / "out.jsonl"

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))  # less than one result line

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keyframe_qa",
            "batch",
            videos["plain.mp4"],
            videos["cut.mp4"],
            "-q",
            "q",
            "--at",
            "1",
            "--model",
            tiny_model,
            "--max-new-tokens",
            "2",
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        timeout=300,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot write") and str(output) in last and "file too large" in last


def test_manifest_rows_are_bounded(capsys, videos, tiny_model, tmp_path):
    manifest = tmp_path / "rows.jsonl"
    with open(manifest, "w") as handle:
        handle.write(json.dumps({"video": videos["plain.mp4"], "question": "x" * (17 * 1024 * 1024)}) + "\n")
        handle.write(json.dumps({"video": videos["cut.mp4"], "at": 1, "question": "q"}) + "\n")
    csv_manifest = tmp_path / "rows.csv"
    csv_manifest.write_text(f"video,at,question\n{videos['plain.mp4']},1,{'y' * 10_000_000}\n")
    output = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys,
        "batch",
        str(manifest),
        str(csv_manifest),
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(output),
    )
    assert code == 1, err
    lines = list(iter_lines(str(output)))
    errors = sorted(r["error"] for r in lines if r["status"] == "error")
    assert len(errors) == 2 and any("row 1: longer than 16 MiB" in e for e in errors)
    assert any("a question takes at least" in e for e in errors)
    assert [r["status"] for r in lines].count("ok") == 1


def test_a_manifest_line_nested_too_deeply_is_one_line(capsys, tmp_path, tiny_model):
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("[" * 200_000 + "]" * 200_000 + "\n")
    code, _, err = run(capsys, "batch", str(manifest), "--model", tiny_model, "-o", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert_one_line_error(err, "line 1 is nested too deeply")


NOT_UTF8 = os.fsdecode(b"caf\xe9?")  # a question typed in a latin-1 shell


@pytest.mark.parametrize(
    "args",
    [
        ["ask", "{video}", NOT_UTF8, "--at", "1"],
        ["ask", "{video}", "q", "--find", NOT_UTF8, "--at", "1"],
        ["ask", "{video}", "q", "--when", NOT_UTF8],
        ["ask", "{video}", "q", "--relevant", "2", "--find", NOT_UTF8],
        ["when", "{video}", NOT_UTF8],
        ["frames", "{video}", "--relevant", "2", "--query", NOT_UTF8, "--out", "{tmp}/f"],
        ["batch", "{video}", "-q", NOT_UTF8, "--at", "1", "-o", "{tmp}/r.jsonl"],
    ],
)
def test_text_that_is_not_utf8_is_one_usage_error_in_every_command(capsys, videos, tiny_model, tmp_path, forbid, args):
    forbid("probe", "build_engine")
    args = [a.format(video=videos["plain.mp4"], tmp=tmp_path) for a in args]
    code, out, err = run(capsys, *args, "--model", tiny_model) if args[0] != "frames" else run(capsys, *args)
    assert code == 2, err
    assert_one_line_error(err, "is not valid UTF-8 text (byte 0xe9 after 'caf')")


@pytest.mark.parametrize(
    "args", [["scenes", "{video}"], ["ask", "{video}", "q", "--at", "1"], ["when", "{video}", "x"]]
)
def test_a_closed_stdout_is_one_usage_error_before_any_work(videos, args):
    # `keyframe-qa ... >&-`: the process starts with no file descriptor 1, and Python with no sys.stdout.
    command = (
        [
            sys.executable,
            "-m",
            "keyframe_qa",
            *[a.format(video=videos["plain.mp4"]) for a in args],
            "--model",
            "/nonexistent",
        ]
        if args[0] != "scenes"
        else [sys.executable, "-m", "keyframe_qa", *[a.format(video=videos["plain.mp4"]) for a in args]]
    )
    done = subprocess.run(command, preexec_fn=lambda: os.close(1), stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "Error: standard output is closed: give -o FILE to write the result to a file"


@pytest.mark.parametrize("option", ["--annotate", "--save-frames", "--html", "-o"])
def test_an_output_where_nothing_can_be_written_is_refused_before_the_model_loads(
    capsys, videos, tiny_model, forbid, option
):
    # Root passes every permission check on /proc, yet nothing can be created there.
    forbid("probe", "build_engine")
    target = "/proc/keyframe-qa-test" + (".html" if option == "--html" else ".json" if option == "-o" else "")
    code, _, err = run(capsys, "ask", videos["plain.mp4"], "q", "--at", "1", "--model", tiny_model, option, target)
    assert code == 2, err
    assert_one_line_error(err, f"cannot create {option} {target} in /proc")
    assert not os.path.exists(target)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize(
    "command", [["frames", "{p}", "--at", "0", "--out", "{tmp}/f"], ["scenes", "{p}"], ["ask", "{p}", "q", "--at", "0"]]
)
def test_a_still_image_is_refused_by_name(capsys, tmp_path, tiny_model, suffix, command):
    import cv2
    import numpy as np

    picture = str(tmp_path / f"photo{suffix}")
    cv2.imwrite(picture, np.zeros((40, 60, 3), np.uint8))
    args = [a.format(p=picture, tmp=tmp_path) for a in command]
    args += ["--model", tiny_model] if command[0] == "ask" else []
    code, _, err = run(capsys, *args)
    assert code == 1, err
    assert_one_line_error(err, f"photo{suffix} is a still image ({'PNG' if suffix == '.png' else 'JPEG'}), not a video")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--threshold", "30"], "--threshold goes with --scenes: add --scenes, or leave it out"),
        (["--keyframe", "sharpest", "--max-scenes", "3"], "--keyframe and --max-scenes go with --scenes"),
        (["--candidates", "keyframes"], "--candidates goes with --relevant"),
        (["--query", "x"], "--query goes with --relevant"),
    ],
)
def test_an_option_of_a_way_not_chosen_is_a_usage_error(capsys, videos, tmp_path, args, fragment):
    code, _, err = run(capsys, "frames", videos["plain.mp4"], "--at", "1", *args, "--out", str(tmp_path / "f"))
    assert code == 2, err
    assert_one_line_error(err, fragment)
    assert not (tmp_path / "f").exists()


def test_frames_without_a_selection_says_what_it_writes(capsys, videos, tmp_path):
    code, _, err = run(capsys, "frames", videos["plain.mp4"], "--out", str(tmp_path / "f"))
    assert code == 0, err
    assert (
        "no frames chosen (--at, --every, --num-frames, --fps, --scenes or --relevant): writing 12 sampled like "
        "qwen-vl-utils (2 a second)" in err
    )
    assert "wrote 12 frames and" in err
