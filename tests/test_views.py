"""Annotated frames and the HTML page: they open, show the boxes, and never run model text."""

import base64
import os
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from keyframe_qa.outputs.annotate import draw_boxes
from keyframe_qa.outputs.html import render_html
from keyframe_qa.records import Answer, Box
from keyframe_qa.video.probe import probe
from tests.helpers import ask_json, assert_one_line_error, run


@pytest.mark.parametrize("background", [10, 245])
def test_boxes_and_labels_are_drawn_on_dark_and_light_frames(background):
    image = np.full((200, 300, 3), background, np.uint8)
    drawn = draw_boxes(image, [Box("car", 0, (50.0, 60.0, 250.0, 180.0))])
    assert drawn is not image and np.all(image == background)  # the frame itself is untouched
    edge = drawn[120, 50].astype(int)
    assert np.abs(edge - background).max() > 100  # the stroke stands out from the background
    assert np.all(drawn[120, 150] == background)  # the inside is left as it was
    plate = drawn[40:58, 52:80]  # the label sits on a dark plate above the box, with white text
    assert plate.min() < 40 and plate.max() > 200


def test_points_are_drawn():
    drawn = draw_boxes(np.zeros((100, 100, 3), np.uint8), [Box("eye", 0, (50.0, 50.0, 50.0, 50.0), kind="point")])
    assert drawn[40:60, 40:60].max() > 100


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_model_text_is_escaped_in_the_html(videos):
    video = probe(videos["plain.mp4"])
    from keyframe_qa.video.frames import read_frames

    frames = read_frames(video, [1.0, 2.0])
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    answers = [
        Answer(
            question=f"Q {evil}", answer=f"It is {evil}", raw=evil, boxes=(Box(evil, 1, (10.0, 10.0, 100.0, 100.0)),)
        )
    ]
    page = render_html(video.info, frames, answers, model_id=evil)
    parsed = _Collector()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert parsed.tags.count("img") == 2  # the two thumbnails, not the model's <img>
    assert any('<script>alert("x")</script>' in text for text in parsed.text)  # shown as text
    for src in parsed.images:
        assert src.startswith("data:image/jpeg;base64,")
        image = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (240, 320)


def test_find_annotate_and_html_end_to_end(capsys, videos, tiny_model, tmp_path):
    report = ask_json(
        capsys,
        videos["cut.mp4"],
        "--find",
        "red square",
        "--at",
        "1,3",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "4",
        "--annotate",
        str(tmp_path / "annotated"),
        "--html",
        str(tmp_path / "page.html"),
    )
    (answer,) = report["answers"]
    assert answer["find"] == "red square"
    assert '"red square"' in answer["question"] and "Frame 2" in answer["question"]
    for record in report["frames"]:
        image = cv2.imread(record["annotated"])
        assert image is not None and image.shape[:2] == (240, 320)
    assert report["html"] == str(tmp_path / "page.html")
    parsed = _Collector()
    parsed.feed((tmp_path / "page.html").read_text())
    assert parsed.tags.count("img") == 2 and "script" not in parsed.tags
    assert oct(os.stat(tmp_path / "page.html").st_mode & 0o777) != oct(0o600)  # not left private by mkstemp
    text = " ".join(parsed.text)
    # The object asked for, not the grounding prompt we built; the time asked beside the time shown.
    assert "Find: red square" in text and answer["question"] not in text
    assert "Frame 1 at 0:00:01.000 (asked for 0:00:01.000; frame 10)" in text


def test_the_page_shows_the_time_asked_when_it_differs_from_the_frames(capsys, videos, tiny_model, tmp_path):
    ask_json(
        capsys,
        videos["plain.mp4"],
        "q?",
        "--at",
        "0.55",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "--html",
        str(tmp_path / "page.html"),
    )
    parsed = _Collector()
    parsed.feed((tmp_path / "page.html").read_text())
    assert "Frame 1 at 0:00:00.500 (asked for 0:00:00.550; frame 5)" in " ".join(parsed.text)


def _plate_height(image: np.ndarray) -> int:
    """Rows of the dark label plate: on a white frame, rows holding a long run of near-black pixels."""
    dark = image.max(axis=2) < 60
    return int(sum(1 for row in dark if row.sum() >= 20))


def test_box_labels_stay_readable_on_thumbnails_of_large_frames():
    from keyframe_qa.outputs.html import THUMBNAIL_SIDE, thumbnail

    small = np.full((360, 640, 3), 255, np.uint8)  # already thumbnail size: the reference label
    big = np.full((2160, 3840, 3), 255, np.uint8)  # a 4K frame, shrunk 6x for the page
    label = "forklift"
    heights = []
    for image in (small, big):
        factor = image.shape[1] / 640
        box = Box(label, 0, (100.0 * factor, 150.0 * factor, 400.0 * factor, 300.0 * factor))
        src = thumbnail(image, [box])
        shown = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert max(shown.shape[:2]) == THUMBNAIL_SIDE
        heights.append(_plate_height(shown))
    assert heights[0] >= 12  # a plate a person can read text on
    assert heights[1] == pytest.approx(heights[0], abs=2)  # the 4K frame's label is as large, not 6x smaller


def test_find_with_questions_and_per_frame(capsys, videos, tiny_models):
    report = ask_json(
        capsys,
        videos["plain.mp4"],
        "What is it?",
        "--find",
        "marker",
        "--every",
        "3",
        "--per-frame",
        "--model",
        tiny_models("qwen2.5-vl"),
        "--max-new-tokens",
        "3",
    )
    assert [(a["frame"], "find" in a) for a in report["answers"]] == [(0, False), (0, True), (1, False), (1, True)]
    assert "frame" not in report["answers"][1]["question"].split("JSON")[1]  # one frame per prompt: no frame key


def test_empty_find_and_no_question_are_usage_errors(capsys, videos, tiny_model):
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "--at", "1", "--model", tiny_model)
    assert code == 2
    assert_one_line_error(err, "at least one question")
    code, out, err = run(capsys, "ask", videos["plain.mp4"], "--at", "1", "--find", "  ", "--model", tiny_model)
    assert code == 2
    assert_one_line_error(err, "--find")
