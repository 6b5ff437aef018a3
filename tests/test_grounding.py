"""Box parsing on reply strings of each family, into display-frame pixels."""

import json

import pytest

from keyframe_qa.replies.boxes import parse_boxes

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
    (box,) = parse_boxes(reply, "qwen2.5-vl", (644, 364), FRAME)
    assert box.label == "dog"
    assert box.bbox == (640.0, 360.0, 1280.0, 720.0)


def test_qwen3_vl_boxes_are_relative_to_1000_and_clipped_and_ordered():
    reply = '[{"bbox_2d": [500, 500, 100, 1200], "label": "x"}, {"point_2d": [250, 500], "label": "p"}]'
    box, point = parse_boxes(reply, "qwen3-vl", (640, 352), FRAME)
    assert box.bbox == (128.0, 360.0, 640.0, 720.0)
    assert point.bbox == (320.0, 360.0, 320.0, 360.0)


def test_truncated_json_list_keeps_complete_boxes():
    reply = '[{"bbox_2d": [0, 0, 500, 500], "label": "a"}, {"bbox_2d": [10, 10'
    boxes = parse_boxes(reply, "qwen3-vl", (640, 352), FRAME)
    assert [b.label for b in boxes] == ["a"]


@pytest.mark.parametrize(
    "reply", ["", "no boxes here", "[{]", '{"bbox_2d": "nope"}', "(1,2),(3", "```json\n{", "\x00\xff"]
)
@pytest.mark.parametrize("fmt", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_garbage_gives_no_box_and_no_exception(reply, fmt):
    assert parse_boxes(reply, fmt, (640, 352), FRAME) == []


# ---- more formats, points, display geometry ---------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from keyframe_qa.replies.boxes import FrameGeometry, find_boxes, grounding_prompt  # noqa: E402


def test_points_are_zero_size_boxes_flagged_as_points():
    (point,) = parse_boxes('{"point_2d": [500, 250], "label": "eye"}', "qwen3-vl", (640, 352), FRAME)
    assert point.kind == "point" and point.bbox == (640.0, 180.0, 640.0, 180.0)
    (box,) = parse_boxes('{"bbox_2d": [0, 0, 10, 10]}', "qwen3-vl", (640, 352), FRAME)
    assert box.kind == "box"


def test_qwen2_5_vl_bare_single_object_and_prose_around_it():
    reply = 'Sure! Here it is: {"bbox_2d": [100, 50, 200, 150], "label": "cat"} Hope that helps.'
    (box,) = parse_boxes(reply, "qwen2.5-vl", (400, 300), (800, 600))
    assert box.bbox == (200.0, 100.0, 400.0, 300.0)


def test_qwen2_vl_several_boxes_after_one_object_share_its_label():
    reply = (
        "<|object_ref_start|>bike<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
        "<|box_start|>(10,20),(30,40)<|box_end|> and <|box_start|>(5,5),(6,6)<|box_end|>"
    )
    labels = [b.label for b in parse_boxes(reply, "qwen2-vl", (1000, 1000), (1000, 1000))]
    assert labels == ["bike", "bike", ""]


def test_boxes_map_to_the_display_frame_of_a_sar_video():
    """704x576 at SAR 16:11 is shown 1024x576; the model saw a 1008x560 input of that display frame."""
    (box,) = parse_boxes('[{"bbox_2d": [504, 280, 1008, 560], "label": "x"}]', "qwen2.5-vl", (1008, 560), (1024, 576))
    assert box.bbox == (512.0, 288.0, 1024.0, 576.0)


def test_boxes_map_to_the_display_frame_of_a_rotated_video():
    """A 320x240 phone clip turned 90 degrees is shown 240x320: boxes are in that portrait space."""
    (box,) = parse_boxes("(0,500),(500,1000)", "qwen2-vl", (252, 308), (240, 320))
    assert box.bbox == (0.0, 160.0, 120.0, 320.0)


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError):
        parse_boxes("(1,2),(3,4)", "llava", (10, 10), (10, 10))


# ---- frame attribution ------------------------------------------------------------------------------------

THREE = [
    FrameGeometry(i, (644, 364), (1280, 720), label)
    for i, label in enumerate(["0:00:01.000", "0:00:05.500", "0:00:09.000"])
]


def test_a_frame_named_in_the_json_object_wins():
    reply = 'Frame 1 shows nothing. [{"bbox_2d": [0, 0, 322, 182], "label": "car", "frame": 3}]'
    (box,) = find_boxes(reply, "qwen2.5-vl", THREE)
    assert (box.frame, box.frame_source) == (2, "named")
    assert box.bbox == (0.0, 0.0, 640.0, 360.0)


def test_the_last_frame_mentioned_before_the_box_is_used():
    reply = (
        "In Frame 1 there is no car. In Frame 2: <|object_ref_start|>car<|object_ref_end|>"
        "<|box_start|>(0,0),(500,500)<|box_end|>. At 0:00:09.000 a <|object_ref_start|>bus<|object_ref_end|>"
        "<|box_start|>(500,500),(1000,1000)<|box_end|>"
    )
    car, bus = find_boxes(reply, "qwen2-vl", THREE)
    assert (car.frame, car.frame_source) == (1, "mentioned")
    assert (bus.frame, bus.frame_source) == (2, "mentioned")


