"""`keyframe-qa when`: windows, merging, and the search down to the exact first and last frame.

The search runs on a perfect-model stand-in (testing/oracle.py, which reads each frame's number from the
pixels of a synthetic clip): the search is what is under test. The real engines (the tiny checkpoint in
process and behind `transformers serve`) run the same path below, for structure.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from keyframe_qa import GenerationRequest, WhenRequest, find_moments
from keyframe_qa.errors import ModelError, UsageError
from keyframe_qa.selection.windows import merge_spans, plan_windows
from keyframe_qa.testing.oracle import PixelOracle
from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
from tests.helpers import assert_one_line_error, run


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("when")
    specs = {
        "short.mp4": SyntheticSpec(frame_count=200, fps=10, gop=12, bframes=2),
        "long.mkv": SyntheticSpec(frame_count=900, fps=10, gop=30, bframes=2),
    }
    paths = {}
    for name, spec in specs.items():
        paths[name] = str(folder / name)
        write_video(paths[name], spec)
    return paths


def test_windows_cover_the_video_with_overlap():
    windows = plan_windows(100.0, rate=1.0, frames=32)
    assert windows[0].start == 0 and windows[-1].end == 100.0
    for before, after in zip(windows, windows[1:]):
        assert after.start < before.end  # overlapping: an event at a border is seen whole once
    assert all(len(w.times) <= 32 and w.times[0] >= w.start and w.times[-1] <= w.end + 1e-9 for w in windows)
    (whole,) = plan_windows(10.0, rate=2.0, frames=32)
    assert whole.start == 0 and whole.end == 10.0 and len(whole.times) == 21


def test_spans_merge_across_windows():
    assert merge_spans([(5, 8), (1, 2), (7.5, 12), (12.4, 13)], gap=0.5) == [(1, 2), (5, 13)]
    assert merge_spans([]) == []


def _probe_bound(fps: float, rate: float) -> int:
    step = max(1, round(fps / rate))
    return 2 * (math.ceil(math.log2(step)) + 3)  # per moment: the confirming probes and the bisection


@pytest.mark.parametrize("first, last", [(47, 133), (0, 20), (150, 199), (100, 100)])
def test_the_search_finds_the_exact_first_and_last_frame(clips, first, last):
    oracle = PixelOracle(first, last)
    report = find_moments(WhenRequest(video=clips["short.mp4"], query="the marker"), engine=oracle)
    (moment,) = report["moments"]
    assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (first, last)
    assert moment["start"] == pytest.approx(first / 10) and moment["end"] == pytest.approx(last / 10)
    assert moment["refined"] is True and moment["reason"] is None
    assert moment["probes"] <= _probe_bound(10, 1.0)
    assert report["probes_read_by"] == ["probability"]
    assert report["schema_version"] == 1 and report["query"] == "the marker" and report["passes"]


def test_an_event_across_window_borders_in_a_long_clip_is_one_moment(clips):
    oracle = PixelOracle(300, 520)
    report = find_moments(WhenRequest(video=clips["long.mkv"], query="the marker", window_frames=16), engine=oracle)
    assert len(report["passes"]) > 3  # 90 s in windows of 15 s
    (moment,) = report["moments"]
    assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (300, 520)
    # The calls grow with the windows and the log of the gap, not with the frames a dense scan would ask.
    assert report["usage"]["calls"] < 900 / 10


def test_nothing_found_is_a_result(clips):
    report = find_moments(WhenRequest(video=clips["short.mp4"], query="a dragon"), engine=PixelOracle(10_000, 10_001))
    assert report["moments"] == [] and report["passes"][0]["spans"] == []


def test_no_refine_and_a_precision_in_seconds(clips):
    coarse = find_moments(WhenRequest(video=clips["short.mp4"], query="x", refine=False), engine=PixelOracle(47, 133))
    (moment,) = coarse["moments"]
    assert moment["refined"] is False and moment["reason"] == "--no-refine" and moment["probes"] == 0
    loose = find_moments(WhenRequest(video=clips["short.mp4"], query="x", precision="0.5"), engine=PixelOracle(47, 133))
    (moment,) = loose["moments"]
    assert abs(moment["start"] - 4.7) <= 0.5 and abs(moment["end"] - 13.3) <= 0.5
    assert moment["probes"] < 11


def test_a_probe_that_answers_neither_keeps_the_coarse_boundary(clips):
    class Mumbling(PixelOracle):
        def yes_probability(self, prompt, question):
            return None  # cannot tell: the search reads the reply's text

        def answer(self, prompt, questions, settings):
            replies = super().answer(prompt, questions, settings)
            if len(prompt.images) == 1:
                from dataclasses import replace

                return [replace(r, raw="maybe", text="maybe") for r in replies]
            return replies

    report = find_moments(WhenRequest(video=clips["short.mp4"], query="x"), engine=Mumbling(47, 133))
    (moment,) = report["moments"]
    assert moment["refined"] is False and "neither yes nor no" in moment["reason"]
    assert report["probes_read_by"] == ["text"]
    assert moment["coarse"] == [5.0, 13.0]


def test_an_engine_that_fails_mid_search_stops_it(clips):
    class Failing(PixelOracle):
        def answer(self, prompt, questions, settings):
            if len(self.seen) > 25:
                raise ModelError("the server went away")
            return super().answer(prompt, questions, settings)

        def yes_probability(self, prompt, question):
            if len(self.seen) > 25:
                raise ModelError("the server went away")
            return super().yes_probability(prompt, question)

    with pytest.raises(ModelError, match="went away"):
        find_moments(WhenRequest(video=clips["short.mp4"], query="x"), engine=Failing(47, 133))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["   "], "give a description"),
        (["x", "--precision", "fast"], "--precision must be frame or a number of seconds"),
        (["x", "--precision", "-1"], "--precision must be frame"),
        (["x", "--window-frames", "1"], "--window-frames"),
    ],
)
def test_usage_errors(capsys, clips, tiny_model, args, fragment):
    code, _, err = run(capsys, "when", clips["short.mp4"], *args, "--model", tiny_model)
    assert code == 2
    assert_one_line_error(err, fragment)


def test_the_real_engine_runs_the_same_path(capsys, videos, tiny_model):
    code, out, err = run(
        capsys,
        "when",
        videos["plain.mp4"],
        "a red square",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "16",
        "--window-frames",
        "4",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["model"]["engine"] == "transformers" and report["video"]["frame_count"] == 60
    assert report["passes"] and all(p["frames"] <= 4 for p in report["passes"])
    for moment in report["moments"]:  # noise from a random model, but any moment has exact frames
        assert set(moment) >= {"start", "end", "first_frame", "last_frame", "coarse", "refined", "probes"}


def test_through_a_real_server(capsys, videos, tiny_model, openai_server):
    code, out, err = run(
        capsys,
        "when",
        videos["plain.mp4"],
        "a red square",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "8",
        "--window-frames",
        "2",
        "--engine",
        "openai",
        "--base-url",
        openai_server,
    )
    assert code == 0, err
    assert json.loads(out)["model"]["engine"] == "openai"


def test_a_server_that_is_not_there_is_one_line(capsys, clips, monkeypatch):
    import keyframe_qa.engines.openai as openai_engine

    monkeypatch.setattr(openai_engine, "BACKOFF_S", 0.01)  # the retries still happen, without the waits
    code, _, err = run(
        capsys,
        "when",
        clips["short.mp4"],
        "x",
        "--engine",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--family",
        "qwen2-vl",
    )
    assert code == 1
    assert_one_line_error(err, "cannot reach the server")


def test_the_library_checks_its_request(clips):
    with pytest.raises(UsageError):
        find_moments(WhenRequest(video=clips["short.mp4"], query="x", window_frames=0), engine=PixelOracle(1, 2))


def test_a_huge_query_is_refused_before_the_video_is_read(capsys, clips, tiny_model, monkeypatch):
    import keyframe_qa.jobs.when as when_module

    def forbidden(*args, **kwargs):
        raise AssertionError("the video was probed")

    monkeypatch.setattr(when_module, "probe", forbidden)
    code, _, err = run(capsys, "when", clips["short.mp4"], "a door " * 20_000, "--model", tiny_model)
    assert code == 2
    assert_one_line_error(err, "a question takes at least")


def test_the_text_answers_alone_find_the_same_frames(clips):
    class Texting(PixelOracle):
        def yes_probability(self, prompt, question):
            return None

    report = find_moments(WhenRequest(video=clips["short.mp4"], query="x"), engine=Texting(47, 133))
    (moment,) = report["moments"]
    assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (47, 133)
    assert report["probes_read_by"] == ["text"]


def test_the_in_process_engine_reads_yes_against_no_from_the_first_tokens_logits(videos, tiny_model):
    from keyframe_qa import extract_frames, load_model
    from keyframe_qa.answering import AnswerOptions, yes_probability
    from keyframe_qa.model.generation import GenerationRequest, resolve_generation

    engine = load_model(tiny_model)
    frames = extract_frames(videos["plain.mp4"], [1.0])
    options = AnswerOptions(generation=resolve_generation(GenerationRequest(max_new_tokens=1), None))
    probability, budgets = yes_probability(engine, frames, "Does this frame show a cat? Answer yes or no.", options)
    assert probability is not None and 0.0 <= probability <= 1.0 and budgets
    again, _ = yes_probability(engine, frames, "Does this frame show a cat? Answer yes or no.", options)
    assert again == probability  # one forward pass, deterministic


@pytest.mark.parametrize(
    "reply, expected",
    [
        (
            {
                "choices": [
                    {
                        "logprobs": {
                            "content": [
                                {"top_logprobs": [{"token": "Yes", "logprob": -0.1}, {"token": " no", "logprob": -2.4}]}
                            ]
                        }
                    }
                ]
            },
            0.909,
        ),
        ({"choices": [{"logprobs": {"content": [{"top_logprobs": [{"token": "maybe", "logprob": -0.1}]}]}}]}, None),
        ({"choices": [{"message": {"content": "yes"}}]}, None),
        ({"choices": [{"logprobs": {"content": [{"top_logprobs": [{"token": "yes", "logprob": "high"}]}]}}]}, None),
    ],
)
def test_server_logprobs_are_read_when_given(reply, expected):
    from keyframe_qa.engines.openai import _yes_from_logprobs

    value = _yes_from_logprobs(reply)
    assert value == pytest.approx(expected, abs=1e-3) if expected is not None else value is None


def test_the_html_page_shows_the_timeline_and_each_moments_frames(clips, tmp_path):
    from keyframe_qa.jobs.when import when_job

    page = tmp_path / "when.html"
    report, _ = when_job(
        WhenRequest(video=clips["short.mp4"], query="<b>the marker</b>"),
        html=str(page),
        output=str(tmp_path / "when.json"),
        engine=PixelOracle(47, 133),
    )
    text = page.read_text()
    assert report["html"] == str(page)
    assert "&lt;b&gt;the marker&lt;/b&gt;" in text and "<b>the marker</b>" not in text  # the query is escaped
    assert text.count('class="moment"') == 1 and text.count('class="coarse"') == 1
    # Found, not asked for: the captions name no time asked for.
    assert "First frame at 0:00:04.700 (frame 47)" in text and "Last frame at 0:00:13.300 (frame 133)" in text
    assert "asked for" not in text
    assert text.count("data:image/jpeg;base64,") == 2
    # The timeline is ticked (20 s of video: every 2 s) and says what its colours are.
    assert [float(t) for t in re.findall(r'class="tick"[^>]*>([\d.]+)s<', text)] == [2.0 * i for i in range(11)]
    assert "the span the model named (coarse pass)" in text and "the moment, to its first and last frame" in text
    assert "1 moment;" not in text and "1 moment<" in text


def test_html_and_output_cannot_be_the_video_or_each_other(capsys, clips, tiny_model, tmp_path):
    code, _, err = run(capsys, "when", clips["short.mp4"], "x", "--model", tiny_model, "--html", clips["short.mp4"])
    assert code == 2 and "is an input of this run" in err
    same = str(tmp_path / "same.json")
    code, _, err = run(capsys, "when", clips["short.mp4"], "x", "--model", tiny_model, "--html", same, "-o", same)
    assert code == 2 and "would both write" in err


def test_ask_when_finds_the_moment_then_asks_about_its_first_middle_and_last_frame(clips):
    from keyframe_qa import AskRequest, ask

    oracle = PixelOracle(47, 133)
    report = ask(
        AskRequest(video=clips["short.mp4"], questions=("What happens?", "Who is there?"), when="the marker"),
        engine=oracle,
    )
    assert [f["frame_number"] for f in report["frames"]] == [47, 90, 133]
    assert [a["question"] for a in report["answers"]] == ["What happens?", "Who is there?"]
    (moment,) = report["when"]["moments"]
    assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (47, 133)
    nothing = ask(
        AskRequest(video=clips["short.mp4"], questions=("q",), when="a dragon"), engine=PixelOracle(10_000, 10_001)
    )
    assert nothing["frames"] == [] and nothing["answers"] == [] and nothing["when"]["moments"] == []


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--at", "1"], "--when finds them itself"),
        (["--scenes"], "--when finds them itself"),
        (["--per-frame"], "without --per-frame"),
        (["--mode", "video"], "without --per-frame and --mode video"),
    ],
)
def test_ask_when_refuses_a_second_way_to_choose_frames(capsys, clips, tiny_model, extra, fragment):
    code, _, err = run(capsys, "ask", clips["short.mp4"], "q", "--when", "x", *extra, "--model", tiny_model)
    assert code == 2
    assert_one_line_error(err, fragment)


def test_ask_when_with_the_real_engine(capsys, videos, tiny_model):
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "What happens?",
        "--when",
        "a red square",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "8",
    )
    assert code == 0, err
    report = json.loads(out)
    moments = report["when"]["moments"]  # a random model: noise, but the shape holds
    assert len(report["frames"]) <= 3 * len(moments) and (report["answers"] == []) == (moments == [])
    assert report["when"]["passes"] and report["when"]["query"] == "a red square"


class _OracleServer:
    """The stand-in behind a real local HTTP server speaking the OpenAI chat API (127.0.0.1, stops with the
    test): it decodes the PNG frames the OpenAI engine sends and answers from their pixels. A video (vLLM's
    `data:video/jpeg` URL, its parts PNGs) is read as vLLM reads it: each frame's time is its frames_indices
    entry over fps from `media_io_kwargs`, as Qwen3-VL is told; its /models says it is vLLM."""

    def __init__(self, first: int, last: int, max_images: int = 0):
        import http.server
        import threading

        oracle = PixelOracle(first, last)
        self.oracle = oracle
        self.refused = 0  # prompts refused for holding more than max_images images (0: no limit)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                data = json.dumps({"data": [{"id": "oracle", "owned_by": "vllm"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 - http.server's naming
                import base64

                import cv2
                import numpy as np

                def decoded(piece: str):
                    picture = cv2.imdecode(np.frombuffer(base64.b64decode(piece), np.uint8), cv2.IMREAD_COLOR)
                    return cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content = body["messages"][0]["content"]
                content = content if isinstance(content, list) else [{"type": "text", "text": content}]
                images, texts, told = [], [], None
                for part in content:
                    if part["type"] == "image_url":
                        images.append(decoded(part["image_url"]["url"].split(",", 1)[1]))
                    elif part["type"] == "video_url":
                        images.extend(decoded(piece) for piece in part["video_url"]["url"].split(",")[1:])
                        video = body["media_io_kwargs"]["video"]
                        told = [index / video["fps"] for index in video["frames_indices"]]
                    else:
                        texts.append(part["text"])
                if max_images and len(images) > max_images:
                    # vLLM's refusal, word for word, as --limit-mm-per-prompt '{"image": N}' makes it.
                    owner.refused += 1
                    data = json.dumps(
                        {
                            "error": {
                                "message": f"At most {max_images} image(s) may be provided in one "
                                f"prompt. (parameter=image)",
                                "type": "BadRequestError",
                                "code": 400,
                            }
                        }
                    ).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                # The frames' times, from their labels ("Frame 3 at 0:00:02.000:"), as a model reads them.
                labels = re.findall(r"at (\d+):(\d\d):(\d\d(?:\.\d+)?)", "\n".join(texts))
                times = told or [int(h) * 3600 + int(m) * 60 + float(sec) for h, m, sec in labels]
                from keyframe_qa.records import VisualPrompt

                prompt = VisualPrompt(images=images, budgets=[], labels=[], mode="images", times=times or [0.0])
                (reply,) = oracle.answer(prompt, [texts[-1]], None)
                answer = {
                    "choices": [{"message": {"role": "assistant", "content": reply.raw}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100_000, "completion_tokens": 1},
                }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _when_through(
    capsys,
    clip: str,
    server: _OracleServer,
    *extra: str,
    family: str = "qwen2-vl",
    first_last: tuple[int, int] = (47, 133),
) -> tuple[dict, str]:
    """`when` for the oracle's marker through its HTTP server (closed after): the report, and stderr."""
    try:
        code, out, err = run(
            capsys,
            "when",
            clip,
            "the marker",
            "--engine",
            "openai",
            "--base-url",
            server.url,
            "--model",
            "oracle",
            "--family",
            family,
            *extra,
        )
    finally:
        server.close()
    assert code == 0, err
    report = json.loads(out)
    (moment,) = report["moments"]
    assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == first_last
    return report, err


