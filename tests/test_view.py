"""`keyframe-qa view`: one page of whole runs, its thumbnails the exact frames, hostile text inert, a moved
video shown without frames, 10,000 rows in a bounded page; in headless Chromium in the slow tier.

The runs are made by the real batch, `when` and `eval` machinery with pixel-reading stand-ins (what is under
test is the page)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from keyframe_qa import AskRequest, SelectionRequest, WhenRequest, find_moments, run_eval
from keyframe_qa.jobs.batch import run_batch
from keyframe_qa.jobs.batch_inputs import BatchItem
from keyframe_qa.jobs.view import view_job
from keyframe_qa.outputs.report import to_json
from keyframe_qa.testing.oracle import BoxOracle
from keyframe_qa.testing.synthetic import draw_frame, write_pictures
from tests.helpers import assert_one_line_error, chromium_or_skip, run

BOX, GREEN = (40, 30, 60, 60), (0, 200, 0)
HOSTILE = "<script>document.title='owned'</script></script><img src=x onerror=alert(1)>"


def _data(page: str) -> dict:
    blob = re.search(r"<script type='application/json' id='kfqa-data'>(.*?)</script>", page, re.S).group(1)
    return json.loads(blob)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("view")
    clips = []
    for name in ("clip0", "<b>clip1&x"):
        pictures = []
        for number in range(100):
            image = draw_frame(number, 160, 120)
            if 30 <= number <= 59:
                x, y, w, h = BOX
                image[y : y + h, x : x + w] = GREEN
            pictures.append(image)
        path = folder / f"{name}.mp4"
        write_pictures(str(path), pictures, fps=10, gop=10)
        clips.append(str(path))
    engine = BoxOracle(BOX, GREEN)
    engine.reply_text["Say"] = HOSTILE
    items = [
        BatchItem(video=clips[0], times=(3.5, 8.0), questions=("Where is the box?",)),
        BatchItem(video=clips[1], times=(1.0,), questions=("Say something",)),
        BatchItem(video=str(folder / "gone.mp4"), times=(1.0,), questions=("Where is the box?",)),
    ]
    batch = folder / "batch.jsonl"
    template = AskRequest(video="", questions=(), selection=SelectionRequest())
    run_batch(items, template, str(batch), engine=engine, checkpoint=engine.checkpoint, progress=False)
    when = folder / "when.json"
    when.write_text(to_json(find_moments(WhenRequest(video=clips[0], query="the green box"), engine=engine)))
    labels = folder / "labels.jsonl"
    labels.write_text(
        json.dumps(
            {
                "id": "y0",
                "video": clips[0],
                "kind": "yesno",
                "question": "Where is the box?",
                "answer": "yes",
                "category": "red",
            }
        )
        + "\n"
    )
    config = folder / "eval.yaml"
    config.write_text(
        f"labels: {labels}\npipelines:\n  early: {{'at': 1.0}}\n  late: {{}}\n".replace(
            "{'at': 1.0}", "{num_frames: 1}"
        )
    )
    return {"folder": folder, "clips": clips, "batch": str(batch), "when": str(when), "config": str(config)}


def test_every_video_is_a_row_and_the_thumbnails_are_the_exact_frames(runs, tmp_path, capsys):
    page = tmp_path / "page.html"
    code, _, err = run(capsys, "view", runs["batch"], runs["when"], "--html", str(page))
    assert code == 0, err
    rows = _data(page.read_text())["rows"]
    assert [(r["name"], r["status"]) for r in rows] == [
        ("clip0.mp4", "ok"),
        ("<b>clip1&x.mp4", "ok"),
        ("gone.mp4", "error"),
        ("clip0.mp4", "ok"),
    ]
    first = rows[0]
    assert [f["n"] for f in first["frames"]] == [35, 80] and first["frames"][0]["boxes"][0]["bbox"] == [40, 30, 100, 90]
    assert rows[3]["moments"] == [[3.0, pytest.approx(6.0)]]
    for frame in first["frames"]:
        thumb = cv2.cvtColor(cv2.imread(str(tmp_path / frame["thumb"])), cv2.COLOR_BGR2RGB)
        out = tmp_path / f"at-{frame['n']}"
        assert run(capsys, "frames", runs["clips"][0], "--at", str(frame["t"]), "--out", str(out))[0] == 0
        (png,) = [name for name in os.listdir(out) if name.endswith(".png")]
        exact = cv2.cvtColor(cv2.imread(str(out / png)), cv2.COLOR_BGR2RGB)
        assert thumb.shape == exact.shape and np.abs(thumb.astype(int) - exact).mean() < 3  # JPEG of the same frame
    assert sorted(os.listdir(tmp_path / "page_files")) == [
        "frame_000_000001.000s_row000001.jpg",
        "frame_000_000003.500s_row000000.jpg",
        "frame_001_000008.000s_row000000.jpg",
    ]  # the failed and the when row saw no frames


def test_hostile_text_stays_text(runs, tmp_path):
    page = tmp_path / "page.html"
    view_job([runs["batch"]], str(page))
    text = page.read_text()
    assert text.count("<script") == 2  # the data and the page's own script, nothing from an answer or a path
    assert "</script><img" not in text and "<b>clip1&x" not in text.split("<script type='application/json'")[0]
    rows = _data(text)["rows"]
    assert rows[1]["answers"][0]["a"] == HOSTILE and rows[1]["name"] == "<b>clip1&x.mp4"  # kept, as text


def test_a_moved_or_changed_video_shows_no_frames(runs, tmp_path):
    lines = [json.loads(line) for line in open(runs["batch"])]
    moved = tmp_path / "moved.mp4"
    shutil.copy(runs["clips"][0], moved)
    os.utime(moved, ns=(1, 1))
    lines[0]["video"]["path"] = str(moved)  # another file under the recorded name: its time differs
    results = tmp_path / "batch.jsonl"
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = tmp_path / "page.html"
    view_job([str(results)], str(page))
    row = _data(page.read_text())["rows"][0]
    assert "changed since the run" in row["note"] and all(f["thumb"] is None for f in row["frames"])


def test_an_eval_run_shows_its_summary_and_marks_where_its_pipelines_disagree(runs, tmp_path):
    run_dir = tmp_path / "run"
    run_eval(
        runs["config"],
        str(run_dir),
        engines={"early": BoxOracle(BOX, GREEN), "late": BoxOracle(BOX, GREEN)},
        progress=False,
    )
    page = tmp_path / "page.html"
    view_job([str(run_dir)], str(page))
    text = page.read_text()
    assert "<table class='summary'>" in text and "late - early" in text
    rows = _data(text)["rows"]
    assert {r["pipeline"] for r in rows} == {"early", "late"} and all(r["fields"] == {"category": "red"} for r in rows)


def test_ten_thousand_rows_make_a_bounded_page(runs, tmp_path):
    line = json.loads(open(runs["batch"]).readline())
    results = tmp_path / "big.jsonl"
    with open(results, "w") as handle:
        for number in range(10_000):
            line["video"]["path"] = str(tmp_path / f"video{number:05d}.mp4")  # not there: rows with a note
            handle.write(json.dumps(line) + "\n")
    summary = view_job([str(results)], str(tmp_path / "page.html"))
    assert summary.rows == 10_000 and summary.thumbnails == 0
    assert summary.page_bytes < 10_000 * 1_200  # about 1 KB a row, built in the browser as it scrolls


def test_what_cannot_be_shown_is_refused(runs, tmp_path, capsys):
    code, _, err = run(capsys, "view", runs["batch"], "--html", runs["batch"])
    assert code == 2 and "is an input" in err
    notes = tmp_path / "notes.json"
    notes.write_text('{"not": "ours"}')
    code, _, err = run(capsys, "view", str(notes), "--html", str(tmp_path / "p.html"))
    assert code == 2
    assert_one_line_error(err, "is not a keyframe-qa result")


@pytest.mark.slow
def test_in_headless_chromium_it_runs_without_errors_and_filters_by_status(runs, tmp_path):
    chromium = chromium_or_skip()
    page = tmp_path / "page.html"
    view_job([runs["batch"], runs["when"]], str(page))
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]

    def dom(fragment: str) -> tuple[str, str]:
        done = subprocess.run(
            [*flags, "--dump-dom", page.as_uri() + fragment], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout, done.stderr

    everything, log = dom("")
    assert everything.count('class="row') == 4 and "Uncaught" not in log and "owned" not in everything.split("<body")[0]
    failed, log = dom("#status=error")
    rows = re.findall(r'<tr class="row[^"]*" data-status="(\w+)"', failed)
    assert rows == ["error"] and "Uncaught" not in log  # exactly the failed row
    found, _ = dom("#text=something")
    assert re.findall(r'<tr class="row[^"]*" data-status="(\w+)"', found) == ["ok"]  # the row whose question says so


def test_no_nan_from_a_hand_edited_file_reaches_the_page(runs, tmp_path):
    line = open(runs["batch"]).readline().replace('"duration":10.0', '"duration":NaN')
    assert "NaN" in line  # Python's json reads it; strict readers and browsers do not
    results = tmp_path / "edited.jsonl"
    results.write_text(line)
    page = tmp_path / "page.html"
    view_job([str(results)], str(page))
    assert "NaN" not in page.read_text() and _data(page.read_text())["rows"][0]["duration"] is None


def test_a_link_planted_under_a_folder_name_we_chose_is_refused(runs, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "page_files")  # the thumbnails' default folder, planted as a link
    code, _, err = run(capsys, "view", runs["batch"], "--html", str(tmp_path / "page.html"))
    assert code == 1 and "is a symlink" in err
    assert os.listdir(elsewhere) == []  # nothing was written through it
    os.makedirs(tmp_path / "fo")
    os.symlink(elsewhere, tmp_path / "fo" / "data")
    code, _, err = run(capsys, "export", runs["batch"], "--to", "fiftyone", str(tmp_path / "fo"))
    assert code == 1 and "is a symlink" in err and os.listdir(elsewhere) == []