def test_fallbacks_when_no_frame_is_named_before_the_box():
    later = find_boxes("(0,0),(10,10) is the car, in frame 3.", "qwen2-vl", THREE)
    assert [(b.frame, b.frame_source) for b in later] == [(2, "mentioned-later")]
    unknown = find_boxes("(0,0),(10,10) is the car; also frame 7 of 3.", "qwen2-vl", THREE)
    assert [(b.frame, b.frame_source) for b in unknown] == [(None, "unknown")]


def test_per_frame_and_single_frame_attribution():
    (box,) = find_boxes("Frame 3: (0,0),(10,10)", "qwen2-vl", THREE[:1])
    assert (box.frame, box.frame_source) == (0, "only-frame")
    (box,) = find_boxes("Frame 3: (0,0),(10,10)", "qwen2-vl", [THREE[1]], asked_about=1)
    assert (box.frame, box.frame_source) == (1, "per-frame")


def test_each_box_is_mapped_with_its_own_frames_size():
    frames = [FrameGeometry(0, (644, 364), (1280, 720)), FrameGeometry(1, (252, 308), (240, 320))]
    reply = '[{"bbox_2d": [0, 0, 644, 364], "frame": 1}, {"bbox_2d": [0, 0, 252, 308], "frame": 2}]'
    first, second = find_boxes(reply, "qwen2.5-vl", frames)
    assert first.bbox == (0.0, 0.0, 1280.0, 720.0)
    assert second.bbox == (0.0, 0.0, 240.0, 320.0)


def test_grounding_prompts_follow_the_family():
    assert "JSON" in grounding_prompt("red car", "qwen2.5-vl", 1) and '"red car"' in grounding_prompt(
        "red car", "qwen3-vl", 1
    )
    assert "frame" in grounding_prompt("red car", "qwen3-vl", 3) and "frame" not in grounding_prompt(
        "red car", "qwen3-vl", 1
    )
    assert "JSON" not in grounding_prompt("red car", "qwen2-vl", 2) and "Frame 2" in grounding_prompt(
        "x", "qwen2-vl", 2
    )


# ---- properties -------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from(["qwen2-vl", "qwen2.5-vl", "qwen3-vl"]))
def test_parsing_never_raises_on_arbitrary_text(text, family):
    for box in parse_boxes(text, family, (644, 364), FRAME):
        x1, y1, x2, y2 = box.bbox
        assert 0 <= x1 <= x2 <= FRAME[0] and 0 <= y1 <= y2 <= FRAME[1]
    find_boxes(text, family, THREE)


@st.composite
def frames_and_boxes(draw):
    width, height = draw(st.integers(16, 4000)), draw(st.integers(16, 4000))
    xs = sorted(draw(st.floats(0, width, allow_nan=False)) for _ in range(2))
    ys = sorted(draw(st.floats(0, height, allow_nan=False)) for _ in range(2))
    input_w, input_h = draw(st.integers(1, 60)) * 28, draw(st.integers(1, 60)) * 28
    return (width, height), (input_w, input_h), (xs[0], ys[0], xs[1], ys[1])


def encode(family, box, frame, model_input):
    (x1, y1, x2, y2), (w, h), (iw, ih) = box, frame, model_input
    if family == "qwen2.5-vl":
        coords = [round(x1 * iw / w), round(y1 * ih / h), round(x2 * iw / w), round(y2 * ih / h)]
        return json.dumps([{"bbox_2d": coords, "label": "thing"}]), (w / iw, h / ih)
    coords = [round(x1 * 1000 / w), round(y1 * 1000 / h), round(x2 * 1000 / w), round(y2 * 1000 / h)]
    if family == "qwen3-vl":
        return "```json\n" + json.dumps([{"bbox_2d": coords, "label": "thing"}]) + "\n```", (w / 1000, h / 1000)
    reply = "<|object_ref_start|>thing<|object_ref_end|><|box_start|>({},{}),({},{})<|box_end|>".format(*coords)
    return reply, (w / 1000, h / 1000)


@settings(max_examples=300, deadline=None)
@given(frames_and_boxes(), st.sampled_from(["qwen2-vl", "qwen2.5-vl", "qwen3-vl"]))
def test_boxes_round_trip_through_each_family_format(case, family):
    frame, model_input, box = case
    reply, (step_x, step_y) = encode(family, box, frame, model_input)
    (parsed,) = parse_boxes(reply, family, model_input, frame)
    assert parsed.label == "thing"
    # Quantisation to the family's grid loses at most half a step; 0.1 px for our own rounding.
    for got, want, step in zip(parsed.bbox, box, (step_x, step_y, step_x, step_y)):
        assert abs(got - want) <= step / 2 + 0.1


