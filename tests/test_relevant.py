"""`--relevant N`: the selection (BOLT's inverse-transform sampling with coverage) on given scores, on a
clip where one stretch shows a green square (a stand-in scorer that scores by that colour: the selection
is what is under test), and the real path with tiny random CLIP and SigLIP checkpoints: both towers, the
cache, the device, the CLI of ask, frames and batch, the HTML curve, and every refusal."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyframe_qa.selection.relevance import select_relevant
from keyframe_qa.selection.relevant import candidate_numbers
from keyframe_qa.selection.select import SelectionRequest, select
from keyframe_qa.testing.oracle import ColourScorer
from keyframe_qa.testing.synthetic import draw_frame, write_pictures
from keyframe_qa.video.probe import probe
from tests.helpers import assert_one_line_error, run

SEGMENT = (120, 179)  # frames showing the green square: 12.0 s to 17.9 s of a 30 s clip at 10 fps


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYFRAME_QA_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def segment_clip(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("relevant") / "segment.mp4")

    def pictures():
        for number in range(300):
            image = draw_frame(number, 160, 120)
            if SEGMENT[0] <= number <= SEGMENT[1]:
                image[40:100, 90:150] = (0, 200, 0)
            yield image

    write_pictures(path, pictures(), fps=10, gop=20, bframes=2)
    return path


# --- the selection on given scores ---------------------------------------------------------------------

scores = st.lists(st.floats(min_value=-1, max_value=1, allow_nan=False), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(scores, st.data())
def test_n_unique_sorted_candidates_and_the_same_answer_twice(values, data):
    count = data.draw(st.integers(min_value=1, max_value=len(values)))
    chosen = select_relevant(values, count)
    assert len(chosen) == count and chosen == sorted(set(chosen))
    assert all(0 <= position < len(values) for position in chosen)
    assert select_relevant(list(values), count) == chosen


@pytest.mark.parametrize("total, count", [(10, 10), (60, 8), (300, 16), (1000, 32), (7, 3)])
def test_flat_scores_give_uniform_sampling_over_the_whole_video(total, count):
    chosen = select_relevant([0.2] * total, count)
    gaps = np.diff(chosen)
    assert gaps.max() - gaps.min() <= 1  # evenly spaced, to the candidate
    assert chosen[0] <= total / count and chosen[-1] >= total - 1 - total / count  # the whole video covered


@pytest.mark.parametrize("total, count, where", [(100, 8, 0.45), (300, 16, 0.3), (1000, 32, 0.6), (600, 8, 0.5)])
def test_one_peak_takes_most_frames_and_the_rest_is_still_covered(total, count, where):
    values = np.random.RandomState(total).normal(0.1, 0.005, total)  # a little noise, as real scores have
    start, end = int(total * where), int(total * where) + total // 10
    values[start:end] += 0.3
    chosen = select_relevant(values, count)
    inside = [c for c in chosen if start <= c < end]
    assert len(inside) >= count // 2
    assert any(c < start for c in chosen) and any(c >= end for c in chosen)


# --- end to end on a clip, the selection under test (a scorer that scores by colour) --------------------


@pytest.mark.parametrize("candidates", ["keyframes", "1", "2"])
def test_relevant_picks_the_green_stretch_and_covers_the_rest(segment_clip, candidates):
    from keyframe_qa.jobs.ask import read_selected

    probed = probe(segment_clip)
    scorer = ColourScorer()
    request = SelectionRequest(relevant=8, candidates=candidates, queries=("a green square",))
    selection = select(probed, request, scorer=scorer)
    numbers = [probed.index.frame_number_at(t) for t in selection.times]
    inside = [n for n in numbers if SEGMENT[0] <= n <= SEGMENT[1]]
    can = [n for n in candidate_numbers(probed, candidates) if SEGMENT[0] <= n <= SEGMENT[1]]
    assert len(numbers) == 8 and len(inside) >= min(4, len(can)), numbers  # keyframes: only 3 lie inside
    assert min(numbers) < SEGMENT[0] and max(numbers) > SEGMENT[1], numbers
    record = selection.record
    assert record["method"] == "relevant" and record["candidates"] == candidates and record["cache"] == "miss"
    assert record["scored"] == len(candidate_numbers(probed, candidates)) == scorer.images
    assert record["scorer"]["id"] == "colour-scorer" and record["queries"] == ["a green square"]
    assert len(record["curve"]) == record["scored"] and max(r for _, r in record["curve"]) == 1.0
    frames = read_selected(probed, selection)
    assert [f.frame_number for f in frames] == numbers  # the exact frames scored, read again in full
    assert all(f.relevance == 1.0 for f in frames if SEGMENT[0] <= f.frame_number <= SEGMENT[1])


def test_candidate_sets(segment_clip):
    probed = probe(segment_clip)
    assert candidate_numbers(probed, "keyframes") == list(range(0, 300, 20))  # gop 20: the I-frames
    assert candidate_numbers(probed, "1") == list(range(0, 300, 10))
    assert candidate_numbers(probed, "0.25") == [0, 40, 80, 120, 160, 200, 240, 280]


def test_a_second_question_costs_no_image_embedding(segment_clip):
    probed = probe(segment_clip)
    scorer = ColourScorer()
    first = select(probed, SelectionRequest(relevant=6, queries=("green",)), scorer=scorer)
    embedded = scorer.images
    second = select(probed, SelectionRequest(relevant=6, queries=("something else",)), scorer=scorer)
    assert (first.record["cache"], second.record["cache"]) == ("miss", "hit")
    assert scorer.images == embedded and second.times == first.times
    off = select(probed, SelectionRequest(relevant=6, queries=("green",), use_cache=False), scorer=scorer)
    assert off.record["cache"] == "off" and scorer.images == 2 * embedded


def test_a_damaged_cache_entry_is_ignored_with_one_warning_and_replaced(segment_clip, tmp_path, capsys):
    probed = probe(segment_clip)
    select(probed, SelectionRequest(relevant=6, queries=("green",)), scorer=ColourScorer())
    (entry,) = (tmp_path / "cache" / "relevance").iterdir()
    record = json.loads(entry.read_text())
    record["payload"]["embeddings"] = record["payload"]["embeddings"][:-8]
    entry.write_text(json.dumps(record))
    capsys.readouterr()
    again = select(probed, SelectionRequest(relevant=6, queries=("green",)), scorer=ColourScorer())
    assert again.record["cache"] == "miss" and str(entry) in capsys.readouterr().err
    assert (
        select(probed, SelectionRequest(relevant=6, queries=("green",)), scorer=ColourScorer()).record["cache"] == "hit"
    )


# --- the real scorers (tiny random CLIP and SigLIP) ------------------------------------------------------


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_frames_relevant_with_a_real_scorer_and_its_cache(capsys, segment_clip, tiny_scorers, tmp_path, kind):
    scorer = tiny_scorers(kind)
    common = [
        "frames",
        segment_clip,
        "--relevant",
        "5",
        "--query",
        "a green square",
        "--scorer",
        scorer,
        "--device",
        "cpu",
        "--candidates",
        "keyframes",
    ]
    code, _, err = run(capsys, *common, "--out", str(tmp_path / "a"))
    assert code == 0, err
    index = json.loads((tmp_path / "a" / "frames.json").read_text())
    selection = index["selection"]
    assert selection["scorer"] == {"id": scorer, "type": kind, "device": "cpu", "dtype": "float32"}
    assert selection["cache"] == "miss" and selection["scored"] == 15 and selection["candidates"] == "keyframes"
    assert len(index["frames"]) == 5 and all(0 <= f["relevance"] <= 1 for f in index["frames"])
    assert all(f["frame_number"] % 20 == 0 for f in index["frames"])  # keyframes, read exactly
    code, _, err = run(capsys, *common, "--out", str(tmp_path / "b"))
    again = json.loads((tmp_path / "b" / "frames.json").read_text())
    assert again["selection"]["cache"] == "hit"
    assert [f["frame_number"] for f in again["frames"]] == [f["frame_number"] for f in index["frames"]]


def test_the_scorer_embeds_both_towers_to_unit_vectors(tiny_scorers):
    from keyframe_qa.engines.scorer import load_scorer

    scorer = load_scorer(tiny_scorers("siglip"), "cpu")
    assert load_scorer(tiny_scorers("siglip"), "cpu") is scorer  # loaded once per process
    images = scorer.embed_images([np.zeros((40, 50, 3), np.uint8), np.full((60, 30, 3), 200, np.uint8)])
    texts = scorer.embed_texts(["a green square", "x"])
    assert images.shape == (2, texts.shape[1]) and np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5) and scorer.input_size == (32, 32)


def test_a_changed_video_or_scorer_misses_the_cache(capsys, segment_clip, tiny_scorers, tmp_path):
    from keyframe_qa.testing.tiny_scorer import build_tiny_scorer

    video = tmp_path / "clip.mp4"
    video.write_bytes(open(segment_clip, "rb").read())
    first = build_tiny_scorer(str(tmp_path / "scorer"), "clip", seed=1)

    def cache_state(scorer):
        code, _, err = run(
            capsys,
            "frames",
            str(video),
            "--relevant",
            "3",
            "--query",
            "green",
            "--scorer",
            scorer,
            "--out",
            str(tmp_path / "out"),
            "--candidates",
            "keyframes",
        )
        assert code == 0, err
        return json.loads((tmp_path / "out" / "frames.json").read_text())["selection"]["cache"]

    assert cache_state(first) == "miss" and cache_state(first) == "hit"
    os.utime(video, ns=(1_000_000_000, 1_000_000_000))  # the video changed (its modification time)
    assert cache_state(first) == "miss" and cache_state(first) == "hit"
    from keyframe_qa.engines import scorer as scorer_module

    scorer_module._LOADED.clear()  # a retrained checkpoint in the same folder, loaded by a new process
    build_tiny_scorer(first, "clip", seed=2)
    assert cache_state(first) == "miss"


def test_ask_relevant_with_the_html_curve(capsys, segment_clip, tiny_scorers, tiny_model, tmp_path):
    page = tmp_path / "page.html"
    code, out, err = run(
        capsys,
        "ask",
        segment_clip,
        "Is there a green square?",
        "--relevant",
        "4",
        "--scorer",
        tiny_scorers("clip"),
        "--model",
        tiny_model,
        "--max-new-tokens",
        "3",
        "--html",
        str(page),
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["selection"]["method"] == "relevant" and report["selection"]["queries"] == [
        "Is there a green square?"
    ]
    assert len(report["frames"]) == 4 and all("relevance" in f for f in report["frames"])
    text = page.read_text()
    assert "<polyline" in text and text.count("<circle cx=") == 4 and "relevance" in text
    # Axes: relevance 0, 0.5 and 1; the 30 s of video ticked every 5 s; and a key to the marks.
    import re

    assert re.findall(r'text-anchor="end">([\d.]+)</text>', text) == ["0", "0.5", "1"]
    assert re.findall(r'text-anchor="middle">([\d.]+)s</text>', text) == [str(5 * i) for i in range(7)]
    assert ">relevance</text>" in text and ">time in the video</text>" in text
    assert "relevance of each candidate" in text and "a chosen frame" in text


def test_batch_relevant_gives_each_video_its_frames(capsys, segment_clip, tiny_scorers, tiny_model, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(open(segment_clip, "rb").read())
    output = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys,
        "batch",
        str(folder),
        "-q",
        "green?",
        "--relevant",
        "3",
        "--scorer",
        tiny_scorers("siglip"),
        "--model",
        tiny_model,
        "--max-new-tokens",
        "3",
        "-o",
        str(output),
    )
    assert code == 0, err
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 2 and all(line["selection"]["method"] == "relevant" for line in lines)
    assert all(len(line["frames"]) == 3 for line in lines)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--relevant", "40", "--candidates", "keyframes"], "more than the 15 candidate frames"),
        (["--relevant", "4", "--num-frames", "4"], "--num-frames and --relevant cannot be combined"),
        (["--relevant", "4", "--candidates", "often"], "--candidates must be keyframes or a rate"),
        (["--relevant", "0"], "--relevant"),
        (["--relevant", "400"], "has only 300"),
    ],
)
def test_usage_errors(capsys, segment_clip, tiny_scorers, tiny_model, args, fragment):
    code, _, err = run(
        capsys, "ask", segment_clip, "q", *args, "--scorer", tiny_scorers("siglip"), "--model", tiny_model
    )
    assert code == 2
    assert_one_line_error(err, fragment)


def test_a_scorer_that_is_not_an_image_text_model_is_refused_before_the_video_is_read(
    capsys, segment_clip, tiny_model, tmp_path, monkeypatch
):
    import keyframe_qa.jobs.ask as ask_module

    def forbidden(*args, **kwargs):
        raise AssertionError("the video was probed")

    monkeypatch.setattr(ask_module, "probe", forbidden)
    code, _, err = run(
        capsys, "ask", segment_clip, "q", "--relevant", "4", "--scorer", tiny_model, "--model", tiny_model
    )
    assert code == 2
    assert_one_line_error(err, "not an image-text embedding model")
    code, _, err = run(
        capsys,
        "frames",
        segment_clip,
        "--relevant",
        "4",
        "--query",
        "q",
        "--scorer",
        tiny_model,
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and not (tmp_path / "o").exists()
    assert_one_line_error(err, "not an image-text embedding model")


def test_a_scorer_missing_offline_is_the_missing_model_error(capsys, segment_clip, tiny_model, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code, _, err = run(
        capsys, "ask", segment_clip, "q", "--relevant", "4", "--scorer", "nobody/no-such-scorer", "--model", tiny_model
    )
    assert code == 1
    assert_one_line_error(err, "model 'nobody/no-such-scorer' not found")
    assert "pass --scorer /path/to/checkpoint" in err and "--model" not in err


@pytest.mark.parametrize(
    "command",
    [
        ["frames", "{clip}", "--relevant", "4", "--out", "{out}"],
        ["ask", "{clip}", "q", "--relevant", "4", "--when", "x"],
    ],
)
def test_relevant_needs_its_text_and_goes_alone(capsys, segment_clip, tiny_scorers, tiny_model, tmp_path, command):
    args = [a.format(clip=segment_clip, out=str(tmp_path / "o")) for a in command]
    extra = ["--model", tiny_model] if args[0] == "ask" else []
    code, _, err = run(capsys, *args, "--scorer", tiny_scorers("siglip"), *extra)
    assert code == 2
    assert_one_line_error(err, "--query TEXT" if args[0] == "frames" else "without --at")


def test_more_frames_than_candidates_is_refused_before_the_scorer_loads(
    capsys, segment_clip, tiny_scorers, monkeypatch, tmp_path
):
    import keyframe_qa.engines.scorer as scorer_module

    def forbidden(*args, **kwargs):
        raise AssertionError("the scorer was loaded")

    scorer = tiny_scorers("clip")
    capsys.readouterr()  # building it (once a session) may have written to stderr
    monkeypatch.setattr(scorer_module, "load_scorer", forbidden)
    code, _, err = run(
        capsys,
        "frames",
        segment_clip,
        "--relevant",
        "16",
        "--candidates",
        "keyframes",
        "--query",
        "q",
        "--scorer",
        scorer,
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2
    assert_one_line_error(err, "more than the 15 candidate frames")


def test_a_scorer_whose_embeddings_are_nan_is_a_clear_error(capsys, segment_clip, tiny_scorers, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "nan-scorer"
    shutil.copytree(tiny_scorers("clip"), broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights = {
        name: torch.full_like(t, float("nan")) if "visual_projection" in name else t for name, t in weights.items()
    }
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    code, out, err = run(
        capsys,
        "ask",
        segment_clip,
        "q",
        "--relevant",
        "3",
        "--scorer",
        str(broken),
        "--model",
        "unused",
        "--candidates",
        "keyframes",
    )
    assert code == 1, err
    assert_one_line_error(err, "gave embeddings that are not numbers (NaN or infinite) for 15 of 15 candidate frames")
    assert out == ""


def test_no_nan_reaches_the_json_we_write(capsys):
    from keyframe_qa.outputs.report import to_json

    text = to_json({"a": [1.0, float("nan")], "b": {"c": float("inf")}, "d": 2})
    assert json.loads(text) == {"a": [1.0, None], "b": {"c": None}, "d": 2}
    assert "NaN" not in text and "Infinity" not in text
    err = capsys.readouterr().err
    assert "2 numbers that JSON cannot hold (NaN or infinite) written as null: a[1], b.c" in err


@pytest.mark.parametrize("where", ["preprocessor", "config"])
def test_a_scorer_asking_for_huge_inputs_is_refused_before_the_video_is_read(
    capsys, segment_clip, tiny_scorers, tmp_path, monkeypatch, where
):
    import shutil

    import keyframe_qa.jobs.frames as frames_module

    monkeypatch.setattr(frames_module, "probe", lambda *a, **k: pytest.fail("the video was probed"))
    huge = tmp_path / "huge-scorer"
    shutil.copytree(tiny_scorers("siglip"), huge)
    name = "processor_config.json" if where == "preprocessor" else "config.json"
    data = json.loads((huge / name).read_text())
    if where == "preprocessor":
        data["image_processor"]["size"] = {"height": 100000, "width": 100000}
    else:
        data["vision_config"]["image_size"] = 100000
    (huge / name).write_text(json.dumps(data))
    code, _, err = run(
        capsys,
        "frames",
        segment_clip,
        "--relevant",
        "2",
        "--query",
        "q",
        "--scorer",
        str(huge),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2, err
    assert_one_line_error(err, "asks for inputs 100000 pixels on a side")
