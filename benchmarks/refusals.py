"""Benchmark: how fast, and in how little memory, requests that cannot work are refused.

    uv run python benchmarks/refusals.py

Each case is a whole `keyframe-qa` process on the 12 s sample clip with the tiny checkpoint the tests
use (built once in .bench/). It prints the exit code, wall time and the child's peak RSS, and checks the
refusal is one `Error:` line with exit 2 (or 1 for an output that cannot take the bytes). The peer here is
the request done the way it was before the checks existed: the numbers from the issue's report are printed
beside each case (they were measured on the same kind of 2-core machine).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VIDEO = os.path.join(ROOT, "sample_videos", "scenes.mp4")
TIMES = ",".join(f"{i * 0.001:.3f}" for i in range(10000))
# (name, arguments after `ask VIDEO q`, expected exit code, what the issue reported before)
CASES = [
    ("--fps 1e9", ["--fps", "1e9"], 2, "memory grew without limit"),
    (
        "--candidates 1e9",
        ["--relevant", "4", "--candidates", "1e9"],
        2,
        "looped duration x rate times, printed nothing",
    ),
    ("--every 0.000001", ["--every", "0.000001"], 2, "47 s, 2.3 GB before the usage error"),
    ("--num-frames 1000000", ["--num-frames", "1000000"], 2, "17 s, 1.2 GB before the usage error"),
    ("--at with 10,000 times", ["--at", TIMES], 2, "accepted: a 259k-token prompt, no warning"),
    (
        "prompt over the context",
        ["--num-frames", "100", "--min-pixels", "1000000", "--max-visual-tokens", "1000000"],
        2,
        "decoded, loaded, then failed in the model",
    ),
    ("400-digit --num-frames", ["--num-frames", "9" * 400], 2, "unexpected OverflowError, exit 1"),
    ("-o the input video", ["--at", "1", "-o", VIDEO], 2, "replaced the input video"),
    ("-o /dev/full", ["--at", "1", "-o", "/dev/full"], 1, "as root: replaced the device node"),
    ("5,000-digit --at", ["--at", "1" + "0" * 5000 + ":00:00"], 2, "unexpected ValueError, exit 1"),
]
BIG_QUESTION = "why? " * 26_000  # 130,000 bytes: about as long as one argument may be on Linux
MANIFEST_QUESTION_BYTES = 10_000_000


class _EndlessReply(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible URL whose reply body never ends (bounded: it stops after 60 s)."""

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                self.wfile.write(b"[" * 65536)
        except OSError:
            pass


# Runs one command and reports that child's own peak RSS (KB) as its last stderr line: each case gets
# a fresh RUSAGE_CHILDREN, so one case's peak never hides another's.
_MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
)


def run_case(
    args: list[str], model: str, *, video: str = VIDEO, question: str = "q", command: list[str] = None
) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MB, the last line the CLI printed on stderr)."""
    command = command or [
        sys.executable,
        "-m",
        "keyframe_qa",
        "ask",
        video,
        question,
        "--model",
        model,
        "--max-new-tokens",
        "2",
        *args,
    ]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    lines = result.stderr.strip().splitlines()
    return result.returncode, wall, int(lines[-1]) / 1024, lines[-2] if len(lines) > 1 else ""


def main() -> None:
    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

    cache = os.path.join(ROOT, ".bench")
    os.makedirs(cache, exist_ok=True)
    model = os.path.join(cache, "tiny-qwen2-vl")
    if not os.path.exists(os.path.join(model, "config.json")):
        build_tiny_checkpoint(model, "qwen2-vl")
    before = open(VIDEO, "rb").read()
    print(f"{'case':28} {'exit':>4} {'wall s':>7} {'peak MB':>8}  before the checks")
    for name, args, expected, earlier in CASES:
        code, wall, peak, line = run_case(args, model)
        assert code == expected and line.startswith("Error: "), (name, code, line)
        print(f"{name:28} {code:>4} {wall:7.2f} {peak:8.0f}  {earlier}")
    for name, result, earlier in _round_two(model, cache):
        code, wall, peak, line = result
        print(f"{name:28} {code:>4} {wall:7.2f} {peak:8.0f}  {earlier}")
    assert open(VIDEO, "rb").read() == before, "the input video changed"
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full"), "/dev/full is no longer a device"
    print("every case refused with one Error line; the input video and /dev/full are unchanged")


def _round_two(model: str, cache: str):
    """The cases of the second hostile round: huge text on every input path, Matroska, an endless reply."""
    from keyframe_qa.testing.synthetic import SyntheticSpec, write_video

    mkv = os.path.join(cache, "long.mkv")
    if not os.path.exists(mkv):
        write_video(mkv, SyntheticSpec(frame_count=3000, fps=25, width=320, height=240, gop=50))
    result = run_case(["--at", "1"], model, question=BIG_QUESTION)
    assert result[0] == 2 and "a question takes at least" in result[3], result
    yield "128 KB question", result, "refused only after the model loaded"
    result = run_case(["--at", TIMES], model, video=mkv)
    assert result[0] == 2 and "10000 times" in result[3], result
    yield "10,000 --at on Matroska", result, "refused after decoding and the model load"

    manifest = os.path.join(cache, "huge-question.jsonl")
    with open(manifest, "w") as handle:
        handle.write(json.dumps({"video": VIDEO, "at": 1, "question": "x" * MANIFEST_QUESTION_BYTES}) + "\n")
    output = os.path.join(cache, "huge-question-results.jsonl")
    if os.path.exists(output):
        os.unlink(output)
    result = run_case(
        [], model, command=[sys.executable, "-m", "keyframe_qa", "batch", manifest, "--model", model, "-o", output]
    )
    (line,) = [json.loads(text) for text in open(output)]
    assert result[0] == 1 and line["status"] == "error" and "a question takes at least" in line["error"], result
    yield "10 MB manifest question", result, "46 s, 3.4 GB before its row error"

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndlessReply)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        result = run_case(["--at", "1", "--engine", "openai", "--base-url", url, "--family", "qwen2-vl"], "served")
    finally:
        server.shutdown()
    assert result[0] == 1 and "larger than 16 MiB" in result[3], result
    yield "endless server reply", result, "5.9 GB in 20-30 s, still reading"


if __name__ == "__main__":
    main()