def test_the_search_through_a_real_http_server_finds_the_exact_frames(capsys, clips):
    report, _ = _when_through(capsys, clips["short.mp4"], _OracleServer(47, 133), "--window-frames", "21")
    assert report["probes_read_by"] == ["text"]  # this server returns no logprobs: the reply's first word


def test_when_in_video_mode_through_vllm_tells_each_window_its_true_times(capsys, clips):
    # The oracle reads each frame's time from the media_io_kwargs, as vLLM tells Qwen3-VL: the spans it states
    # fall on the marker's frames (470 to 533 at 10 fps) only if those are the frames' true times from their
    # window's start (27 s here, not the video's).
    report, _ = _when_through(
        capsys, clips["long.mkv"], _OracleServer(470, 533), "--mode", "video", family="qwen3-vl", first_last=(470, 533)
    )
    found = [p for p in report["passes"] if p["mode"] == "video" and p["spans"]]
    assert found and all(p["origin"] > 0 for p in found)
    for record in found:
        # The reply's times are the window's (from 20 to 26 seconds, at 1 frame a second); the record's spans the
        # video's.
        stated = [float(value) for value in re.findall(r"[\d.]+", record["raw"])]
        assert 47.0 <= stated[0] + record["origin"] and stated[-1] + record["origin"] <= 53.3 + 1e-6, record
        assert record["spans"] == [[stated[0] + record["origin"], stated[-1] + record["origin"]]]
    assert report["model"]["time_fidelity"]["status"] == "exact"


