"""`keyframe-qa eval`: labels read and refused, replies scored, the statistics, and whole runs.

The whole runs answer with a pixel-reading stand-in and a colour stand-in scorer (the evaluation on top of
them is under test); the tiny real checkpoint and `transformers serve` run the same path in their own test.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy import stats

from keyframe_qa.evaluation.labels import LabelError, read_labels
from keyframe_qa.evaluation.scoring import (
    box_iou,
    choice_prompt,
    interval_iou,
    read_choice,
    read_yesno,
    score_box,
    score_short,
    score_span,
)
from keyframe_qa.evaluation.stats import cluster_interval, mcnemar
from keyframe_qa.testing.oracle import ColourAnswerOracle, ColourScorer
from keyframe_qa.testing.synthetic import draw_frame, write_pictures
from tests.helpers import chromium_or_skip, run

OPTIONS = ("a cat", "a dog", "a bird")


# --- reading replies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, picked",
    [
        ("B", 1),
        ("(B)", 1),
        ("b", 1),
        ("The answer is B.", 1),
        ("Answer: (C)", 2),
        ("B. a cat", 1),
        ("C) a bird", 2),
        ("[A]", 0),
        ("a dog", 1),
        ("A dog.", 1),
        ("I think it is a bird", 2),
        ("<think>It could be A.</think>C", 2),
        ("the answer is a cat", 0),
        ("cat or dog", None),
        ("", None),
        ("Maybe.", None),
        ("D", None),
    ],
)
def test_a_choice_is_read_in_every_style_a_model_writes_it(reply, picked):
    assert read_choice(reply, OPTIONS) == picked


def test_the_choice_prompt_is_the_common_form():
    assert choice_prompt("What is it?", OPTIONS) == (
        "What is it?\nA. a cat\nB. a dog\nC. a bird\nAnswer with the option's letter from the given choices directly."
    )


@pytest.mark.parametrize(
    "reply, said",
    [
        ("Yes.", True),
        ("no", False),
        ("NO, it is not", False),
        ("I would say yes", True),
        ("maybe", None),
        ("<think>no... </think>Yes", True),
        ("", None),
    ],
)
def test_yes_and_no_are_read_from_the_answer(reply, said):
    assert read_yesno(reply) is said


def _label(tmp_path, **row):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"video": "v.mp4", **row}) + "\n")
    (label,) = read_labels([str(path)])
    return label


@pytest.mark.parametrize(
    "match, answer, reply, score",
    [
        ("exact", "Paris", " paris. ", 1.0),
        ("exact", "Paris", "It is Paris", 0.0),
        ("contains", "Paris", "It is Paris.", 1.0),
        ("regex", r"\b4(\.0)?\b", "about 4.0 metres", 1.0),
        ("regex", r"^4$", "14", 0.0),
    ],
)
def test_short_answers_match_as_the_row_says(tmp_path, match, answer, reply, score):
    label = _label(tmp_path, kind="short", question="Where?", answer=answer, match=match)
    assert score_short(label, reply).score == score


def test_ious_against_values_worked_out_by_hand(tmp_path):
    assert interval_iou((2.0, 6.0), (4.0, 8.0)) == pytest.approx(2 / 6)
    assert interval_iou((0.0, 1.0), (2.0, 3.0)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    span = _label(tmp_path, kind="span", query="x", span=[[1.0, 3.0], [10.0, 14.0]])
    scored = score_span(span, [{"start": 11.0, "end": 14.0}], fps=10.0)
    assert scored.score == pytest.approx(0.75) and scored.boundary_frames == (10.0, 0.0)  # the best span counts
    box = _label(tmp_path, kind="box", find="car", at=1.0, box=[0, 0, 10, 10])
    best = score_box(box, [{"bbox": [50, 50, 60, 60]}, {"bbox": [0, 0, 10, 20]}])
    assert best.score == pytest.approx(0.5) and best.prediction == [0, 0, 10, 20]


# --- label rows that cannot be scored ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "row, fragment",
    [
        ({"kind": "guess", "question": "q"}, "kind 'guess' is not one of"),
        ({"kind": "choice", "question": "q", "options": ["a", "b"], "answer": "C"}, "is not among the options"),
        ({"kind": "choice", "question": "q", "options": ["a", "b"], "answer": 5}, "index 5 is not among"),
        ({"kind": "yesno", "question": "q", "answer": "perhaps"}, "yes or no"),
        ({"kind": "short", "question": "q", "answer": "x", "match": "fuzzy"}, "match 'fuzzy'"),
        ({"kind": "short", "question": "q", "answer": "(", "match": "regex"}, "not a regular expression"),
        ({"kind": "span", "query": "x", "span": [5, 2]}, "end after it starts"),
        ({"kind": "box", "find": "car", "box": [0, 0, 5, 5]}, "needs `at`"),
        ({"kind": "yesno", "answer": "yes"}, "`question` is missing"),
        ({"kind": "yesno", "question": "q", "answer": "yes", "video": "gone.mp4"}, "is not a file"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(tmp_path, row, fragment):
    (tmp_path / "v.mp4").write_bytes(b"")
    path = tmp_path / "labels.jsonl"
    good = {"video": "v.mp4", "kind": "yesno", "question": "q", "answer": "yes"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"video": "v.mp4", **row}) + "\n")
    with pytest.raises(LabelError) as raised:
        read_labels([str(path)])
    assert raised.value.problems[0].startswith("labels.jsonl:2: ") and fragment in raised.value.problems[0]


def test_duplicate_ids_and_every_problem_are_reported_at_once(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"")
    rows = [{"id": "q1", "video": "v.mp4", "kind": "yesno", "question": "q", "answer": "yes"}] * 2
    rows.append({"video": "v.mp4", "kind": "nope"})
    path = tmp_path / "labels.csv"
    path.write_text(
        "id,video,kind,question,answer\n"
        + "".join(
            f"{r.get('id', '')},{r['video']},{r['kind']},{r.get('question', '')},{r.get('answer', '')}\n" for r in rows
        )
    )
    with pytest.raises(LabelError) as raised:
        read_labels([str(path)])
    assert len(raised.value.problems) == 2
    assert any("labels.csv:4: kind 'nope'" in p for p in raised.value.problems)
    assert any("labels.csv:3: id 'q1' is used twice (first at labels.csv:2)" in p for p in raised.value.problems)


# --- the statistics -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("b, c", [(0, 0), (3, 0), (5, 9), (12, 30)])
def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs(b, c):
    before = [1] * b + [0] * c + [1, 1, 0]
    after = [0] * b + [1] * c + [1, 1, 0]
    discordant, p_value = mcnemar(before, after)
    assert discordant == [b, c]
    assert p_value == (1.0 if b + c == 0 else pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue))


def test_the_interval_covers_the_true_rate_about_95_times_in_100():
    rng = np.random.default_rng(7)
    truth, covered = 0.7, 0
    for _ in range(200):
        scores = (rng.random(120) < truth).astype(float)
        videos = [str(i // 3) for i in range(120)]  # 40 videos of 3 independent questions
        _, (low, high) = cluster_interval(scores, videos, resamples=2000, seed=int(rng.integers(1 << 30)))
        covered += low <= truth <= high
    assert 180 <= covered <= 198


def test_questions_of_one_video_that_agree_widen_the_interval():
    rng = np.random.default_rng(3)
    per_video = (rng.random(30) < 0.6).astype(float)
    scores = np.repeat(per_video, 5)  # each video's 5 questions score alike
    videos = np.repeat([str(v) for v in range(30)], 5)
    _, clustered = cluster_interval(scores, videos)
    _, per_item = cluster_interval(scores, [str(i) for i in range(len(scores))])
    assert clustered[1] - clustered[0] > 1.8 * (per_item[1] - per_item[0])  # about sqrt(5) wider


# --- whole runs ------------------------------------------------------------------------------------------

# Clips of 100 frames at 10 fps; the green square shows in a stretch of each. Four frames spread evenly
# (1.25, 3.75, 6.25, 8.75 s) see it only in the three clips where it spans 1.25 s or 6.25 s; --relevant 4
# finds it in all six.
STRETCHES = [(40, 59), (40, 59), (10, 29), (40, 59), (60, 69), (60, 69)]


@pytest.fixture(scope="module")
def stretch_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    for position, (first, last) in enumerate(STRETCHES):
        pictures = []
        for number in range(100):
            image = draw_frame(number, 160, 120)
            if first <= number <= last:
                image[30:90, 50:110] = (0, 200, 0)
            pictures.append(image)
        write_pictures(str(folder / f"clip{position}.mp4"), pictures, fps=10, gop=20)
    rows = []
    for position in range(len(STRETCHES)):
        for question in range(3):  # three questions a video, answered alike: one cluster
            rows.append(
                {
                    "id": f"c{position}-g{question}",
                    "video": f"clip{position}.mp4",
                    "kind": "yesno",
                    "question": f"Is the green square shown? ({question})",
                    "answer": "yes",
                    "stretch": "early" if STRETCHES[position][0] < 30 else "late",
                }
            )
        rows.append(
            {
                "id": f"c{position}-red",
                "video": f"clip{position}.mp4",
                "kind": "yesno",
                "question": "Is a red square shown?",
                "answer": "no",
                "stretch": "any",
            }
        )
    (folder / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def _config(folder, text: str) -> str:
    path = folder / "eval.yaml"
    path.write_text(text)
    return str(path)


UNIFORM_AND_RELEVANT = """labels: labels.jsonl
pipelines:
  uniform: {num_frames: 4}
  relevant: {relevant: 4, scorer: colour-scorer}
