"""Hostile output paths, run as this user (root in CI) and as an unprivileged user.

Every case snapshots every file around it (devices, FIFOs, links, the input video, bystanders) and
checks that nothing it was not asked to write changed by a byte, that device nodes stay devices, and
that a refusal is one `Error:` line with its exit code. As root, the unprivileged runs fork, drop to
`nobody` with setgid/setuid and then run the CLI; as a normal user they run as that user.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tempfile
import threading

import pytest

from keyframe_qa.cli import main

NOBODY = 65534
IS_ROOT = os.geteuid() == 0
USERS = ["self", "nobody"] if IS_ROOT else ["self"]


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

    import keyframe_qa.jobs.batch  # noqa: F401
    import keyframe_qa.model.checkpoint  # noqa: F401
    import keyframe_qa.jobs.compare  # noqa: F401
    import keyframe_qa.jobs.compare_config  # noqa: F401
    import keyframe_qa.outputs.html  # noqa: F401
    import keyframe_qa.jobs.ask  # noqa: F401
    import keyframe_qa.outputs.results_file  # noqa: F401
    import keyframe_qa.selection.scenes  # noqa: F401


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


@pytest.fixture()
def sandbox(videos, tiny_model):
    """A folder any user can work in, holding the hostile paths; removed afterwards."""
    root = tempfile.mkdtemp(prefix="kfqa-hostile-", dir="/tmp")
    os.chmod(root, 0o777)
    video = os.path.join(root, "v.mp4")
    shutil.copy(videos["cut.mp4"], video)
    os.chmod(video, 0o644)
    with open(os.path.join(root, "existing.mp4"), "wb") as handle, open(video, "rb") as source:
        handle.write(source.read())
    with open(os.path.join(root, "notes.txt"), "w") as handle:
        handle.write("my notes\nthe last line has no newline")
    with open(os.path.join(root, "target.json"), "w") as handle:
        handle.write("old target\n")
    os.symlink("target.json", os.path.join(root, "link.json"))
    os.symlink("v.mp4", os.path.join(root, "video-link.json"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.chmod(os.path.join(root, "fifo"), 0o666)
    readonly = os.path.join(root, "readonly")
    os.mkdir(readonly)
    os.chmod(readonly, 0o555)
    for name in ("existing.mp4", "notes.txt", "target.json"):
        os.chmod(os.path.join(root, name), 0o666)  # writable by all: only our care keeps them intact
    if IS_ROOT:  # a block device node for a loop device that does not exist: harmless if opened
        os.mknod(os.path.join(root, "block"), stat.S_IFBLK | 0o666, os.makedev(7, 250))
    yield root
    os.chmod(readonly, 0o755)
    shutil.rmtree(root, ignore_errors=True)


def watched(root: str) -> list[str]:
    names = sorted(os.listdir(root))
    return [os.path.join(root, n) for n in names] + ["/dev/null", "/dev/full", root]


def check_refusal(code, out, err, exit_code, fragment):
    assert code == exit_code, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], err
    assert "Traceback" not in err


REFUSALS = [
    # (arguments, exit code, fragment): each refused before any video is decoded or a model loaded
    # (--model points nowhere: had it been looked at, the error would be about the model).
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "-o", "v.mp4"], 2, "is an input of this run"),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "-o", "video-link.json"], 2, "is an input"),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "--html", "v.mp4"], 2, "is an input"),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "-o", "readonly/out.json"], 2, None),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "-o", "notes.txt/out.json"], 2, "is a file"),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "-o", "a.json", "--html", "a.json"], 2,
     "would both write"),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "--save-frames", "notes.txt"], 2, "is a file"),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "-o", "."], 2, "is a folder"),
    (["scenes", "v.mp4", "--no-cache", "-o", "v.mp4"], 2, "is an input"),
    (["frames", "v.mp4", "--at", "1", "--out", "notes.txt"], 2, "is a file, not a folder"),
    (["frames", "v.mp4", "--at", "1", "--out", "readonly/frames"], 2, None),
    (["batch", "v.mp4", "-q", "q", "--at", "1", "--model", "/no/model", "-o", "existing.mp4"], 2,
     "is not a keyframe-qa results file"),
    (["batch", "v.mp4", "-q", "q", "--at", "1", "--model", "/no/model", "-o", "notes.txt"], 2,
     "is not a keyframe-qa results file"),
    (["batch", "v.mp4", "-q", "q", "--at", "1", "--model", "/no/model", "-o", "notes.txt", "--overwrite"], 2,
     "is not a keyframe-qa results file"),
    (["batch", "v.mp4", "-q", "q", "--at", "1", "--model", "/no/model", "-o", "v.mp4"], 2, "is an input"),
]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("args, exit_code, fragment", REFUSALS,
                         ids=[f"{a[0]}-{'-'.join(a[-2:])}" for a, _, _ in REFUSALS])
def test_hostile_outputs_are_refused_up_front_and_nothing_changes(sandbox, user, args, exit_code, fragment):
    as_root = user == "self" and IS_ROOT
    if "readonly" in " ".join(args):
        if as_root:
            pytest.skip("a read-only folder is writable for root")
        fragment = "not writable (permission denied)"
    before = snapshot(watched(sandbox))
    code, out, err = run_cli(user, args, sandbox)
    check_refusal(code, out, err, exit_code, fragment)
    assert out == ""
    after = snapshot(watched(sandbox))
    assert after == before


def test_a_block_device_is_refused(sandbox):
    if not IS_ROOT:
        pytest.skip("making a device node needs root")
    before = snapshot(watched(sandbox))
    for user in USERS:
        code, out, err = run_cli(user, ["scenes", "v.mp4", "--no-cache", "-o", "block"], sandbox)
        check_refusal(code, out, err, 2, "is a block device")
    assert snapshot(watched(sandbox)) == before


@pytest.mark.parametrize("user", USERS)
def test_devices_are_written_into_never_replaced(sandbox, user, tiny_model):
    before = snapshot(watched(sandbox))
    code, out, err = run_cli(user, ["scenes", "v.mp4", "--no-cache", "-o", "/dev/null"], sandbox)
    assert code == 0, err
    code, out, err = run_cli(user, ["scenes", "v.mp4", "--no-cache", "-o", "/dev/full"], sandbox)
    check_refusal(code, out, err, 1, "no space left on device")
    # A batch into /dev/full: nothing is read from it (that read once grew to 24 GB); the first line
    # written (notes.txt is no video: an error line, so no model is loaded) fails with one line.
    model = _readable_copy(tiny_model, os.path.join(sandbox, "model"))
    code, out, err = run_cli(user, ["batch", "notes.txt", "-q", "q", "--at", "1", "--model", model,
                                    "-o", "/dev/full"], sandbox)
    check_refusal(code, out, err, 1, "cannot write /dev/full: no space left on device")
    after = snapshot(watched(sandbox))
    after.pop(model), before.pop(model, None), after.pop(sandbox), before.pop(sandbox)
    assert after == before  # /dev/null and /dev/full are still the same devices


def _readable_copy(model: str, target: str) -> str:
    shutil.copytree(model, target)
    os.chmod(target, 0o755)
    for name in os.listdir(target):
        os.chmod(os.path.join(target, name), 0o644)
    return target


def test_a_writable_file_in_a_read_only_folder_is_rewritten_in_place(sandbox):
    user = "nobody" if IS_ROOT else "self"
    report = os.path.join(sandbox, "readonly", "report.json")
    os.chmod(os.path.dirname(report), 0o755)
    with open(report, "w") as handle:
        handle.write("previous report\n")
    os.chmod(report, 0o666)
    os.chmod(os.path.dirname(report), 0o555)
    code, out, err = run_cli(user, ["scenes", "v.mp4", "--no-cache", "-o", "readonly/report.json"], sandbox)
    assert code == 0, err
    with open(report) as handle:
        assert len(json.load(handle)["scenes"]) == 2
    assert os.listdir(os.path.dirname(report)) == ["report.json"]  # no temporary file could be, or was, left


@pytest.mark.parametrize("user", USERS)
def test_a_fifo_and_stdout_get_the_json_and_stay_what_they_are(sandbox, user):
    before = snapshot(watched(sandbox))
    received = []
    fifo = os.path.join(sandbox, "fifo")
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    try:
        code, out, err = run_cli(user, ["scenes", "v.mp4", "--no-cache", "-o", "fifo"], sandbox)
    finally:
        if not received:  # the run never opened the FIFO: open it so the reader is not stuck
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=60)
    assert code == 0, err
    assert len(json.loads(received[0])["scenes"]) == 2
    for name in ("-", "/dev/stdout"):
        code, out, err = run_cli(user, ["scenes", "v.mp4", "--no-cache", "-o", name], sandbox)
        assert code == 0, err
        assert len(json.loads(out)["scenes"]) == 2
    assert snapshot(watched(sandbox)) == before


@pytest.mark.parametrize("user", USERS)
def test_a_symlink_is_followed_and_kept(sandbox, user):
    before = snapshot(watched(sandbox))
    link, target = os.path.join(sandbox, "link.json"), os.path.join(sandbox, "target.json")
    code, out, err = run_cli(user, ["scenes", "v.mp4", "--no-cache", "-o", "link.json"], sandbox)
    assert code == 0, err
    assert os.path.islink(link) and os.readlink(link) == "target.json"
    with open(target) as handle:
        assert len(json.load(handle)["scenes"]) == 2
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666  # an existing file keeps its permissions
    after = snapshot(watched(sandbox))
    changed = {path for path in after if after[path] != before[path]}
    assert changed == {target}


def test_a_read_only_output_file_is_refused_for_a_normal_user(sandbox):
    user = "nobody" if IS_ROOT else "self"
    locked = os.path.join(sandbox, "locked.json")
    with open(locked, "w") as handle:
        handle.write("keep me\n")
    os.chmod(locked, 0o444)
    before = snapshot(watched(sandbox))
    code, out, err = run_cli(user, ["scenes", "v.mp4", "--no-cache", "-o", "locked.json"], sandbox)
    check_refusal(code, out, err, 2, "read-only")
    assert snapshot(watched(sandbox)) == before


def test_an_unwritable_folder_is_refused_before_the_model_loads(sandbox, tiny_model):
    """The user's report: answers were generated, then -o failed. Now nothing runs."""
    user = "nobody" if IS_ROOT else "self"
    model = _readable_copy(tiny_model, os.path.join(sandbox, "model"))
    code, out, err = run_cli(user, ["ask", "v.mp4", "q", "--at", "1", "--model", model, "-o", "readonly/a.json"],
                             sandbox)
    check_refusal(code, out, err, 2, "readonly is not writable")
    assert os.listdir(os.path.join(sandbox, "readonly")) == []


def test_unreadable_weights_say_permission_denied(sandbox, tiny_model):
    user = "nobody" if IS_ROOT else "self"
    model = _readable_copy(tiny_model, os.path.join(sandbox, "model"))
    weights = next(n for n in os.listdir(model) if n.endswith(".safetensors"))
    os.chmod(os.path.join(model, weights), 0o600 if IS_ROOT else 0o000)
    code, out, err = run_cli(user, ["ask", "v.mp4", "q", "--at", "1", "--model", model], sandbox)
    check_refusal(code, out, err, 1, "permission denied")
    assert weights in err and "No such file" not in err
