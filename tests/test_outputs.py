"""Hostile output paths, run as this user (root in CI) and as an unprivileged user.

Every case snapshots every file around it (devices, FIFOs, links, the input video, bystanders) and
checks that nothing it was not asked to write changed by a byte, that device nodes stay devices, and
that a refusal is one `Error:` line with its exit code. As root, the unprivileged runs fork, drop to
`nobody` with setgid/setuid and then run the CLI; as a normal user they run as that user.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading

import pytest

from tests.helpers import IS_ROOT, USERS, run_cli, snapshot, watched


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
    (
        ["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "-o", "a.json", "--html", "a.json"],
        2,
        "would both write",
    ),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "--save-frames", "notes.txt"], 2, "is a file"),
    (["ask", "v.mp4", "q", "--at", "1", "--model", "/no/model", "-o", "."], 2, "is a folder"),
    (["scenes", "v.mp4", "--no-cache", "-o", "v.mp4"], 2, "is an input"),
    (["frames", "v.mp4", "--at", "1", "--out", "notes.txt"], 2, "is a file, not a folder"),
    (["frames", "v.mp4", "--at", "1", "--out", "readonly/frames"], 2, None),
    (
        ["batch", "v.mp4", "-q", "q", "--at", "1", "--model", "/no/model", "-o", "existing.mp4"],
        2,
        "is not a keyframe-qa results file",
    ),
    (
        ["batch", "v.mp4", "-q", "q", "--at", "1", "--model", "/no/model", "-o", "notes.txt"],
        2,
        "is not a keyframe-qa results file",
    ),
    (
        ["batch", "v.mp4", "-q", "q", "--at", "1", "--model", "/no/model", "-o", "notes.txt", "--overwrite"],
        2,
        "is not a keyframe-qa results file",
    ),
    (["batch", "v.mp4", "-q", "q", "--at", "1", "--model", "/no/model", "-o", "v.mp4"], 2, "is an input"),
]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize(
    "args, exit_code, fragment", REFUSALS, ids=[f"{a[0]}-{'-'.join(a[-2:])}" for a, _, _ in REFUSALS]
)
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
    code, out, err = run_cli(
        user, ["batch", "notes.txt", "-q", "q", "--at", "1", "--model", model, "-o", "/dev/full"], sandbox
    )
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
    code, out, err = run_cli(
        user, ["ask", "v.mp4", "q", "--at", "1", "--model", model, "-o", "readonly/a.json"], sandbox
    )
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
