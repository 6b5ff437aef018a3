"""Record what every command prints on the sample videos, to show a refactor changed nothing.

    uv run python scripts/same_outputs.py save  /tmp/before   # on the old commit
    uv run python scripts/same_outputs.py check /tmp/before   # on the new one: exit 1 and a diff if any differ

Each case runs the CLI in a fresh process (a tiny random Qwen2-VL and a tiny SigLIP scorer, built with fixed
seeds) and keeps its exit code, its stdout (the JSON), the JSON files it wrote and its stderr lines, with the
working folder's path and every timing taken out: what is left must be byte for byte the same.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(HERE, "sample_videos")
# A fixed working folder, so that the paths the outputs name are the same in both runs before they are
# replaced by <work>.
WORK = os.path.join(tempfile.gettempdir(), "keyframe-qa-same-outputs")


def cases(model: str, scorer: str) -> list[tuple[str, list[str], list[str]]]:
    """(name, CLI arguments, files it writes) of every case."""
    scenes = os.path.join(SAMPLES, "scenes.mp4")
    phone = os.path.join(SAMPLES, "phone_rotated.mp4")
    bunny = os.path.join(SAMPLES, "bigbuckbunny.mp4")
    m = ["--model", model, "--max-new-tokens", "12"]
    config = os.path.join(WORK, "compare.yaml")
    return [
        ("frames", ["frames", scenes, "--at", "1,0:05.5", "--out", "frames"], []),
        ("frames-scenes", ["frames", bunny, "--scenes", "--max-side", "64", "--out", "frames2"], []),
        (
            "frames-relevant",
            ["frames", scenes, "--relevant", "3", "--query", "a red square", "--scorer", scorer, "--out", "frames3"],
            [],
        ),
        ("scenes", ["scenes", scenes], []),
        ("scenes-csv", ["scenes", bunny, "--detector", "adaptive", "--csv"], []),
        ("ask-at", ["ask", scenes, "--at", "1,6", "What changed?", "Which colour?", *m], []),
        ("ask-rotated", ["ask", phone, "--num-frames", "3", "Which way up?", *m, "--max-visual-tokens", "256"], []),
        (
            "ask-scenes-find",
            ["ask", bunny, "--scenes", "--max-scenes", "2", "--find", "a rabbit", *m, "--annotate", "annotated"],
            [],
        ),
        ("ask-video", ["ask", scenes, "--fps", "1", "--mode", "video", "What happens?", *m], []),
        (
            "ask-per-frame",
            [
                "ask",
                scenes,
                "--every",
                "3",
                "--per-frame",
                "What is it?",
                *m,
                "--sampling",
                "model",
                "--seed",
                "7",
                "--temperature",
                "0.8",
            ],
            [],
        ),
        ("ask-relevant", ["ask", scenes, "--relevant", "2", "--scorer", scorer, "Where is the red square?", *m], []),
        ("ask-default", ["ask", phone, "What is it?", *m, "-o", "ask.json"], ["ask.json"]),
        ("ask-when", ["ask", scenes, "--when", "the red square", "What colour?", *m, "--window-frames", "4"], []),
        ("when", ["when", scenes, "the background turns blue", *m, "--window-frames", "6"], []),
        ("when-seconds", ["when", bunny, "a rabbit", *m, "--precision", "0.5", "--no-refine"], []),
        (
            "batch",
            ["batch", SAMPLES, "-q", "What is it?", "--num-frames", "2", *m, "-o", "batch.jsonl"],
            ["batch.jsonl"],
        ),
        (
            "batch-resume",
            ["batch", SAMPLES, "-q", "What is it?", "--num-frames", "2", *m, "-o", "batch.jsonl"],
            ["batch.jsonl"],
        ),
        ("compare", ["compare", config, "-o", "compare.json"], ["compare.json"]),
        # Error paths: the line and the exit code.
        ("bad-time", ["ask", scenes, "--at", "1,x", "q", *m], []),
        ("past-end", ["ask", scenes, "--at", "99", "q", *m], []),
        ("two-selections", ["ask", scenes, "--at", "1", "--scenes", "q", *m], []),
        ("bad-top-p", ["ask", scenes, "--at", "1", "q", *m, "--top-p", "2"], []),
        ("missing-video", ["ask", os.path.join(WORK, "none.mp4"), "q", *m], []),
        ("when-no-query", ["when", scenes, "", *m], []),
    ]


def _config(model: str) -> None:
    with open(os.path.join(WORK, "compare.yaml"), "w") as handle:
        handle.write(f"""defaults:
  model: {model}
  max_visual_tokens: 512
  max_new_tokens: 12