baseline: uniform
defaults: {max_new_tokens: 4}
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYFRAME_QA_CACHE_DIR", str(tmp_path / "cache"))


def _run(config: str, run_dir, oracle=None, scorer=None, **options):
    from keyframe_qa.jobs.eval import run_eval

    oracle = oracle or ColourAnswerOracle()
    engines = {"uniform": oracle, "relevant": oracle}
    return run_eval(config, str(run_dir), engines=engines, scorer=scorer or ColourScorer(), progress=False, **options)


def test_relevant_frames_beat_uniform_ones_by_what_the_clips_imply(stretch_clips, tmp_path):
    config = _config(stretch_clips, UNIFORM_AND_RELEVANT)
    run = _run(config, tmp_path / "run", html=str(tmp_path / "page.html"))
    uniform, relevant = run.summary["pipelines"]["uniform"], run.summary["pipelines"]["relevant"]
    # Uniform frames see the square in 3 of the 6 videos (their 3 green questions each), and every red
    # question (no) is right. --relevant finds it everywhere.
    assert uniform["score"] == pytest.approx((3 * 3 + 6) / 24) and uniform["items"] == 24 and uniform["videos"] == 6
    assert relevant["score"] == 1.0 and relevant["unanswered"] == 0
    paired = run.summary["paired"]["relevant"]
    assert paired["difference"] == pytest.approx(9 / 24) and paired["discordant"] == [0, 9]
    assert paired["interval"][0] > 0  # the improvement is real: its interval excludes zero
    assert paired["mcnemar_p"] == pytest.approx(stats.binomtest(0, 9, 0.5).pvalue, rel=1e-5)
    assert uniform["kinds"]["yesno"]["items"] == 24
    assert set(uniform["groups"]["stretch"]) == {"early", "late", "any"}
    assert uniform["groups"]["stretch"]["any"]["score"] == 1.0
    assert uniform["cost"]["calls"] > 0 and uniform["cost"]["visual_tokens"] > 0
    with open(tmp_path / "run" / "summary.json") as handle:
        assert json.load(handle) == run.summary
    items = [json.loads(line) for line in open(tmp_path / "run" / "uniform.items.jsonl")]
    assert len(items) == 24 and {"id", "score", "prediction", "reason", "frames"} <= set(items[0])
    assert "relevant - uniform: +0.375" in run.table