@pytest.mark.parametrize("told", [False, True])
def test_when_fits_its_windows_to_a_servers_image_limit(capsys, clips, told):
    server = _OracleServer(47, 133, max_images=16)
    report, err = _when_through(capsys, clips["short.mp4"], server, *(["--max-images", "16"] if told else []))
    assert report["window_frames"] == 16 and all(p["frames"] <= 16 for p in report["passes"])
    source = "--max-images" if told else "the server's refusal"
    assert err.count("takes at most 16 images in one prompt") == 1
    assert (
        f"when: the server takes at most 16 images in one prompt ({source}): windows of 16 frames instead of 32" in err
    )
    assert server.refused == (0 if told else 1)


def test_ask_with_more_frames_than_a_server_takes_is_refused(capsys, clips, monkeypatch):
    import keyframe_qa.jobs.ask as ask_module

    server = _OracleServer(47, 133, max_images=16)
    common = [
        "ask",
        clips["short.mp4"],
        "q",
        "--num-frames",
        "20",
        "--engine",
        "openai",
        "--base-url",
        server.url,
        "--model",
        "oracle",
        "--family",
        "qwen2-vl",
    ]
    try:
        code, out, err = run(capsys, *common)  # the server's refusal, read
        assert code == 2 and server.refused == 1
        assert_one_line_error(err, "takes at most 16 images in one prompt")
        assert "give --max-images 16" in err and "--limit-mm-per-prompt" in err
        code, out, err = run(capsys, *common, "--max-images", "16", "--per-frame", "--max-new-tokens", "2")
        assert code == 0 and server.refused == 1, err  # one image a prompt fits
        monkeypatch.setattr(ask_module, "read_selected", lambda *a, **k: pytest.fail("frames were decoded"))
        code, out, err = run(capsys, *common, "--max-images", "16")  # refused before a frame is decoded
        assert code == 2 and server.refused == 1
        assert_one_line_error(err, "20 frames in one prompt, but")
    finally:
        server.close()


