"""Public benchmarks' label files in `eval`: each format read into rows, a malformed file named by file and
line, a missing video one row's error, and Charades-STA end to end with a perfect and a blind stand-in."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from keyframe_qa.evaluation.formats import read_format
from keyframe_qa.evaluation.labels import LabelError
from keyframe_qa.testing.oracle import DrawnBoxOracle
from keyframe_qa.testing.synthetic import draw_frame, write_pictures


@pytest.fixture()
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("vid1.mp4", "vid2.mkv", "v_abc.mp4", "def.mp4"):
        (folder / name).write_bytes(b"")
    (folder / "1001").mkdir()
    (folder / "1001" / "4010069381.mp4").write_bytes(b"")  # NExT-QA keeps its videos in numbered folders
    return folder


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


VIDEOMME = [
    {
        "videoID": "vid1",
        "question_id": "001-1",
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "task_type": "Counting Problem",
        "question": "How many?",
        "options": ["A. one", "B. two", "C. three", "D. four"],
        "answer": "C",
    },
    {
        "videoID": "gone",
        "question_id": "002-1",
        "duration": "long",
        "domain": "Sports",
        "sub_category": "Tennis",
        "task_type": "Action Recognition",
        "question": "Who serves?",
        "options": ["A. he", "B. she", "C. both", "D. nobody"],
        "answer": "B",
    },
]


def test_videomme_json_and_parquet(tmp_path, videos):
    path = _write(tmp_path / "test.json", json.dumps(VIDEOMME))
    first, missing = read_format("videomme", path, str(videos))
    assert (first.kind, first.id, first.options, first.correct) == (
        "choice",
        "001-1",
        ("one", "two", "three", "four"),
        2,
    )
    assert dict(first.groups) == {
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "task_type": "Counting Problem",
    }
    assert first.video.endswith("vid1.mp4") and first.error is None
    assert missing.error and "'gone' is not under" in missing.error  # the row's error; the others still run
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = str(tmp_path / "test.parquet")
    pq.write_table(pa.Table.from_pylist(VIDEOMME), parquet)
    from dataclasses import replace

    same = [replace(label, source="") for label in (first, missing)]
    assert [replace(label, source="") for label in read_format("videomme", parquet, str(videos))] == same


def test_parquet_without_pyarrow_names_the_extra(tmp_path, videos, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "test.parquet").write_bytes(b"PAR1")
    with pytest.raises(LabelError, match=r"needs pyarrow: pip install 'keyframe-qa\[parquet\]'"):
        read_format("videomme", str(tmp_path / "test.parquet"), str(videos))


def test_mvbench_one_file_per_task(tmp_path, videos):
    rows = [
        {"video": "vid2.mkv", "question": "What does he do?", "candidates": ["sit", "stand", "run"], "answer": "run"}
    ]
    (label,) = read_format("mvbench", _write(tmp_path / "action_sequence.json", json.dumps(rows)), str(videos))
    assert (label.correct, label.options, dict(label.groups)) == (
        2,
        ("sit", "stand", "run"),
        {"task": "action_sequence"},
    )
    assert label.video.endswith("vid2.mkv") and label.id == "action_sequence:1"


NEXTQA = (
    "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
    "4010069381,300,640,480,why did the boy cry,2,7,CW,fell,hungry,lost toy,tired,cold\n"
)


def test_nextqa_finds_videos_in_their_folders(tmp_path, videos):
    (label,) = read_format("nextqa", _write(tmp_path / "val.csv", NEXTQA), str(videos))
    assert (label.kind, label.correct, label.options[2], dict(label.groups)) == (
        "choice",
        2,
        "lost toy",
        {"type": "CW"},
    )
    assert label.video.endswith("1001/4010069381.mp4") and label.id == "4010069381_7"


def test_nextgqa_gives_each_located_question_a_span_paired_with_its_answer(tmp_path, videos):
    path = _write(tmp_path / "test.csv", NEXTQA)
    grounding = {"4010069381": {"duration": 30.0, "fps": 10, "location": {"7": [[2.5, 6.0], [10.0, 12.5]]}}}
    (tmp_path / "gsub_test.json").write_text(json.dumps(grounding))
    choice, span = read_format("nextgqa", path, str(videos))
    assert choice.kind == "choice" and span.kind == "span" and span.pair == choice.id
    assert span.spans == ((2.5, 6.0), (10.0, 12.5)) and span.query == choice.question
    assert dict(span.groups) == {"type": "CW", "grounded": "yes"}


def test_charades_and_activitynet_give_spans(tmp_path, videos):
    charades = _write(tmp_path / "charades_sta_test.txt", "vid1 1.2 5.5##a person opens a door.\n")
    (label,) = read_format("charades-sta", charades, str(videos))
    assert (label.kind, label.query, label.spans) == ("span", "a person opens a door.", ((1.2, 5.5),))
    captions = {
        "v_abc": {"duration": 20.0, "timestamps": [[0.0, 4.5], [4.5, 12.0]], "sentences": ["A man.", "He runs."]},
        "v_def": {"duration": 9.0, "timestamps": [[1.0, 3.0]], "sentences": ["A dog."]},
    }
    rows = read_format("activitynet-captions", _write(tmp_path / "val_1.json", json.dumps(captions)), str(videos))
    assert [(r.query, r.spans) for r in rows] == [
        ("A man.", ((0.0, 4.5),)),
        ("He runs.", ((4.5, 12.0),)),
        ("A dog.", ((1.0, 3.0),)),
    ]
    assert rows[0].video.endswith("v_abc.mp4") and rows[2].video.endswith("def.mp4")  # with or without v_
    assert all(r.error is None for r in rows)


@pytest.mark.parametrize(
    "fmt, name, text, where",
    [
        ("videomme", "test.json", '[{"videoID": "vid1"}]', "test.json:1: no question, options, answer"),
        ("videomme", "test.json", '[{"videoID": "vid1",\n "question": "q", oops}]', "test.json:2: not JSON"),
        (
            "mvbench",
            "task.json",
            '[{"video": "vid1.mp4", "question": "q", "candidates": ["a", "b"], "answer": "c"}]',
            "task.json:1: the answer must be one of",
        ),
        ("nextqa", "val.csv", NEXTQA.replace(",2,7,", ",9,7,"), "val.csv:2: answer '9' is not an index 0 to 4"),
        (
            "charades-sta",
            "sta.txt",
            "vid1 1.0 2.0##ok\nvid1 one two##bad\n",
            "sta.txt:2: not `vid start end##sentence`",
        ),
        (
            "activitynet-captions",
            "val.json",
            '{"v_abc": {"timestamps": [[0, 1]], "sentences": []}}',
            "val.json:v_abc: 1 timestamps for 0 sentences",
        ),
        ("nextgqa", "test.csv", NEXTQA, "NExT-GQA's grounding file gsub_*.json is not beside it"),
    ],
)
def test_a_malformed_file_is_one_line_naming_the_file_and_line(tmp_path, videos, fmt, name, text, where):
    with pytest.raises(LabelError) as raised:
        read_format(fmt, _write(tmp_path / name, text), str(videos))
    assert len(raised.value.problems) == 1 and where in raised.value.problems[0]


# --- Charades-STA end to end ------------------------------------------------------------------------------

BOX, GREEN = (40, 30, 60, 60), (0, 200, 0)
EVENTS = {"clip0": (30, 59), "clip1": (5, 24), "clip2": (60, 89)}  # frames showing the box, at 10 fps


@pytest.fixture(scope="module")
def charades(tmp_path_factory):
    folder = tmp_path_factory.mktemp("charades")
    (folder / "videos").mkdir()
    lines = []
    for name, (first, last) in EVENTS.items():
        pictures = []
        for number in range(100):
            image = draw_frame(number, 160, 120)
            if first <= number <= last:
                x, y, w, h = BOX
                image[y : y + h, x : x + w] = GREEN
            pictures.append(image)
        write_pictures(str(folder / "videos" / f"{name}.mp4"), pictures, fps=10, gop=10)
        # The labelled moment runs from the first frame's time to the end of the last frame.
        lines.append(f"{name} {first / 10:.1f} {(last + 1) / 10:.1f}##a green box appears.")
    lines.append("clip9 1.0 2.0##a video nobody downloaded.")
    (folder / "charades_sta_test.txt").write_text("\n".join(lines) + "\n")
    (folder / "eval.yaml").write_text(
        "labels:\n  - {format: charades-sta, file: charades_sta_test.txt, videos: videos}\n"
        "pipelines:\n  oracle: {window_frames: 16}\n"
    )
    return folder


class Blind(DrawnBoxOracle):
    """The stand-in made blind: it never sees the box."""

    def shows(self, image) -> bool:
        return False


@pytest.mark.parametrize(
    "oracle, miou, recall", [(DrawnBoxOracle(BOX, GREEN), 1.0, 1.0), (Blind(BOX, GREEN), 0.0, 0.0)]
)
def test_charades_sta_through_eval_gives_the_published_metrics(charades, tmp_path, monkeypatch, oracle, miou, recall):
    from keyframe_qa import run_eval

    monkeypatch.setenv("KEYFRAME_QA_CACHE_DIR", str(tmp_path / "cache"))
    run = run_eval(str(charades / "eval.yaml"), str(tmp_path / "run"), engines={"oracle": oracle}, progress=False)
    record = run.summary["pipelines"]["oracle"]
    span = record["kinds"]["span"]
    assert span["items"] == 3 and span["miou"] == pytest.approx(miou, abs=1e-3)
    assert span["recall"]["0.7"] == recall and span["recall"]["0.3"] == recall
    assert record["missing_videos"] == 1 and record["skipped_items"] == 1  # clip9: recorded, the rest ran
    items = [json.loads(line) for line in open(tmp_path / "run" / "oracle.items.jsonl")]
    assert items[-1]["score"] is None and "'clip9' is not under" in items[-1]["reason"]
    assert np.isfinite([i["score"] for i in items[:-1]]).all()


def test_an_unknown_format_is_a_config_problem(tmp_path, capsys):
    from tests.helpers import run

    path = tmp_path / "eval.yaml"
    path.write_text("labels:\n  - {format: kinetics, file: k.csv, videos: v}\npipelines:\n  a: {}\n")
    code, _, err = run(capsys, "eval", str(path), "-o", str(tmp_path / "run"))
    assert code == 2 and "labels: entry 0: format: Input should be" in err and "videomme" in err