def test_a_killed_run_resumes_without_answering_anything_twice(stretch_clips, tmp_path):
    config = _config(stretch_clips, UNIFORM_AND_RELEVANT)
    whole = _run(config, tmp_path / "whole")

    class Killed(ColourAnswerOracle):
        def answer(self, prompt, questions, settings):
            if self.calls == 4:
                raise KeyboardInterrupt  # as if the process were killed after four videos
            return super().answer(prompt, questions, settings)

    with pytest.raises(KeyboardInterrupt):
        _run(config, tmp_path / "run", oracle=Killed())
    again = ColourAnswerOracle()
    resumed = _run(config, tmp_path / "run", oracle=again)
    assert again.calls == 2 * len(STRETCHES) - 4  # the four answered before the kill are not asked again
    for name in ("uniform", "relevant"):
        for key in ("score", "interval", "items", "kinds", "groups"):
            assert resumed.summary["pipelines"][name][key] == whole.summary["pipelines"][name][key]
    assert resumed.summary["paired"] == whole.summary["paired"]
    idle = ColourAnswerOracle()
    assert _run(config, tmp_path / "run", oracle=idle).summary["paired"] == whole.summary["paired"]
    assert idle.calls == 0  # everything answered: only scored again


@pytest.mark.parametrize(
    "config, fragment",
    [
        ("labels: labels.jsonl\npipelines:\n  a: {num_frames: 4, every: 2}\n", "pipelines.a: choose frames one way"),
        ("labels: labels.jsonl\npipelines:\n  a: {frames_please: 4}\n", "pipelines.a.frames_please: unknown key"),
        ("labels: labels.jsonl\npipelines:\n  a: {num_frames: 0}\n", "pipelines.a.num_frames"),
        ("labels: labels.jsonl\npipelines:\n  a: {num_frames: 4}\nbaseline: b\n", "baseline 'b' is not one of"),
        ("labels: labels.jsonl\npipelines:\n  a: {candidates: keyframes}\n", "goes with --relevant"),
        ("labels: missing.jsonl\npipelines:\n  a: {}\n", "missing.jsonl: cannot be read"),
    ],
)
def test_a_config_that_cannot_work_is_refused_before_any_model_loads(stretch_clips, tmp_path, capsys, config, fragment):
    path = tmp_path / "eval.yaml"
    path.write_text(config.replace("labels.jsonl", str(stretch_clips / "labels.jsonl")))
    code, _, err = run(capsys, "eval", str(path), "-o", str(tmp_path / "run"))
    assert code == 2 and fragment in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_span_past_the_videos_end_is_refused(stretch_clips, tmp_path, capsys):
    labels = tmp_path / "spans.jsonl"
    labels.write_text(
        json.dumps(
            {"video": str(stretch_clips / "clip0.mp4"), "kind": "span", "query": "the square", "span": [8.0, 12.5]}
        )
        + "\n"
    )
    path = tmp_path / "eval.yaml"
    path.write_text(f"labels: {labels}\npipelines:\n  a: {{}}\n")
    code, _, err = run(capsys, "eval", str(path), "-o", str(tmp_path / "run"))
    assert code == 2
    assert "spans.jsonl:1: span [8, 12.5] ends after the video's end (10 s)" in err