def test_batch_when_gives_each_video_its_moments_and_resumes(clips, tmp_path):
    import shutil

    from keyframe_qa import AskRequest
    from keyframe_qa.jobs.batch import iter_lines, run_batch
    from keyframe_qa.jobs.batch_inputs import BatchItem

    videos = []
    for name in ("a.mp4", "b.mp4"):
        videos.append(str(tmp_path / name))
        shutil.copy(clips["short.mp4"], videos[-1])
    output = str(tmp_path / "out.jsonl")
    template = AskRequest(video="", questions=("What happens?",), when="the marker")
    summary = run_batch(
        [BatchItem(video=v) for v in videos], template, output, engine=PixelOracle(47, 133), progress=False
    )
    assert (summary.done, summary.failed) == (2, 0)
    for line in iter_lines(output):
        assert [f["frame_number"] for f in line["frames"]] == [47, 90, 133]
        assert line["when"]["moments"][0]["first_frame"]["frame_number"] == 47
    again = run_batch(
        [BatchItem(video=v) for v in videos], template, output, engine=PixelOracle(47, 133), progress=False
    )
    assert (again.done, again.skipped) == (0, 2)


def test_batch_when_refuses_a_second_way_to_choose_frames(capsys, clips, tiny_model, tmp_path):
    code, _, err = run(
        capsys,
        "batch",
        clips["short.mp4"],
        "-q",
        "q",
        "--when",
        "x",
        "--at",
        "1",
        "--model",
        tiny_model,
        "-o",
        str(tmp_path / "o.jsonl"),
    )
    assert code == 2
    assert_one_line_error(err, "--when finds them itself")
    assert not (tmp_path / "o.jsonl").exists()


