"""The batch results file: only ours is appended to, torn tails of ours are cut, reads are bounded,
and one run at a time holds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import keyframe_qa.outputs.results_file as results_module
from keyframe_qa.errors import UsageError
from keyframe_qa.files.paths import check_output_file
from keyframe_qa.outputs.results_file import (
    LINE_PREFIX,
    ResultsFile,
    ResultsFileInUse,
    check_results_file,
    finished_keys,
)
from tests.helpers import assert_one_line_error, run

OK = {"schema_version": 1, "video": {"path": "/v/a.mp4"}, "status": "ok", "settings": "abc", "answers": []}
ERROR_BEFORE_PREFIX = {"video": {"path": "/v/b.mp4"}, "status": "error", "error": "x", "settings": "abc"}


def line(record) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def open_results(path, **options):
    return ResultsFile(check_output_file(str(path), "-o"), **options)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        line(OK),
        line(OK) + line(ERROR_BEFORE_PREFIX),  # error lines written before every line began with LINE_PREFIX
        line(OK) + line(OK)[:30],  # our own line, cut off when a run died
        line(OK) + LINE_PREFIX[:5],  # cut off inside the prefix itself
    ],
)
def test_our_files_are_accepted_and_only_a_torn_tail_of_ours_is_cut(tmp_path, content):
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    expected = {("/v/a.mp4", "abc")} if content else set()
    assert finished_keys(str(path)) == expected and path.read_bytes() == content  # reading changes nothing
    with open_results(path) as results:
        kept = content[: content.rfind(b"\n") + 1]
        assert path.read_bytes() == kept
        assert results.finished == expected
        results.write({"video": {"path": "/v/c.mp4"}, "status": "error", "error": "e", "settings": "s"})
    written = path.read_bytes()[len(kept) :]
    assert written.startswith(LINE_PREFIX) and written.endswith(b"\n")


@pytest.mark.parametrize(
    "content, why",
    [
        (b"my notes\nthe last line has no newline", "line 1 is not JSON"),
        (b'{"a": 1}\n', "line 1 is not a keyframe-qa result"),
        (line(OK) + b'{"a": 1}\n', "line 2 is not a keyframe-qa result"),
        (line(OK) + b"not ours, and torn", "its last line is not a keyframe-qa result"),
        (b"\x00" * 300_000, "its last line is not a keyframe-qa result"),
        (b"\x00\x01\xff\xfe" * 1000 + b"\n", "line 1 is not JSON"),
    ],
)
def test_anything_else_is_refused_and_left_byte_for_byte(tmp_path, content, why):
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    for check in (
        lambda: check_results_file(check_output_file(str(path), "-o")),
        lambda: open_results(path),
        lambda: open_results(path, overwrite=True),
    ):
        with pytest.raises(UsageError, match="is not a keyframe-qa results file") as caught:
            check()
        assert why in str(caught.value)
        assert path.read_bytes() == content


def test_reading_is_bounded_by_the_line_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(results_module, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "out.jsonl"
    long_ok = dict(OK, answers=[{"answer": "x" * 2000}])
    path.write_bytes(line(OK) + line(long_ok))
    with pytest.raises(UsageError, match="line 2 is longer than"):
        open_results(path)
    path.write_bytes(b"y" * 5000)  # no newline at all, longer than the cap: never read whole
    with pytest.raises(UsageError, match="its last line is not"):
        open_results(path)


def test_overwrite_empties_only_a_file_of_ours(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(line(OK))
    with open_results(path, overwrite=True) as results:
        assert results.finished == set()
    assert path.read_bytes() == line(OK)  # nothing written: the old results stay (a run that failed to start)
    with open_results(path, overwrite=True) as results:
        results.write(dict(OK, settings="new"))
    assert [json.loads(x)["settings"] for x in path.read_bytes().splitlines()] == ["new"]


HOLDER = """
import sys, time
from keyframe_qa.files.paths import check_output_file
from keyframe_qa.outputs.results_file import ResultsFile
with ResultsFile(check_output_file(sys.argv[1], "-o")):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_the_same_output_says_who_holds_it(capsys, tmp_path, videos, tiny_model):
    path = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ResultsFileInUse, match=f"process {holder.pid}"):
            open_results(path)
        code, out, err = run(
            capsys, "batch", videos["plain.mp4"], "-q", "q", "--at", "1", "--model", tiny_model, "-o", str(path)
        )
        assert code == 1
        assert_one_line_error(err, "is being written by another keyframe-qa batch")
        assert str(holder.pid) in err and path.read_bytes() == b""
    finally:
        holder.kill()
        holder.wait()
    with open_results(path):  # the kernel dropped the lock with the process: no stale lock file
        pass


def test_a_rerun_with_nothing_left_does_not_load_the_model(capsys, monkeypatch, tmp_path, videos, tiny_model):
    import keyframe_qa.jobs.local_runner as batch_module

    path = tmp_path / "out.jsonl"
    args = [
        "batch",
        videos["plain.mp4"],
        videos["cut.mp4"],
        "-q",
        "q",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "2",
        "-o",
        str(path),
    ]
    code, out, err = run(capsys, *args)
    assert code == 0, err

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded with nothing to do")

    monkeypatch.setattr(batch_module, "build_engine", no_load)
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "0 answered, 0 failed, 2 already done" in err


def test_batch_to_stdout_and_to_a_log_file(tmp_path, videos, tiny_model):
    """`-o -` streams lines to stdout; progress into a file is a summary, not a redrawn bar."""
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "keyframe_qa",
                "batch",
                videos["plain.mp4"],
                videos["cut.mp4"],
                "-q",
                "q",
                "--at",
                "1",
                "--model",
                tiny_model,
                "--max-new-tokens",
                "2",
                "-o",
                "-",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0
    records = [json.loads(text) for text in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    text = log.read_text()
    assert "\r" not in text
    assert text.strip().splitlines()[-1].startswith("2 answered, 0 failed") and "on standard output" in text


def test_an_excel_csv_manifest_with_a_byte_order_mark_works(tmp_path, videos):
    from keyframe_qa.jobs.batch_inputs import read_manifest

    manifest = tmp_path / "jobs.csv"
    manifest.write_bytes("video,at,question\n".encode("utf-8-sig") + f"{videos['plain.mp4']},1.5,Why?\n".encode())
    (item,) = read_manifest(str(manifest))
    assert item.video == videos["plain.mp4"] and item.times == (1.5,) and item.questions == ("Why?",)
    assert os.path.exists(item.video)
