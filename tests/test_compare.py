"""Before/after comparisons: the config's errors all at once, and runs on one and on two videos."""

import json
import os
from html.parser import HTMLParser

import pytest

from keyframe_qa.jobs.compare_config import ConfigError, json_schema, load_config
from tests.helpers import assert_one_line_error, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def config_dir(tmp_path, videos):
    import shutil

    shutil.copy(videos["cut.mp4"], tmp_path / "cut.mp4")
    shutil.copy(videos["rotated.mp4"], tmp_path / "rotated.mp4")
    return tmp_path


def write(folder, text):
    path = folder / "config.yaml"
    path.write_text(text)
    return str(path)


def test_every_config_error_is_reported_together(capsys, config_dir):
    path = write(
        config_dir,
        """
defaults:
  colour: red
comparisons:
  - name: bad time
    video: cut.mp4
    before: "1:75"
    after: 2
    questions: ["What changed?"]
  - name: missing video
    before_video: nowhere.mp4
    after_video: cut.mp4
    before: 1
    after: 2
    questions: ["What changed?"]
    tyop: 3
""",
    )
    code, out, err = run(capsys, "compare", path)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0] == f"Error: invalid config {path} (4 problems):"
    assert {line.strip() for line in lines[1:]} == {
        "defaults.colour: unknown key",
        "comparisons.0.before: cannot read time '1:75': minutes and seconds must be below 60",
        f"comparisons.1.before_video: video not found: {config_dir / 'nowhere.mp4'}",
        "comparisons.1.tyop: unknown key",
    }


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("comparisons: []", "comparisons: List should have at least 1 item"),
        ("comparisons:\n  - name: x\n    video: cut.mp4\n    before: 1\n    after: 2\n", "give `questions` or `find`"),
        (
            "comparisons:\n  - name: x\n    before_video: cut.mp4\n    before: 1\n    after: 2\n    questions: [q]",
            "give both `before_video` and `after_video`",
        ),
        ("comparisons: [\n  oops", "line "),
        ("- just a list", "must be a mapping"),
    ],
)
def test_config_shapes_that_are_wrong(config_dir, text, fragment):
    with pytest.raises(ConfigError) as caught:
        load_config(write(config_dir, text))
    assert any(fragment in problem for problem in caught.value.problems), caught.value.problems


def test_missing_config_file(capsys, tmp_path):
    code, out, err = run(capsys, "compare", str(tmp_path / "none.yaml"))
    assert code == 2 and err.startswith("Error: config not found")


def test_compare_on_one_video_and_on_two(capsys, config_dir, tiny_model, tmp_path):
    path = write(
        config_dir,
        f"""
defaults:
  model: {tiny_model}
  max_new_tokens: 3
comparisons:
  - name: across the cut
    video: cut.mp4
    before: 1.0
    after: "0:03.05"
    questions: ["What changed?", "Same background?"]
  - name: two videos
    before_video: cut.mp4
    after_video: rotated.mp4
    before: 0.5
    after: 0.5
    find: red square
    overrides: {{max_visual_tokens: 100}}
""",
    )
    code, out, err = run(capsys, "compare", path, "--html", str(tmp_path / "page.html"))
    assert code == 0, err
    report = json.loads(out)
    assert report["schema_version"] == 1 and report["model"]["family"] == "qwen2-vl"
    one, two = report["comparisons"]
    assert (one["before"]["frame"]["frame_number"], one["after"]["frame"]["frame_number"]) == (10, 30)
    assert one["before"]["video"]["path"] == one["after"]["video"]["path"]
    assert [a["question"] for a in one["answers"]] == ["What changed?", "Same background?"]
    assert (two["before"]["video"]["width"], two["after"]["video"]["width"]) == (320, 240)  # rotated: portrait
    assert two["answers"][0]["find"] == "red square"
    assert two["usage"]["visual_tokens"] <= 100 and two["settings"]["max_visual_tokens"] == 100
    tags = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append(tag)

    Tags().feed((tmp_path / "page.html").read_text())
    assert tags.count("img") == 4 and "script" not in tags


def test_a_failing_comparison_is_recorded_and_the_rest_run(capsys, config_dir, tiny_model):
    path = write(
        config_dir,
        f"""
defaults: {{model: {tiny_model}, max_new_tokens: 2}}
comparisons:
  - {{name: too late, video: cut.mp4, before: 1, after: 99, questions: [q]}}
  - {{name: fine, video: cut.mp4, before: 1, after: 2, questions: [q]}}
""",
    )
    code, out, err = run(capsys, "compare", path)
    assert code == 1
    late, fine = json.loads(out)["comparisons"]
    assert late["status"] == "error" and "past the end" in late["error"]
    assert fine["status"] == "ok"
    assert "1 comparison failed: too late" in err


def test_shipped_example_config_is_valid_and_its_schema_is_current():
    config = load_config(os.path.join(ROOT, "configs", "before_after.yaml"))
    assert len(config.comparisons) == 2
    with open(os.path.join(ROOT, "configs", "before_after.schema.json")) as handle:
        assert json.load(handle) == json_schema(), (
            "regenerate: uv run python scripts/config_schema.py > configs/before_after.schema.json"
        )


def test_a_key_given_twice_is_a_config_error(capsys, tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(
        "defaults:\n  max_new_tokens: 2\n  max_new_tokens: 4\ncomparisons:\n"
        "  - {name: a, video: x.mp4, before: 1, after: 2, questions: [q], name: b}\n"
    )
    code, out, err = run(capsys, "compare", str(path))
    assert code == 2
    assert "line 3: 'max_new_tokens' is given twice (first on line 2)" in err
    assert err.count("given twice") == 1  # the first problem stops the read: a YAML error, not a model one


def test_a_huge_config_is_refused_before_it_is_parsed(capsys, tmp_path, monkeypatch):
    import yaml

    monkeypatch.setattr(yaml, "load", lambda *a, **k: pytest.fail("parsed"))
    path = tmp_path / "huge.yaml"
    path.write_text("comparisons:\n" + "  - {name: a, video: x.mp4, before: 1, after: 2, questions: [q]}\n" * 200_000)
    code, out, err = run(capsys, "compare", str(path))
    assert code == 2
    assert_one_line_error(err, "is 12.4 MiB: a compare config is at most 1 MiB")