def test_the_real_engines_run_the_same_path(stretch_clips, tmp_path, capsys, tiny_model, openai_server):
    labels = tmp_path / "labels.jsonl"
    rows = [
        {"video": str(stretch_clips / "clip0.mp4"), "kind": "yesno", "question": "Green?", "answer": "yes"},
        {
            "video": str(stretch_clips / "clip0.mp4"),
            "kind": "choice",
            "question": "What is shown?",
            "at": "4.5",
            "options": ["a square", "a circle"],
            "answer": "A",
        },
        {
            "video": str(stretch_clips / "clip1.mp4"),
            "kind": "short",
            "question": "Colour?",
            "answer": "green",
            "match": "contains",
            "colour": "green",
        },
        {
            "video": str(stretch_clips / "clip1.mp4"),
            "kind": "box",
            "find": "the square",
            "at": 4.5,
            "box": [50, 30, 110, 90],
        },
        {"video": str(stretch_clips / "clip2.mp4"), "kind": "span", "query": "the green square", "span": [1.0, 2.9]},
    ]
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = tmp_path / "eval.yaml"
    path.write_text(f"""labels: {labels}
pipelines:
  here: {{num_frames: 2}}
  served: {{num_frames: 2, engine: openai, base_url: "{openai_server}"}}
defaults: {{model: {tiny_model}, max_new_tokens: 4, window_frames: 4, max_visual_tokens: 256}}
""")
    code, out, err = run(capsys, "eval", str(path), "-o", str(tmp_path / "run"))
    assert code == 0, err
    with open(tmp_path / "run" / "summary.json") as handle:
        summary = json.load(handle)
    assert set(summary["pipelines"]) == {"here", "served"} and summary["baseline"] == "here"
    here = summary["pipelines"]["here"]
    assert here["items"] == 5 and set(here["kinds"]) == {"yesno", "choice", "short", "box", "span"}
    assert {"miou", "recall"} <= set(here["kinds"]["span"]) and "hit" in here["kinds"]["box"]
    # The same greedy model in process and behind the server: the same predictions, item by item (the
    # server's text of the tiny model's replies starts with the prompt's tail: helpers.assert_same_generation).
    items = {
        name: [json.loads(line) for line in open(tmp_path / "run" / f"{name}.items.jsonl")]
        for name in ("here", "served")
    }
    for mine, theirs in zip(items["here"], items["served"]):
        if isinstance(mine["prediction"], str):
            assert theirs["prediction"].endswith(mine["prediction"])
        else:
            assert theirs["prediction"] == mine["prediction"], (mine, theirs)
    assert [i["kind"] for i in items["here"]] == ["yesno", "choice", "short", "box", "span"]
    assert "here" in out and "served - here" in out
    assert os.path.exists(tmp_path / "run" / "here.jsonl")