def test_batch_when_with_the_real_engine(capsys, videos, tiny_model, tmp_path):
    output = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys,
        "batch",
        videos["plain.mp4"],
        "-q",
        "What happens?",
        "--when",
        "a red square",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "8",
        "-o",
        str(output),
    )
    assert code == 0, err
    (line,) = [json.loads(text) for text in output.read_text().splitlines()]
    assert line["status"] == "ok" and line["when"]["query"] == "a red square" and line["when"]["passes"]


# --- video mode and the time told -------------------------------------------------------------------------


@pytest.mark.parametrize("clip, first, last, window_frames", [("short.mp4", 47, 133, 32), ("long.mkv", 300, 520, 16)])
def test_video_mode_finds_the_exact_frames_with_times_told_from_each_window(clips, clip, first, last, window_frames):
    oracle = PixelOracle(first, last, family="qwen2.5-vl")
    report = find_moments(
        WhenRequest(video=clips[clip], query="the marker", mode="video", window_frames=window_frames), engine=oracle
    )
    (moment,) = report["moments"]
    assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (first, last)
    assert moment["refined"] is True and moment["probes"] <= _probe_bound(10, 1.0)  # both clips: 1 fps windows
    assert report["model"]["mode"] == "video" and report["time_told"] == "from each window's start"
    assert all(p["mode"] == "video" for p in report["passes"])
    late = [p for p in report["passes"] if p["origin"] > 0]
    if clip == "long.mkv":
        # The stand-in answered in the times it was told (from 0 in every window); the spans came back
        # onto the video: every stated span lies inside its own window.
        assert len(late) > 3
        assert all(p["window"][0] - 0.1 <= s <= e <= p["window"][1] + 1e-6 for p in late for s, e in p["spans"])
        assert any(p["spans"] for p in late)
    assert report["model"]["time_fidelity"]["status"] == "exact"