# Reply shapes real models produce (written here in those shapes, not copied from published replies).
INPUT, SPACE = (1000, 1000), (1000, 1000)  # Qwen2.5-VL input pixels = display pixels: numbers map 1:1


def boxes_of(reply, family="qwen2.5-vl"):
    return [(b.label, b.bbox, b.kind) for b in parse_boxes(reply, family, INPUT, SPACE)]


def test_trailing_commas_in_every_object_like_an_ocr_text_spotting_reply():
    lines = [f'  {{"bbox_2d": [{10 * i}, 20, {10 * i + 8}, 40], "text_content": "word{i}",}},' for i in range(39)]
    reply = "```json\n[\n" + "\n".join(lines) + "\n]\n```"
    found = boxes_of(reply)
    assert len(found) == 39
    assert found[0] == ("word0", (0.0, 20.0, 8.0, 40.0), "box") and found[-1][0] == "word38"


def test_single_quotes_and_python_literals():
    reply = "[{'bbox_2d': (10, 20, 30, 40), 'label': 'cup', 'visible': True, 'note': None}, {'point_2d': [5, 6]}]"
    assert boxes_of(reply) == [("cup", (10.0, 20.0, 30.0, 40.0), "box"), ("", (5.0, 6.0, 5.0, 6.0), "point")]


def test_boxes_inside_tool_call_arguments_as_an_object_and_as_a_string():
    reply = (
        'I will zoom in.\n<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [100, 200, 300, 400],'
        ' "label": "street sign"}}\n</tool_call>\nThen:\n<tool_call>{"name": "crop", "arguments": '
        '"{\\"bbox_2d\\": [1, 2, 3, 4]}"}</tool_call>'
    )
    assert boxes_of(reply) == [("street sign", (100.0, 200.0, 300.0, 400.0), "box"), ("", (1.0, 2.0, 3.0, 4.0), "box")]


def test_boxes_nested_in_an_objects_key_and_in_several_blocks():
    reply = (
        'Cars:\n```json\n{"objects": [{"bbox_2d": [1, 1, 2, 2], "label": "car"}]}\n```\n'
        'People:\n```json\n[{"bbox_2d": [3, 3, 4, 4], "label": "person"}]\n```'
    )
    assert [label for label, _, _ in boxes_of(reply)] == ["car", "person"]


@pytest.mark.parametrize(
    "fields, label",
    [
        ({"label": "L", "name": "N", "description": "D"}, "L"),
        ({"text_content": "T", "name": "N"}, "T"),
        ({"name": "N", "description": "D"}, "N"),
        ({"name_en": "E", "description": "D"}, "E"),
        ({"names": {"zh": "车", "en": "car"}, "description": "D"}, "car"),
        ({"description": "a red car"}, "a red car"),
        ({"label": "", "name": "N"}, "N"),
    ],
)
def test_labels_under_other_keys_with_label_first(fields, label):
    reply = json.dumps([dict(bbox_2d=[1, 2, 3, 4], **fields)], ensure_ascii=False)
    assert boxes_of(reply)[0][0] == label


def test_the_plain_line_format():
    reply = "120,40,380,300 dog\n400, 50, 600, 280 cat on the sofa\n- 10,10,20,20 toy\nThat is all."
    assert boxes_of(reply) == [
        ("dog", (120.0, 40.0, 380.0, 300.0), "box"),
        ("cat on the sofa", (400.0, 50.0, 600.0, 280.0), "box"),
        ("toy", (10.0, 10.0, 20.0, 20.0), "box"),
    ]


def test_qwen2_vl_text_without_special_tokens_keeps_its_labels():
    reply = "red car(100,200),(500,600) and the dog(10,20),(30,40),(50,60),(70,80). Frame 2: bike(1,2),(3,4)"
    found = [(b.label, b.bbox) for b in parse_boxes(reply, "qwen2-vl", INPUT, SPACE)]
    assert found == [
        ("red car", (100.0, 200.0, 500.0, 600.0)),
        ("the dog", (10.0, 20.0, 30.0, 40.0)),
        ("the dog", (50.0, 60.0, 70.0, 80.0)),
        ("bike", (1.0, 2.0, 3.0, 4.0)),
    ]


def test_a_stray_brace_keeps_every_complete_object():
    reply = (
        'Here { are the boxes: {"bbox_2d": [1, 2, 3, 4], "label": "a"} and {"bbox_2d": [5, 6, 7, 8], '
        '"label": "b"} and a broken {"bbox_2d": [9, 9'
    )
    assert [label for label, _, _ in boxes_of(reply)] == ["a", "b"]


def test_a_number_cut_off_by_the_token_limit_is_not_repaired_into_a_wrong_box():
    reply = '[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [10, 20, 30, 40'  # 400 cut to 40
    assert boxes_of(reply) == [("a", (1.0, 2.0, 3.0, 4.0), "box")]


def test_non_finite_numbers_are_not_boxes():
    assert boxes_of('[{"bbox_2d": [NaN, 1, 2, 3]}, {"bbox_2d": [1, 2, Infinity, 3]}]') == []
