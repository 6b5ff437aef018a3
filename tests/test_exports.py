"""`keyframe-qa export`: finished runs to CSV, WebVTT and FiftyOne, and the inputs it refuses.

The runs are made by the real batch, `when` and `eval` machinery, answered by stand-ins that read the
synthetic clips' pixels (what is under test is the export); the real FiftyOne imports the export in the
slow tier.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil

import pytest
import webvtt

from keyframe_qa import AskRequest, SelectionRequest, WhenRequest, find_moments
from keyframe_qa.jobs.batch import run_batch
from keyframe_qa.jobs.batch_inputs import BatchItem
from keyframe_qa.outputs.report import to_json
from keyframe_qa.testing.oracle import BoxOracle
from keyframe_qa.testing.synthetic import draw_frame, write_pictures
from tests.helpers import assert_one_line_error, run

BOX, GREEN = (40, 30, 60, 60), (0, 200, 0)
STRETCH = (30, 59)  # frames showing the box, at 10 fps


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export-clips")
    for name in ("clip0", "clip1"):
        pictures = []
        for number in range(100):
            image = draw_frame(number, 160, 120)
            if STRETCH[0] <= number <= STRETCH[1]:
                x, y, w, h = BOX
                image[y : y + h, x : x + w] = GREEN
            pictures.append(image)
        write_pictures(str(folder / f"{name}.mp4"), pictures, fps=10, gop=10)
    return folder


@pytest.fixture(scope="module")
def results(clips, tmp_path_factory):
    """A batch results file (two answered videos, one failed) and a `when` report."""
    folder = tmp_path_factory.mktemp("export-results")
    items = [
        BatchItem(video=str(clips / "clip0.mp4"), times=(3.5,), questions=("Where is the box?", "Formula?")),
        BatchItem(video=str(clips / "clip1.mp4"), times=(1.0, 4.0), questions=("Where is the box?",)),
        BatchItem(video=str(clips / "gone.mp4"), times=(1.0,), questions=("Where is the box?",)),
    ]
    template = AskRequest(video="", questions=(), selection=SelectionRequest())
    engine = BoxOracle(BOX, GREEN)
    batch = folder / "batch.jsonl"
    run_batch(items, template, str(batch), engine=engine, checkpoint=engine.checkpoint, progress=False)
    found = find_moments(WhenRequest(video=str(clips / "clip0.mp4"), query="the green box"), engine=engine)
    when = folder / "when.json"
    when.write_text(to_json(found))
    return {"batch": str(batch), "when": str(when), "folder": folder}


def test_csv_has_a_row_a_video_and_question(results, tmp_path, capsys):
    out = tmp_path / "results.csv"
    code, _, err = run(capsys, "export", results["batch"], results["when"], "--to", "csv", str(out))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(os.path.basename(r["video"]), r["status"], r["question"]) for r in rows] == [
        ("clip0.mp4", "ok", "Where is the box?"),
        ("clip0.mp4", "ok", "Formula?"),
        ("clip1.mp4", "ok", "Where is the box?"),
        ("gone.mp4", "error", ""),
        ("clip0.mp4", "ok", ""),
    ]
    box = json.loads(rows[0]["boxes"])[0]
    assert box["frame"] == 0 and box["bbox"] == [40.0, 30.0, 100.0, 90.0]  # the drawn box, in the frame's pixels
    assert rows[1]["answer"] == "'=HYPERLINK(1)"  # a spreadsheet does not run it
    assert rows[3]["error"] and rows[4]["moments"] == "3-5.9"


def test_webvtt_cues_are_the_moments_and_the_answers(results, tmp_path, capsys):
    out = tmp_path / "vtt"
    code, _, err = run(capsys, "export", results["batch"], results["when"], "--to", "webvtt", str(out))
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["clip0.2.vtt", "clip0.vtt", "clip1.vtt"]  # the failed video has none
    moments = webvtt.read(str(out / "clip0.2.vtt"))
    (cue,) = moments.captions
    assert (cue.start, cue.end, cue.text) == ("00:00:03.000", "00:00:06.000", "Moment 1: the green box")
    answers = webvtt.read(str(out / "clip1.vtt")).captions
    assert [(c.start, c.end) for c in answers] == [("00:00:01.000", "00:00:07.000")]  # frames 1 s and 4 s, + 3 s
    assert "Q: Where is the box?" in answers[0].text and "the box" in answers[0].text


def test_scenes_become_chapters(tmp_path, capsys):
    sample = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_videos", "scenes.mp4")
    scenes = tmp_path / "scenes.json"
    code, _, _ = run(capsys, "scenes", sample, "--no-cache", "-o", str(scenes))
    assert code == 0
    code, _, err = run(capsys, "export", str(scenes), "--to", "webvtt", str(tmp_path / "vtt"))
    assert code == 0, err
    chapters = webvtt.read(str(tmp_path / "vtt" / "scenes.vtt")).captions
    found = json.loads(scenes.read_text())["scenes"]
    assert [c.text for c in chapters] == [f"Scene {i + 1}" for i in range(len(found))]
    assert chapters[-1].end_in_seconds == pytest.approx(found[-1]["end"], abs=0.001)


def test_what_is_not_ours_is_refused_and_nothing_is_destroyed(results, tmp_path, capsys):
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"my": "notes"}\n')
    code, _, err = run(capsys, "export", str(notes), "--to", "csv", str(tmp_path / "a.csv"))
    assert code == 2 and "is not a results file of ours" in err
    assert_one_line_error(err, "notes.jsonl:1 is not a keyframe-qa result line")
    before = open(results["batch"], "rb").read()
    code, _, err = run(capsys, "export", results["batch"], "--to", "csv", results["batch"])
    assert code == 2 and "is an input" in err and open(results["batch"], "rb").read() == before
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(before + before.splitlines(True)[0][:40])
    code, _, err = run(capsys, "export", str(torn), "--to", "csv", str(tmp_path / "b.csv"))
    assert code == 0 and "the last line is torn" in err
    moved = tmp_path / "moved"
    shutil.copytree(os.path.dirname(results["batch"]), moved)
    lines = [json.loads(line) for line in open(results["batch"])]
    lines[0]["video"]["path"] = str(tmp_path / "nowhere.mp4")
    (moved / "batch.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, _, err = run(capsys, "export", str(moved / "batch.jsonl"), "--to", "fiftyone", str(tmp_path / "fo"))
    assert code == 2
    assert_one_line_error(err, "nowhere.mp4 is not there any more: FiftyOne needs the videos it shows")


def test_the_fiftyone_layout_is_the_documented_one(clips, results, tmp_path, capsys):
    out = tmp_path / "fo"
    code, _, err = run(capsys, "export", results["batch"], results["when"], "--to", "fiftyone", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["type"] == "eta.core.datasets.labeled_datasets.LabeledVideoDataset"
    assert len(manifest["index"]) == 2  # clip0 (the batch line and the when report) and clip1
    first = json.loads((out / manifest["index"][0]["labels"]).read_text())
    (event,) = first["events"]["events"]
    assert event["support"] == {"ranges": "31-60"}  # frames 30 to 59, counted from 1 as FiftyOne does
    (frame,) = first["frames"].values()
    (found,) = frame["objects"]["objects"]
    assert frame["frame_number"] == 36  # the frame at 3.5 s (35), from 1
    assert found["bounding_box"] == {"top_left": {"x": 0.25, "y": 0.25}, "bottom_right": {"x": 0.625, "y": 0.75}}
    assert os.path.realpath(out / manifest["index"][0]["data"]) == os.path.realpath(clips / "clip0.mp4")
    # Exporting again over it replaces our own links and files, and nothing else.
    code, _, err = run(capsys, "export", results["batch"], results["when"], "--to", "fiftyone", str(out))
    assert code == 0, err


def _eval_run(clips, tmp_path) -> str:
    from keyframe_qa import run_eval

    labels = tmp_path / "labels.jsonl"
    rows = [
        {"id": "s0", "video": str(clips / "clip0.mp4"), "kind": "span", "query": "the green box", "span": [3.0, 6.0]},
        {
            "id": "b0",
            "video": str(clips / "clip1.mp4"),
            "kind": "box",
            "find": "the green box",
            "at": 4.0,
            "box": [40, 30, 100, 90],
        },
    ]
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tmp_path / "eval.yaml"
    config.write_text(f"labels: {labels}\npipelines:\n  here: {{window_frames: 16}}\n")
    engine = BoxOracle(BOX, GREEN)
    run_eval(str(config), str(tmp_path / "run"), engines={"here": engine}, progress=False)
    return str(tmp_path / "run")


@pytest.mark.slow
def test_fiftyone_imports_the_export_with_every_label_box_and_frame_range(clips, results, tmp_path, capsys):
    from keyframe_qa.testing.fiftyone_tool import ensure_fiftyone, run_fiftyone

    python, why = ensure_fiftyone()
    if python is None:
        pytest.skip(why)
    run_dir = _eval_run(clips, tmp_path)
    out = tmp_path / "fo"
    code, _, err = run(capsys, "export", results["batch"], results["when"], run_dir, "--to", "fiftyone", str(out))
    assert code == 0, err
    script = f"""