def _spy(engine) -> list:
    """Every prompt the real engine is given, kept as it passes (the engine still answers it)."""
    prompts = []
    answer = engine.answer

    def keep(prompt, questions, settings):
        prompts.append(prompt)
        return answer(prompt, questions, settings)

    engine.answer = keep
    return prompts


def _late_window_prompt(videos, engine):
    prompts = _spy(engine)
    report = find_moments(
        WhenRequest(
            video=videos["plain.mp4"],
            query="a red square",
            mode="video",
            window_frames=4,
            generation=GenerationRequest(max_new_tokens=4),
            refine=False,
        ),
        engine=engine,
    )
    coarse = [p for p in prompts if p.mode == "video"]
    assert len(coarse) == len(report["passes"]) >= 2
    last = report["passes"][-1]
    assert last["origin"] >= 2.0  # the last window (1 fps: 3 s long) starts late in the 6 s clip
    return coarse[-1], last


def test_qwen3_markers_in_the_encoded_prompt_are_the_window_relative_times(videos, tiny_models):
    from keyframe_qa import load_model
    from tests.helpers import _patch_times

    engine = load_model(tiny_models("qwen3-vl"))
    prompt, last = _late_window_prompt(videos, engine)
    inputs = engine._encode_rows([(prompt, "When?", engine.model_inputs(prompt))])
    text = engine.tokenizer.decode(inputs["input_ids"][0].tolist())
    markers = [float(value) for value in re.findall(r"<([0-9.]+) seconds>", text)]
    told = [round(t, 6) for t in prompt.times]
    assert told[0] == 0 and told == [round(t, 6) for t in told]
    expected = _patch_times(told)
    assert len(markers) == len(expected) == 2
    assert all(abs(m - e) <= 0.05 + 1e-9 for m, e in zip(markers, expected)), (markers, expected)
    # Told from the window's start: the frames' real times less the window's first frame's time.
    real = [last["origin"] + t for t in told]
    assert real[0] == pytest.approx(last["origin"]) and real[-1] <= 6.0
    assert "0:00:00.000" in text and "0:00:05" not in text  # the times text says the same


