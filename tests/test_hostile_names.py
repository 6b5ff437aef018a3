"""Names keyframe-qa chooses itself (frame images in an output folder, cache entries), attacked as a
hostile user would: links planted at those names, inputs standing there, foreign or damaged cache
entries. Run as this user (root in CI) and as `nobody`, with every file around snapshotted."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from tests.helpers import IS_ROOT, NOBODY, USERS, run_cli, snapshot, watched

FRAME_AT_1 = "frame_000_000001.000s.png"  # the name `--at 1` gets in cut.mp4 (10 fps)


def _one_error(code, err, exit_code, fragment):
    assert code == exit_code, err
    lines = [line for line in err.strip().splitlines() if line and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], err
    assert "Traceback" not in err


def _out_folder(root: str) -> str:
    out = os.path.join(root, "out")
    os.mkdir(out)
    os.chmod(out, 0o777)
    return out


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("target", ["v.mp4", "notes.txt", "/dev/null"])
def test_frames_never_write_through_a_link_at_a_name_we_chose(sandbox, user, target):
    out = _out_folder(sandbox)
    os.symlink(target if target.startswith("/") else os.path.join("..", target), os.path.join(out, FRAME_AT_1))
    before = snapshot(watched(sandbox) + [os.path.join(out, FRAME_AT_1)])
    code, _, err = run_cli(user, ["frames", "v.mp4", "--at", "1", "--out", "out"], sandbox)
    _one_error(code, err, 1, "is a symlink")
    after = snapshot(watched(sandbox) + [os.path.join(out, FRAME_AT_1)])
    assert {k: v for k, v in after.items() if k != os.path.join(sandbox, "out")} == {
        k: v for k, v in before.items() if k != os.path.join(sandbox, "out")
    }
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("option", ["--save-frames", "--annotate"])
def test_ask_refuses_a_planted_frame_link_before_the_model_loads(sandbox, tiny_model, monkeypatch, option):
    import keyframe_qa.jobs.ask as pipeline

    out = _out_folder(sandbox)
    name = FRAME_AT_1 if option == "--save-frames" else FRAME_AT_1.replace(".png", "_annotated.png")
    os.symlink("../v.mp4", os.path.join(out, name))
    before = snapshot(watched(sandbox))

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(pipeline, "build_engine", no_model)
    code, _, err = run_cli(
        "self", ["ask", "v.mp4", "q", "--at", "1", "--model", tiny_model, option, "out", "-o", "a.json"], sandbox
    )
    _one_error(code, err, 1, "is a symlink")
    assert snapshot(watched(sandbox)) == {**before, os.path.join(sandbox, "out"): snapshot([out])[out]}
    assert not os.path.exists(os.path.join(sandbox, "a.json"))


@pytest.mark.parametrize("user", USERS)
def test_a_hard_link_to_the_input_at_a_frame_name_is_refused(sandbox, user):
    out = _out_folder(sandbox)
    os.link(os.path.join(sandbox, "v.mp4"), os.path.join(out, FRAME_AT_1))
    before = snapshot(watched(sandbox))
    code, _, err = run_cli(user, ["frames", "v.mp4", "--at", "1", "--out", "out"], sandbox)
    _one_error(code, err, 1, "is an input of this run")
    assert snapshot(watched(sandbox)) == before


def test_a_still_image_in_its_own_output_folder_is_not_overwritten(sandbox):
    import cv2
    import numpy as np

    out = _out_folder(sandbox)
    still = os.path.join(out, "frame_000_000000.000s.png")
    cv2.imwrite(still, np.full((48, 64, 3), 100, np.uint8))
    with open(still, "rb") as handle:
        original = handle.read()
    code, _, err = run_cli("self", ["frames", still, "--at", "0", "--out", "out"], sandbox)
    _one_error(code, err, 1, "is a still image (PNG), not a video")
    with open(still, "rb") as handle:
        assert handle.read() == original
    # A video that carries the name a frame would be written under is an input, never overwritten.
    from keyframe_qa.testing.synthetic import SyntheticSpec, write_video

    write_video(still + ".mp4", SyntheticSpec(frame_count=3))
    os.replace(still + ".mp4", still)
    with open(still, "rb") as handle:
        original = handle.read()
    code, _, err = run_cli("self", ["frames", still, "--at", "0", "--out", "out"], sandbox)
    _one_error(code, err, 1, "is an input of this run")
    with open(still, "rb") as handle:
        assert handle.read() == original


@pytest.mark.parametrize("user", USERS)
def test_rerunning_frames_replaces_our_own_files(sandbox, user):
    _out_folder(sandbox)
    for _ in range(2):
        code, _, err = run_cli(user, ["frames", "v.mp4", "--at", "1", "--out", "out"], sandbox)
        assert code == 0, err
    assert sorted(os.listdir(os.path.join(sandbox, "out"))) == [FRAME_AT_1, "frames.json"]


# --- the scene cache -------------------------------------------------------------------------------


@pytest.fixture()
def cache_root(sandbox, monkeypatch):
    root = os.path.join(sandbox, "cache")
    monkeypatch.setenv("KEYFRAME_QA_CACHE_DIR", root)
    return root


def _scenes(user, sandbox):
    code, out, err = run_cli(user, ["scenes", "v.mp4"], sandbox)
    assert code == 0, err
    return json.loads(out), err


def _entry(cache_root: str) -> str:
    (name,) = [n for n in os.listdir(os.path.join(cache_root, "scenes")) if n.endswith(".json")]
    return os.path.join(cache_root, "scenes", name)


@pytest.mark.parametrize("user", USERS)
def test_a_cache_entry_planted_as_a_link_is_replaced_never_followed(sandbox, cache_root, user):
    if user == "nobody":
        os.makedirs(cache_root)
        os.chmod(cache_root, 0o777)
    fresh, _ = _scenes(user, sandbox)
    entry = _entry(cache_root)
    assert stat.S_IMODE(os.stat(os.path.dirname(entry)).st_mode) == 0o700
    os.unlink(entry)
    os.symlink(os.path.join(sandbox, "notes.txt"), entry)
    before = snapshot(watched(sandbox))
    again, err = _scenes(user, sandbox)
    assert again["scenes"] == fresh["scenes"]
    assert f"ignoring the scenes cache entry {entry} (it is a symlink)" in err
    assert snapshot(watched(sandbox)) == {
        **before,
        os.path.join(sandbox, "cache"): before[os.path.join(sandbox, "cache")],
    }
    assert not os.path.islink(entry) and json.load(open(entry))["payload"]  # replaced by a real entry


@pytest.mark.parametrize(
    "tamper, why",
    [
        (lambda e: e["payload"][0].update(end_frame="twenty"), "is not an integer"),
        (lambda e: e["payload"][-1].update(end_frame=10**6), "past the video's last frame"),
        (lambda e: e["payload"].reverse(), "does not follow on"),
        (lambda e: e.update(key={"path": "/other/video.mp4"}), "not a keyframe-qa entry"),
        (lambda e: e.update(payload=None), "no scene list"),
        (lambda e: e.update(payload=[[[[]]]] * 3), "does not have the fields"),
    ],
    ids=["wrong-type", "past-the-end", "out-of-order", "foreign-key", "no-list", "nested"],
)
def test_a_wrong_cache_entry_is_ignored_with_one_warning_then_replaced(sandbox, cache_root, tamper, why):
    fresh, _ = _scenes("self", sandbox)
    entry = _entry(cache_root)
    with open(entry) as handle:
        record = json.load(handle)
    tamper(record)
    with open(entry, "w") as handle:
        json.dump(record, handle)
    again, err = _scenes("self", sandbox)
    assert again["scenes"] == fresh["scenes"]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and entry in warnings[0] and why in warnings[0], err
    _, err = _scenes("self", sandbox)
    assert "warning" not in err  # replaced: the next run reads it


def test_damaged_or_huge_cache_entries_are_ignored(sandbox, cache_root):
    fresh, _ = _scenes("self", sandbox)
    entry = _entry(cache_root)
    for content in (b"\x00" * 100, b"[" * 200_000, b"{}"):
        with open(entry, "wb") as handle:
            handle.write(content)
        again, err = _scenes("self", sandbox)
        assert again["scenes"] == fresh["scenes"] and f"ignoring the scenes cache entry {entry}" in err
    with open(entry, "wb") as handle:
        handle.truncate(65 * 1024 * 1024)
    again, err = _scenes("self", sandbox)
    assert again["scenes"] == fresh["scenes"] and "larger than 64 MiB" in err


def test_an_entry_too_large_to_be_read_back_is_not_written(cache_root, monkeypatch, capsys):
    from keyframe_qa.files import cache

    monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", 1024)
    cache.write_entry("relevance", "big.json", {"k": 1}, {"embeddings": "A" * 2048})
    assert not os.path.exists(os.path.join(cache_root, "relevance", "big.json"))
    assert "not caching this relevance entry" in capsys.readouterr().err
    cache.write_entry("relevance", "small.json", {"k": 1}, {"embeddings": "A" * 10})
    assert cache.read_entry("relevance", "small.json", {"k": 1}, lambda payload: payload) == {"embeddings": "A" * 10}


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give files to another user")
def test_cache_entries_and_folders_of_another_user_are_not_trusted(sandbox, cache_root):
    fresh, _ = _scenes("self", sandbox)
    entry = _entry(cache_root)
    os.chown(entry, NOBODY, NOBODY)
    again, err = _scenes("self", sandbox)
    assert again["scenes"] == fresh["scenes"] and "belongs to another user" in err
    shutil.rmtree(os.path.join(cache_root, "scenes"))
    os.makedirs(os.path.join(cache_root, "scenes"))
    os.chmod(os.path.join(cache_root, "scenes"), 0o777)  # a folder others could plant entries in
    again, err = _scenes("self", sandbox)
    assert again["scenes"] == fresh["scenes"] and "can be written by other users; not using it" in err
    assert os.listdir(os.path.join(cache_root, "scenes")) == []  # nothing written there either
    os.chmod(os.path.join(cache_root, "scenes"), 0o700)
    os.chown(os.path.join(cache_root, "scenes"), NOBODY, NOBODY)  # private, but someone else's
    again, err = _scenes("self", sandbox)
    assert again["scenes"] == fresh["scenes"] and f"belongs to another user (uid {NOBODY})" in err
    assert "can be written by other users" not in err


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("target", ["v.mp4", "notes.txt"])
def test_frames_json_is_never_written_through_a_link(sandbox, user, target):
    out = _out_folder(sandbox)
    os.symlink(os.path.join("..", target), os.path.join(out, "frames.json"))
    before = snapshot(watched(sandbox))
    code, _, err = run_cli(user, ["frames", "v.mp4", "--at", "1", "--out", "out"], sandbox)
    _one_error(code, err, 1, "is a symlink")
    assert snapshot(watched(sandbox)) == before
    assert os.listdir(out) == ["frames.json"]  # refused before a frame was written
