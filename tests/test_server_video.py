"""Video mode through a server: the exact frames as one video, with their true times, to vLLM only.

The path under test is the client's (engines/openai.py): what it sends, and what it refuses before any frame
is sent. `_VideoFront` stands where vLLM's front end stands, and reads a request as vLLM 0.32 does
(multimodal/media/video.py: each comma-separated part of a `data:video/jpeg` URL decoded with PIL, the
metadata from `media_io_kwargs` checked as vLLM checks it), then counts the prompt with the checkpoint's own
processor, the reference vLLM follows. Real vLLM runs the same path in the slow tier (test_vllm_video.py); the
real `transformers serve` is refused here.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, run

# vLLM's refusal of media_io_kwargs from a server started without --trust-request-mm-kwargs, word for word.
UNTRUSTED = (
    "Per-request media_io_kwargs are disabled by default because they can change multimodal media loading "
    "resource usage. Start the server with --trust-request-mm-kwargs only when clients are trusted."
)


class _VideoFront:
    """An OpenAI-shaped server that reads a video request as vLLM does, and records what it was sent."""

    def __init__(self, model: str, *, owner: str = "vllm", trusted: bool = True):
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model)
        self.model, self.owner, self.trusted = model, owner, trusted
        self.videos: list[tuple[np.ndarray, dict]] = []  # each video request's frames and media_io_kwargs
        self.posts = 0
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                front._send(
                    self,
                    200,
                    {"object": "list", "data": [{"id": front.model, "object": "model", "owned_by": front.owner}]},
                )

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                front.posts += 1
                if body.get("media_io_kwargs") and not front.trusted:
                    front._send(
                        self,
                        400,
                        {
                            "error": {
                                "message": UNTRUSTED,
                                "type": "BadRequestError",
                                "param": "media_io_kwargs",
                                "code": 400,
                            }
                        },
                    )
                    return
                front._send(self, 200, front._complete(body))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _complete(self, body: dict) -> dict:
        from PIL import Image
        from transformers.video_utils import VideoMetadata

        content = body["messages"][0]["content"]
        content = content if isinstance(content, list) else [{"type": "text", "text": content}]
        messages, images, videos, metadata = [], [], [], []
        for part in content:
            if part["type"] == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
                messages.append({"type": "image"})
            elif part["type"] == "video_url":
                head, data = part["video_url"]["url"].split(",", 1)
                assert head == "data:video/jpeg;base64"
                frames = np.stack(
                    [
                        np.asarray(Image.open(io.BytesIO(base64.b64decode(piece))).convert("RGB"))
                        for piece in data.split(",")
                    ]
                )
                told = body["media_io_kwargs"]["video"]
                # vLLM's own checks of the metadata (it refuses the request otherwise).
                assert told["num_frames"] == -1
                assert all(isinstance(i, int) for i in told["frames_indices"])
                assert len(told["frames_indices"]) == len(frames) <= told["total_num_frames"]
                self.videos.append((frames, told))
                videos.append(frames)
                metadata.append(
                    VideoMetadata(**{k: told[k] for k in ("fps", "frames_indices", "total_num_frames", "duration")})
                )
                messages.append({"type": "video"})
            else:
                messages.append({"type": "text", "text": part["text"]})
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": messages}], tokenize=False, add_generation_prompt=True
        )
        kwargs: dict = {"videos": videos, "video_metadata": metadata, "do_sample_frames": False} if videos else {}
        if images:
            kwargs["images"] = images
        tokens = len(self.processor(text=[text], return_tensors="np", **kwargs)["input_ids"][0])
        return {
            "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": tokens, "completion_tokens": 1},
        }

    @staticmethod
    def _send(handler, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def front(request):
    made = []

    def make(model: str, **kwargs) -> _VideoFront:
        made.append(_VideoFront(model, **kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


def served(url: str) -> list[str]:
    return ["--engine", "openai", "--base-url", url]


@pytest.mark.parametrize(
    "family, selection",
    [
        ("qwen2.5-vl", ["--fps", "2"]),  # even frames
        ("qwen2.5-vl", ["--at", "0.3,1,1.1,4.2,5"]),  # uneven, and an odd count (the last frame fills its patch)
        ("qwen3-vl", ["--at", "0.3,1,1.1,4.2,5"]),  # the times printed as text, to the tenth of a second
        ("qwen2-vl", ["--at", "0.5,2.5", "--per-frame"]),  # one-frame videos
    ],
)
def test_video_mode_sends_the_exact_frames_and_their_true_times(capsys, videos, tiny_models, front, family, selection):
    from transformers.video_utils import VideoMetadata

    from keyframe_qa import load_model
    from keyframe_qa.model.time_positions import sampling_rate

    model = tiny_models(family)
    server = front(model)
    common = [
        videos["plain.mp4"],
        "What happens?",
        *selection,
        "--mode",
        "video",
        "--model",
        model,
        "--max-new-tokens",
        "2",
    ]
    code, out, err = run(capsys, "ask", *common, *served(server.url))
    assert code == 0, err
    report = json.loads(out)
    code, out, err = run(capsys, "ask", *common)
    assert code == 0, err
    local = json.loads(out)
    # The processor counted what our counter counted, and what the in-process engine fed its model.
    assert report["model"]["prompt_check"] == "exact"
    assert report["usage"]["prompt_tokens"] == local["usage"]["prompt_tokens"]
    assert report["model"].get("time_fidelity") == local["model"].get("time_fidelity")

    per_frame = "--per-frame" in selection
    times = [frame["timestamp"] for frame in report["frames"]]
    assert len(server.videos) == (len(times) if per_frame else 1)
    engine = load_model(model)
    for number, (frames, told) in enumerate(server.videos):
        shown = times[number : number + 1] if per_frame else times
        metadata = VideoMetadata(**{k: told[k] for k in ("fps", "frames_indices", "total_num_frames")})
        assert metadata.timestamps == pytest.approx(shown, abs=5e-7, rel=0)  # Qwen3-VL's times
        assert metadata.sampled_fps == sampling_rate(shown)  # Qwen2.5-VL's rate, to the bit
        # The pixels are the in-process engine's model inputs, exactly (PNG inside the jpeg-typed URL).
        from keyframe_qa import extract_frames
        from keyframe_qa.model.budget import plan_budget
        from keyframe_qa.model.prompt import build_prompt

        picked = extract_frames(videos["plain.mp4"], shown)
        budgets = plan_budget([(f.width, f.height) for f in picked], engine.family, mode="video")
        expected = engine.model_inputs(build_prompt(picked, budgets, "video"))
        assert frames.shape == (len(expected), *expected[0].shape)
        assert all(np.array_equal(mine, theirs) for mine, theirs in zip(expected, frames))


def test_video_mode_refuses_a_server_that_is_not_vllm(capsys, videos, tiny_model, openai_server):
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--at",
        "1,2",
        "--mode",
        "video",
        "--model",
        tiny_model,
        *served(openai_server),
    )
    assert code == 2 and out == ""
    assert_one_line_error(err, "--mode video with --engine openai needs a vLLM server")
    assert "use --mode images" in err


def test_video_mode_refuses_vllm_without_the_trust_flag_before_any_frame(capsys, videos, tiny_model, front):
    server = front(tiny_model, trusted=False)
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--at",
        "1,2",
        "--mode",
        "video",
        "--model",
        tiny_model,
        *served(server.url),
    )
    assert code == 2 and out == ""
    assert_one_line_error(err, "start vLLM with --trust-request-mm-kwargs for --mode video")
    assert server.videos == [] and server.posts == 2  # the reachability check, then the refused media_io_kwargs


def test_a_batch_in_video_mode_against_another_server_stops_at_once(capsys, videos, tiny_model, front, tmp_path):
    server = front(tiny_model, owner="sglang")
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
        "--model",
        tiny_model,
        *served(server.url),
        "-o",
        str(tmp_path / "out.jsonl"),
    )
    assert code == 2, err
    assert_one_line_error(err, "is not one (its /models says owned_by 'sglang'): use --mode images")
    assert "failed:" not in err and server.videos == []  # one refusal for the run, not one failure per video


def test_images_mode_needs_no_vllm(capsys, videos, tiny_model, front):
    # The check is video mode's alone: images go to any server, vLLM or not, trusted or not.
    server = front(tiny_model, owner="someone", trusted=False)
    code, out, err = run(
        capsys,
        "ask",
        videos["plain.mp4"],
        "q",
        "--at",
        "1,2",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        *served(server.url),
    )
    assert code == 0, err
