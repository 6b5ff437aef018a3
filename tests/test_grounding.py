"""Box parsing on reply strings of each family, into display-frame pixels."""

import pytest

from keyframe_qa.grounding import parse_boxes

FRAME = (1280, 720)


def test_qwen2_vl_special_token_boxes_on_a_1000_grid():
    reply = "<|object_ref_start|>red car<|object_ref_end|><|box_start|>(100,200),(500,750)<|box_end|><|im_end|>"
    (box,) = parse_boxes(reply, "qwen2-vl", (1288, 728), FRAME)
    assert box.label == "red car"
    assert box.bbox == (128.0, 144.0, 640.0, 540.0)


def test_qwen2_vl_boxes_without_special_tokens():
    (box,) = parse_boxes("red car (100,200),(500,750)", "qwen2-vl", (1288, 728), FRAME)
    assert box.bbox == (128.0, 144.0, 640.0, 540.0)


def test_qwen2_5_vl_boxes_are_in_model_input_pixels():
    reply = '```json\n[{"bbox_2d": [322, 182, 644, 364], "label": "dog"}]\n```'
    (box,) = parse_boxes(reply, "absolute-json", (644, 364), FRAME)
    assert box.label == "dog"
    assert box.bbox == (640.0, 360.0, 1280.0, 720.0)


def test_qwen3_vl_boxes_are_relative_to_1000_and_clipped_and_ordered():
    reply = '[{"bbox_2d": [500, 500, 100, 1200], "label": "x"}, {"point_2d": [250, 500], "label": "p"}]'
    box, point = parse_boxes(reply, "relative-json", (640, 352), FRAME)
    assert box.bbox == (128.0, 360.0, 640.0, 720.0)
    assert point.bbox == (320.0, 360.0, 320.0, 360.0)


def test_truncated_json_list_keeps_complete_boxes():
    reply = '[{"bbox_2d": [0, 0, 500, 500], "label": "a"}, {"bbox_2d": [10, 10'
    boxes = parse_boxes(reply, "relative-json", (640, 352), FRAME)
    assert [b.label for b in boxes] == ["a"]


@pytest.mark.parametrize("reply", ["", "no boxes here", "[{]", '{"bbox_2d": "nope"}', "(1,2),(3", "```json\n{", "\x00\xff"])
@pytest.mark.parametrize("fmt", ["qwen2-vl", "absolute-json", "relative-json"])
def test_garbage_gives_no_box_and_no_exception(reply, fmt):
    assert parse_boxes(reply, fmt, (640, 352), FRAME) == []