def test_qwen25_temporal_position_ids_follow_the_window_relative_seconds(videos, tiny_models):
    import torch

    from keyframe_qa import load_model

    engine = load_model(tiny_models("qwen2.5-vl"))
    prompt, _ = _late_window_prompt(videos, engine)
    inputs = engine._encode_rows([(prompt, "When?", engine.model_inputs(prompt))])
    with torch.no_grad():
        positions, _ = engine.model.model.get_rope_index(
            inputs["input_ids"],
            inputs["mm_token_type_ids"],
            video_grid_thw=inputs["video_grid_thw"],
            second_per_grid_ts=inputs["second_per_grid_ts"],
            attention_mask=inputs["attention_mask"],
        )
    video = inputs["mm_token_type_ids"][0] == 2
    temporal = positions[0, 0][video]
    base = int(temporal.min())
    per_second = engine.model.config.vision_config.tokens_per_second
    patches = sorted({int(t) - base for t in temporal.tolist()})
    told = list(prompt.times) + list(prompt.times[-1:]) * (len(prompt.times) % 2)
    starts = told[::2]  # each temporal patch begins at its first frame's time
    assert len(patches) == len(starts) == 2
    assert [p / per_second for p in patches] == pytest.approx(starts, abs=1 / per_second)
    assert starts[0] == 0 and starts[1] == pytest.approx(2.0, abs=0.05)  # 1 fps: a patch every two seconds


@pytest.mark.parametrize(
    "model, extra, fragment, exit_code",
    [
        ("qwen2-vl", [], "needs Qwen2.5-VL or Qwen3-VL", 2),
        # A server that is not there is found out by the video check, before any frame is read.
        ("qwen2.5-vl", ["--engine", "openai", "--base-url", "http://127.0.0.1:9/v1"], "cannot reach the server", 1),
    ],
)
def test_video_mode_is_refused_where_it_cannot_work(capsys, clips, tiny_models, model, extra, fragment, exit_code):
    code, _, err = run(
        capsys, "when", clips["short.mp4"], "x", "--mode", "video", "--model", tiny_models(model), *extra
    )
    assert code == exit_code
    assert_one_line_error(err, fragment)