import json
import fiftyone as fo
ds = fo.Dataset.from_dir({str(out)!r}, dataset_type=fo.types.FiftyOneVideoLabelsDataset)
found = []
for sample in ds:
    record = {{"video": sample.filepath.rsplit("/", 1)[-1], "fields": {{}}, "frames": {{}}}}
    for name in sample.field_names:
        value = sample[name]
        if isinstance(value, fo.Classification):
            record["fields"][name] = value.label
        elif isinstance(value, fo.TemporalDetections):
            record["fields"][name] = [[d.label, list(d.support)] for d in value.detections]
    for number, frame in sample.frames.items():
        for name in frame.field_names:
            value = frame[name]
            if isinstance(value, fo.Detections):
                boxes = [[d.label, d.bounding_box] for d in value.detections]
                record["frames"].setdefault(str(number), {{}})[name] = boxes
    found.append(record)
if "here_ground_truth" in ds.get_field_schema() or "ground_truth" in ds.get_field_schema():
    results = ds.evaluate_detections("here_moments", gt_field="ground_truth", eval_key="spans", iou=0.5)
    found.append({{"temporal_map_ok": True, "tp": int(sum(ds.values("spans_tp")))}})
print(json.dumps(found))
"""
    done = run_fiftyone(python, script, str(tmp_path / "fiftyone"))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    samples = {r["video"]: r for r in found if "video" in r}
    clip0 = next(r for name, r in samples.items() if name.endswith("clip0.mp4"))
    assert clip0["fields"]["moments"] == [["the green box", [31, 60]]]
    assert clip0["fields"]["answer_1"].startswith("In frame 1")
    assert clip0["fields"]["question_1"] == "Where is the box?"
    assert clip0["frames"]["36"]["boxes"] == [["the box", pytest.approx([0.25, 0.25, 0.375, 0.5])]]
    # The eval run's pipeline beside its labels: its moment and the labelled span, in frames.
    assert clip0["fields"]["here_moments"] == [["the green box", [31, 60]]]
    assert clip0["fields"]["ground_truth"] == [["the green box", [31, 60]]]
    clip1 = next(r for name, r in samples.items() if name.endswith("clip1.mp4"))
    assert clip1["frames"]["41"]["ground_truth_boxes"] == [["the green box", pytest.approx([0.25, 0.25, 0.375, 0.5])]]
    assert found[-1] == {"temporal_map_ok": True, "tp": 1}  # FiftyOne's own evaluation matched the moment