def test_the_page_charts_the_scores_and_shows_the_disagreements_with_their_frames(stretch_clips, tmp_path):
    from html.parser import HTMLParser

    run = _run(_config(stretch_clips, UNIFORM_AND_RELEVANT), tmp_path / "run", html=str(tmp_path / "page.html"))
    page = (tmp_path / "page.html").read_text()

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found: list[tuple[str, dict]] = []

        def handle_starttag(self, tag, attrs):
            self.found.append((tag, dict(attrs)))

    tags = Tags()
    tags.feed(page)
    bars = [a for t, a in tags.found if t == "rect" and a.get("class") == "score"]
    whiskers = [a for t, a in tags.found if t == "line" and a.get("class") == "interval"]
    # Two pipelines overall, then each group of each pipeline (early, late, any: 3 x 2); an interval is drawn
    # wherever there is one (a group of one video has none).
    records = list(run.summary["pipelines"].values())
    records += [g for p in run.summary["pipelines"].values() for g in p["groups"]["stretch"].values()]
    assert len(bars) == 2 + 6 and len(whiskers) == sum(1 for r in records if r["interval"]) >= 4
    assert float(bars[1]["width"]) > float(bars[0]["width"])  # relevant's bar is longer
    assert page.count("class='item'") == run.summary["paired"]["relevant"]["discordant"][1] == 9
    pictures = [a for t, a in tags.found if t == "img"]
    assert pictures and all(a["src"].startswith("data:image/jpeg;base64,") for a in pictures)
    assert "<script" not in page and "relevant - uniform" in page


@pytest.mark.slow
def test_the_page_renders_in_headless_chromium(stretch_clips, tmp_path):
    import subprocess

    import cv2

    chromium = chromium_or_skip()
    run = _run(_config(stretch_clips, UNIFORM_AND_RELEVANT), tmp_path / "run", html=str(tmp_path / "page.html"))
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (tmp_path / "page.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The browser's own parse of the page holds every bar, every disagreement and every thumbnail.
    assert dom.stdout.count('class="score"') == 8 and dom.stdout.count('class="item"') == 9
    assert dom.stdout.count("data:image/jpeg;base64,") == (tmp_path / "page.html").read_text().count("<img")
    shot = tmp_path / "page.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,1400", url], capture_output=True, timeout=120)
    picture = cv2.imread(str(shot))
    assert picture is not None
    bars = np.all(np.abs(picture.astype(int) - (216, 166, 122)) < 12, axis=2)  # the bars' #7aa6d8, in BGR
    assert bars.sum() > 1000  # the chart is drawn, not just present
    assert run.summary["paired"]["relevant"]["difference"] > 0


def test_lmms_evals_misreadings_are_read_right():
    # The first capital A-D anywhere is lmms-eval's Video-MME reading; these replies defeat it.
    options = ("a cat", "a dog", "a bird", "a fish")
    assert read_choice("Based on the video, the answer is C.", options) == 2  # not the B of "Based"
    assert read_choice("A man is running, so the answer is D.", options) == 3  # not the A of "A man"
    assert read_choice("It is a fish.", options) == 3  # the option's text, without its letter