def test_the_real_engine_in_video_mode(capsys, videos, tiny_models):
    code, out, err = run(
        capsys,
        "when",
        videos["plain.mp4"],
        "a red square",
        "--mode",
        "video",
        "--model",
        tiny_models("qwen3-vl"),
        "--max-new-tokens",
        "8",
        "--window-frames",
        "4",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["model"]["mode"] == "video" and all(p["mode"] == "video" for p in report["passes"])
    for moment in report["moments"]:
        assert 0 <= moment["first_frame"]["frame_number"] <= moment["last_frame"]["frame_number"] < 60


def test_a_proposal_no_probe_confirms_is_rejected(clips):
    class Imagining(PixelOracle):
        """A coarse pass that also names a span where nothing happens (as a model told to find times may)."""

        def answer(self, prompt, questions, settings):
            replies = super().answer(prompt, questions, settings)
            if len(prompt.images) > 1 and prompt.times[-1] >= 16:
                from dataclasses import replace

                text = replies[0].raw.replace("never", "") + "\nfrom 16.0 to 18.0 seconds"
                return [replace(replies[0], raw=text, text=text)]
            return replies

    report = find_moments(WhenRequest(video=clips["short.mp4"], query="x"), engine=Imagining(47, 133))
    (moment,) = report["moments"]
    assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (47, 133)
    (rejected,) = report["rejected"]
    assert rejected["coarse"] == [16.0, 18.0] and "no probed frame showed it" in rejected["reason"]
    assert rejected["probes"] > 0


@pytest.mark.parametrize("frames", [1, 3])
def test_a_video_shorter_than_one_window(tmp_path, frames):
    path = str(tmp_path / "tiny.mp4")
    write_video(path, SyntheticSpec(frame_count=frames, fps=10))
    for mode in ("images", "video"):
        report = find_moments(
            WhenRequest(video=path, query="x", mode=mode), engine=PixelOracle(0, frames - 1, family="qwen3-vl")
        )
        (moment,) = report["moments"]
        assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (0, frames - 1)
        (only,) = report["passes"]
        assert only["mode"] == (mode if frames > 1 else "images")


class Thinking(PixelOracle):
    """A thinking model: it reasons (naming wrong times) before its answer; `cut` stops it inside the reasoning,
    which names the true span."""

    def __init__(self, first, last, cut=False):
        super().__init__(first, last)
        self.cut = cut

    def answer(self, prompt, questions, settings):
        from dataclasses import replace

        replies = super().answer(prompt, questions, settings)
        if len(prompt.images) == 1:
            return replies
        text = replies[0].raw
        text = (
            f"<think>Looking at the frames, I believe it is {text}, but let me che"
            if self.cut
            else f"<think>Maybe from 0.0 to 0.5 seconds? No.</think>\n{text}"
        )
        return [replace(replies[0], raw=text, text=text, truncated=self.cut)]


@pytest.mark.parametrize("cut", [False, True])
def test_a_thinking_models_answer_counts_and_a_cut_reasoning_is_said(clips, cut):
    report = find_moments(WhenRequest(video=clips["short.mp4"], query="x"), engine=Thinking(47, 133, cut=cut))
    (moment,) = report["moments"]
    assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (47, 133)
    (only,) = report["passes"]
    assert only["truncated"] is cut
    assert ("thinking" in only) is cut
    if cut:
        assert "inside its reasoning" in only["thinking"]


def test_a_server_that_claims_the_query_everywhere_is_bounded_by_the_windows(tmp_path, capsys):
    clip = str(tmp_path / "thirty.mp4")  # 30 fps: a probe gap of 30 frames, 5 bisections a boundary
    write_video(clip, SyntheticSpec(frame_count=1800, fps=30, gop=30, width=160, height=120))

    class Everywhere(PixelOracle):
        """Names a short span every 1.2 s of every window (too far apart to merge), and answers probes at random
        (yes or no by a hash of the frame's number): every span is a moment to refine, none quickly."""

        def answer(self, prompt, questions, settings):
            from dataclasses import replace

            replies = super().answer(prompt, questions, settings)
            if len(prompt.images) == 1:
                return replies
            length = prompt.times[-1] - prompt.times[0]
            text = "\n".join(f"from {k * 1.2:.2f} to {k * 1.2 + 0.01:.2f} seconds" for k in range(int(length / 1.2)))
            return [replace(replies[0], raw=text, text=text)]

        def yes_probability(self, prompt, question):
            from keyframe_qa.testing.synthetic import read_frame_number

            return float((read_frame_number(prompt.images[0]) * 2654435761 >> 9) % 2)

    report = find_moments(WhenRequest(video=clip, query="x", window_frames=64), engine=Everywhere(0, 0), progress=True)
    windows = len(report["passes"])
    limit = report["probe_limit"]
    assert limit["limit"] == max(256, 64 * windows) and limit["reached"] is True
    probes = report["usage"]["calls"] - windows
    assert probes <= limit["limit"]
    assert any("probe limit was reached" in (m["reason"] or "") for m in report["moments"])
    err = capsys.readouterr().err
    assert "warning: when: the probe limit was reached: 256 probes for 1 window" in err
    assert "moments keep their coarse boundaries" in err
    assert f"when: {windows} call for the coarse pass" in err and "at most 256" in err


def test_when_shows_its_plan_and_progress(capsys, clips, monkeypatch):
    import keyframe_qa.console as console

    monkeypatch.setattr(console, "LOG_INTERVAL_S", 0.0)
    report = find_moments(
        WhenRequest(video=clips["long.mkv"], query="x", window_frames=16), engine=PixelOracle(300, 520), progress=True
    )
    err = capsys.readouterr().err
    windows = len(report["passes"])
    assert f"{windows} calls for the coarse pass" in err and "about 14 single-frame probes" in err
    assert "the first call took" in err and "the coarse pass takes about" in err
    # In a log (stderr is not a terminal) a line now and then, with the calls made of those planned.
    assert f"when: coarse pass: {windows}/{windows} calls" in err or f"when: coarse pass: {windows - 1}/" in err
    assert "when: probes:" in err
    quiet = find_moments(WhenRequest(video=clips["short.mp4"], query="x"), engine=PixelOracle(47, 133))
    assert quiet["moments"] and capsys.readouterr().err == ""


def test_ask_when_without_questions_is_the_search_alone(clips):
    # What `eval` runs for a span row: the moments in ask's shape, no frames asked about; in video mode too.
    from keyframe_qa import AskRequest, UsageError, ask

    for mode, family in (("images", "qwen2-vl"), ("video", "qwen2.5-vl")):
        report = ask(
            AskRequest(video=clips["short.mp4"], questions=(), when="the marker", mode=mode),
            engine=PixelOracle(47, 133, family=family),
        )
        (moment,) = report["when"]["moments"]
        assert (moment["first_frame"]["frame_number"], moment["last_frame"]["frame_number"]) == (47, 133)
        assert report["answers"] == [] and report["frames"] == []
    with pytest.raises(UsageError, match="without --per-frame and --mode video"):
        ask(
            AskRequest(video=clips["short.mp4"], questions=("q",), when="the marker", mode="video"),
            engine=PixelOracle(47, 133, family="qwen2.5-vl"),
        )
