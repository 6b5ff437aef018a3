"""Batch runs: every video gets a line, failures do not stop the run, reruns resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from keyframe_qa.errors import UsageError
from keyframe_qa.jobs.batch import iter_lines
from keyframe_qa.jobs.batch_inputs import collect_items, read_manifest
from tests.helpers import assert_one_line_error, clip_copies, run, wait_for_lines


@pytest.fixture()
def folder(tmp_path, videos):
    root = tmp_path / "clips"
    (root / "nested").mkdir(parents=True)
    shutil.copy(videos["plain.mp4"], root / "a.mp4")
    shutil.copy(videos["cut.mp4"], root / "nested" / "b.mp4")
    shutil.copy(videos["offset.mkv"], root / "c.mkv")
    (root / "broken.mp4").write_text("not a video")
    (root / "notes.txt").write_text("ignored: not a video extension")
    return root


def statuses(output):
    return {os.path.basename(r["video"]["path"]): r["status"] for r in iter_lines(output)}


def test_folder_with_a_corrupt_video_gives_a_line_for_every_video_and_exit_1(capsys, folder, tiny_model, tmp_path):
    output = tmp_path / "out.jsonl"
    code, out, err = run(
        capsys,
        "batch",
        str(folder),
        "-q",
        "What is it?",
        "--num-frames",
        "2",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "3",
        "-o",
        str(output),
    )
    assert code == 1
    assert statuses(output) == {"a.mp4": "ok", "b.mp4": "ok", "c.mkv": "ok", "broken.mp4": "error"}
    lines = list(iter_lines(output))
    broken = next(r for r in lines if r["status"] == "error")
    assert "not a readable video" in broken["error"] and set(broken) == {
        "schema_version",
        "video",
        "status",
        "error",
        "settings",
    }
    ok = next(r for r in lines if r["status"] == "ok")
    assert ok["schema_version"] == 1 and ok["answers"][0]["question"] == "What is it?" and ok["settings"]
    assert "3 answered, 1 failed" in err.strip().splitlines()[-1]


def test_rerun_skips_answered_videos_and_overwrite_starts_again(capsys, folder, tiny_model, tmp_path):
    output = tmp_path / "out.jsonl"
    args = [
        "batch",
        str(folder),
        "-q",
        "What?",
        "--at",
        "0.5",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(output),
    ]
    run(capsys, *args)
    code, out, err = run(capsys, *args)
    assert "0 answered, 1 failed, 3 already done" in err
    oks = Counter(r["video"]["path"] for r in iter_lines(output) if r["status"] == "ok")
    assert set(oks.values()) == {1}
    # Other settings are other work: the same videos are answered again.
    code, out, err = run(capsys, *args[:-2], "--max-new-tokens", "3", "-o", str(output))
    assert "3 answered" in err
    run(capsys, *args, "--overwrite")
    assert len(list(iter_lines(output))) == 4


def test_fail_fast_stops_at_the_first_failure(capsys, folder, tiny_model, tmp_path):
    output = tmp_path / "out.jsonl"
    code, out, err = run(
        capsys,
        "batch",
        str(folder / "broken.mp4"),
        str(folder / "a.mp4"),
        "-q",
        "q",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--fail-fast",
        "-o",
        str(output),
    )
    assert code == 1
    assert statuses(output) == {"broken.mp4": "error"}


def test_manifest_rows_give_per_video_times_and_questions(capsys, videos, tiny_model, tmp_path):
    shutil.copy(videos["plain.mp4"], tmp_path / "plain.mp4")
    shutil.copy(videos["cut.mp4"], tmp_path / "cut.mp4")
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        'video,at,question\nplain.mp4,"1,2.5",How many?\ncut.mp4,,Which colour?\ncut.mp4,bad,Broken time?\n'
    )
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text(json.dumps({"video": "cut.mp4", "at": [2.4, 2.5], "questions": ["A?", "B?"]}) + "\n")
    output = tmp_path / "out.jsonl"
    code, out, err = run(
        capsys,
        "batch",
        str(manifest),
        str(jsonl),
        "--num-frames",
        "2",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(output),
    )
    assert code == 1  # the row with a bad time
    lines = list(iter_lines(output))
    assert [[f["timestamp"] for f in r.get("frames", [])] for r in lines] == [[1.0, 2.5], [1.2, 3.7], [], [2.4, 2.5]]
    assert [[a["question"] for a in r.get("answers", [])] for r in lines] == [
        ["How many?"],
        ["Which colour?"],
        [],
        ["A?", "B?"],
    ]
    assert "row 3" in lines[2]["error"] and "cannot read time" in lines[2]["error"]


def test_inputs_globs_and_their_errors(folder, tmp_path):
    assert [os.path.basename(i.video) for i in collect_items([str(folder)])] == [
        "a.mp4",
        "broken.mp4",
        "c.mkv",
        "b.mp4",
    ]
    assert len(collect_items([str(folder / "*.mp4")])) == 2
    for bad, fragment in (
        ([str(tmp_path / "nope")], "no such file"),
        ([str(folder / "*.webm")], "no files match"),
        ([str(tmp_path / "empty")], "no such file"),
    ):
        with pytest.raises(UsageError, match=fragment):
            collect_items(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no videos found"):
        collect_items([str(tmp_path / "empty")])
    (tmp_path / "m.csv").write_text("path,at\nx.mp4,1\n")
    with pytest.raises(UsageError, match="needs a `video` column"):
        read_manifest(str(tmp_path / "m.csv"))


def test_batch_usage_errors(capsys, folder, tiny_model, tmp_path):
    code, out, err = run(capsys, "batch", str(folder), "--model", tiny_model, "-o", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert_one_line_error(err, "give questions with -q")
    code, out, err = run(capsys, "batch", str(tmp_path / "missing"), "-q", "q", "-o", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert_one_line_error(err, "no such file or folder")


def interrupted_batch(videos, tiny_model, tmp_path, sig):
    """Start a batch of 8 clips in a subprocess and send `sig` once its first line is on disk."""
    clips = clip_copies(tmp_path / "clips", videos["plain.mp4"], 8)
    output = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "keyframe_qa",
        "batch",
        str(clips),
        "-q",
        "Describe it.",
        "--num-frames",
        "6",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "48",
        "-o",
        str(output),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if wait_for_lines(output, 1, process, 120):
        process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    return command, output, process.returncode, err


def test_killed_run_keeps_finished_lines_and_rerun_completes_without_repeats(videos, tiny_model, tmp_path):
    command, output, _, _ = interrupted_batch(videos, tiny_model, tmp_path, signal.SIGKILL)
    finished = list(iter_lines(output))  # every line that is there parses
    assert 1 <= len(finished) < 8, "the run should have been killed part-way"
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    oks = Counter(r["video"]["path"] for r in iter_lines(output) if r["status"] == "ok")
    assert len(oks) == 8 and set(oks.values()) == {1}  # all answered, none twice
    assert f"{len(finished)} already done" in result.stderr


def test_ctrl_c_stops_cleanly_with_a_summary_and_exit_130(videos, tiny_model, tmp_path):
    _, output, code, err = interrupted_batch(videos, tiny_model, tmp_path, signal.SIGINT)
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and "results in" in last
    assert 1 <= len(list(iter_lines(output))) < 8


def test_the_next_video_is_decoded_while_the_model_answers(monkeypatch, videos, tmp_path, tiny_model):
    import keyframe_qa.jobs.batch_work as batch_module
    from keyframe_qa import AskRequest, GenerationRequest, SelectionRequest, load_model
    from keyframe_qa.jobs.batch import run_batch
    from keyframe_qa.jobs.batch_inputs import BatchItem

    events = []
    real_prepare, real_answer = batch_module.prepare, batch_module.answer_prepared

    def prepare(request, checkpoint, **options):
        events.append(("prepare", os.path.basename(request.video)))
        return real_prepare(request, checkpoint, **options)

    def answer(prepared, engine, **options):
        events.append(("answer", os.path.basename(prepared.request.video)))
        time.sleep(0.3)  # a slow model: the next video must be ready by the time it is done
        result = real_answer(prepared, engine, **options)
        events.append(("answered", os.path.basename(prepared.request.video)))
        return result

    monkeypatch.setattr(batch_module, "prepare", prepare)
    monkeypatch.setattr(batch_module, "answer_prepared", answer)
    items = [BatchItem(video=videos["plain.mp4"]), BatchItem(video=videos["cut.mp4"])]
    summary = run_batch(
        items,
        AskRequest(
            video="",
            questions=("q",),
            selection=SelectionRequest(times=(1.0,)),
            generation=GenerationRequest(max_new_tokens=2),
        ),
        str(tmp_path / "o.jsonl"),
        engine=load_model(tiny_model),
        progress=False,
    )
    assert summary.done == 2
    assert events.index(("prepare", "cut.mp4")) < events.index(("answered", "plain.mp4"))


def test_the_same_video_named_three_ways_is_answered_once(capsys, videos, tiny_model, tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    shutil.copy(videos["plain.mp4"], clip)
    os.symlink(clip, tmp_path / "link.mp4")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.jsonl"
    code, _, err = run(
        capsys,
        "batch",
        str(clip),
        "./clip.mp4",
        "link.mp4",
        "-q",
        "q",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(out),
    )
    assert code == 0, err
    assert "2 inputs named a video already listed" in err
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["video"]["path"] == str(clip)


def test_a_large_manifest_says_it_is_being_read(capsys, videos, tmp_path, monkeypatch):
    import keyframe_qa.jobs.batch_inputs as inputs

    monkeypatch.setattr(inputs, "LARGE_MANIFEST_BYTES", 100)
    manifest = tmp_path / "m.csv"
    manifest.write_text("video,at,question\n" + "".join(f"{videos['plain.mp4']},{i % 5},q{i}\n" for i in range(50)))
    items = inputs.read_manifest(str(manifest))
    err = capsys.readouterr().err
    assert len(items) == 50
    assert f"reading the manifest {manifest}" in err and f"read 50 rows of {manifest} in" in err