comparisons:
  - name: the cut
    video: {os.path.join(SAMPLES, "scenes.mp4")}
    before: 2.0
    after: "0:06"
    questions: ["What changed?"]
    find: red square
  - name: two clips
    before_video: {os.path.join(SAMPLES, "phone_rotated.mp4")}
    after_video: {os.path.join(SAMPLES, "scenes.mp4")}
    before: 1.0
    after: 1.0
    questions: ["Same way up?"]
    overrides:
      max_new_tokens: 6
  - name: past the end
    video: {os.path.join(SAMPLES, "scenes.mp4")}
    before: 1.0
    after: 999
    questions: ["Anything?"]
""")


TIMING = re.compile(r"\b\d+(\.\d+)? ?(s|ms|videos/s)\b")


def _clean(value):
    """A JSON value with its timings taken out (keys named timings or ending in _s) and the videos'
    modification times."""
    if isinstance(value, dict):
        # Timings, and the videos' modification times (another checkout's), differ from run to run.
        return {
            key: _clean(item)
            for key, item in value.items()
            if key not in ("timings", "mtime_ns") and not key.endswith("_s")
        }
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _text(text: str) -> str:
    text = text.replace(WORK, "<work>").replace(HERE, "<repo>")
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.dumps(_clean(json.loads(line)), sort_keys=False))
            continue
        except ValueError:
            pass
        lines.append(TIMING.sub("<time>", line))
    if len(lines) > 1 and not all(line.startswith("{") for line in lines):
        try:  # a pretty-printed JSON document
            return json.dumps(_clean(json.loads(text)), indent=2)
        except ValueError:
            pass
    return "\n".join(lines)


def _digests(folder: str) -> list[str]:
    """name and SHA-256 of every file in `folder`: the frames must be the same pixels, byte for byte."""
    lines = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as handle:
            data = handle.read()
        if name.endswith(".json"):  # its timings and paths differ from run to run
            lines += [f"{name}:", _text(data.decode())]
        else:
            lines.append(f"{name} {hashlib.sha256(data).hexdigest()}")
    return lines


def run_all() -> dict[str, str]:
    """Every case's outputs, cleaned, by case name."""
    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint
    from keyframe_qa.testing.tiny_scorer import build_tiny_scorer

    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    model = build_tiny_checkpoint(os.path.join(WORK, "model"), "qwen2-vl", seed=0)
    scorer = build_tiny_scorer(os.path.join(WORK, "scorer"), "siglip", seed=0)
    _config(model)
    env = dict(
        os.environ,
        XDG_CACHE_HOME=os.path.join(WORK, "cache"),
        KEYFRAME_QA_DEBUG="",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        COLUMNS="100",
    )
    seen = {}
    for name, args, files in cases(model, scorer):
        done = subprocess.run(
            [sys.executable, "-m", "keyframe_qa", *args], cwd=WORK, env=env, capture_output=True, text=True, timeout=900
        )
        parts = [f"rc {done.returncode}", "--- stdout", _text(done.stdout)]
        for file in files:
            if not os.path.exists(os.path.join(WORK, file)):
                parts += [f"--- {file} (not written)"]
                continue
            with open(os.path.join(WORK, file)) as handle:
                parts += [f"--- {file}", _text(handle.read())]
        for folder in ("frames", "frames2", "frames3", "annotated"):
            if folder in args[1:] and os.path.isdir(os.path.join(WORK, folder)):
                parts += [f"--- {folder}/", *_digests(os.path.join(WORK, folder))]
        stderr = [
            line
            for line in done.stderr.splitlines()
            if not line.startswith(("warning: ", "Warning")) or "keyframe" in line
        ]
        parts += ["--- stderr", _text("\n".join(stderr))]
        seen[name] = "\n".join(parts) + "\n"
        print(f"{name}: rc {done.returncode}", file=sys.stderr)
    return seen


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("save", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    action, folder = sys.argv[1:]
    seen = run_all()
    if action == "save":
        os.makedirs(folder, exist_ok=True)
        for name, text in seen.items():
            with open(os.path.join(folder, name + ".txt"), "w") as handle:
                handle.write(text)
        print(f"saved {len(seen)} cases in {folder}")
        return 0
    differ = 0
    for name, text in seen.items():
        with open(os.path.join(folder, name + ".txt")) as handle:
            before = handle.read()
        if before != text:
            differ += 1
            sys.stdout.writelines(
                difflib.unified_diff(before.splitlines(True), text.splitlines(True), f"before/{name}", f"after/{name}")
            )
    print(f"{len(seen) - differ} of {len(seen)} cases the same")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
