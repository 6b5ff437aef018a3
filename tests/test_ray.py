"""`batch --ray` on a local Ray cluster: the same answers as a plain batch, failures as lines, an actor
killed mid-run costs nothing and repeats nothing, and a resumed run redoes nothing."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections import Counter

import pytest

from keyframe_qa import AskRequest, EngineSpec, GenerationRequest, SelectionRequest
from keyframe_qa.jobs.batch import iter_lines, run_batch
from keyframe_qa.jobs.batch_inputs import BatchItem
from tests.helpers import assert_one_line_error, clip_copies, run, wait_for_lines


@pytest.fixture()
def clips(tmp_path, videos):
    folder = tmp_path / "clips"
    folder.mkdir()
    for number in range(4):
        # 320x240 display frames: shrunk to 308x224 for the trip, as the engine itself would
        shutil.copy(videos["plain.mp4"] if number % 2 else videos["cut.mp4"], folder / f"clip{number}.mp4")
    (folder / "broken.mp4").write_text("not a video")
    return folder


def by_video(path):
    return {os.path.basename(r["video"]["path"]): r for r in iter_lines(str(path))}


def test_ray_gives_a_plain_batchs_answers_and_error_lines(capsys, ray_cluster, clips, tiny_model, tmp_path):
    common = [
        "batch",
        str(clips),
        "-q",
        "What is it?",
        "--at",
        "0.5,2.5",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "6",
    ]
    code, out, err = run(capsys, *common, "-o", str(tmp_path / "plain.jsonl"))
    assert code == 1  # the broken video
    code, out, err = run(capsys, *common, "--ray", "-o", str(tmp_path / "ray.jsonl"))
    assert code == 1, err
    assert "4 answered, 1 failed" in err.strip().splitlines()[-1]
    plain, distributed = by_video(tmp_path / "plain.jsonl"), by_video(tmp_path / "ray.jsonl")
    assert set(distributed) == set(plain) == {"clip0.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4", "broken.mp4"}
    assert (
        distributed["broken.mp4"]["status"] == "error" and "not a readable video" in distributed["broken.mp4"]["error"]
    )
    for name, record in plain.items():
        if record["status"] != "ok":
            continue
        theirs = distributed[name]
        # Frames travelled at their budget size; the report still speaks of the displayed frame.
        assert [(f["width"], f["height"], f["input_width"]) for f in theirs["frames"]] == [
            (f["width"], f["height"], f["input_width"]) for f in record["frames"]
        ]
        assert [a["raw"] for a in theirs["answers"]] == [a["raw"] for a in record["answers"]]
        assert theirs["usage"] == record["usage"] and theirs["settings"] == record["settings"]
    code, out, err = run(capsys, *common, "--ray", "-o", str(tmp_path / "ray.jsonl"))
    assert "0 answered, 1 failed, 4 already done" in err  # resumed: only the failure is tried again


def _actor_processes() -> list[int]:
    """PIDs of the engine actors (Ray titles its worker processes "ray::MapWorker(...)")."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if b"MapWorker(Map(_AnswerActor))" in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


# The kill tests run whole clusters through failures (half a minute each): the slow tier, which .ci/run runs
# after the default one, keeps them; the default run keeps the plain --ray batch and --when through Ray.
@pytest.mark.slow
def test_an_actor_killed_mid_run_loses_nothing_and_repeats_nothing(ray_cluster, videos, tiny_model, tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("finds the actor's process through /proc")
    folder = clip_copies(tmp_path / "many", videos["plain.mp4"], 6)
    items = [BatchItem(video=str(path)) for path in sorted(folder.iterdir())]
    template = AskRequest(
        video="",
        questions=("Describe it.",),
        selection=SelectionRequest(times=(1.0,)),
        engine=EngineSpec(model_id=tiny_model),
        generation=GenerationRequest(max_new_tokens=24),
    )
    output = tmp_path / "out.jsonl"
    first_line, killed, outcome = threading.Event(), [], {}

    def go():
        outcome["summary"] = run_batch(
            items, template, str(output), use_ray=True, progress=False, on_line=lambda record: first_line.set()
        )

    runner = threading.Thread(target=go)
    runner.start()
    assert first_line.wait(timeout=180), "no line within 3 minutes"
    for pid in _actor_processes():
        os.kill(pid, signal.SIGKILL)  # the actor dies as a node or a ray.kill would end it
        killed.append(pid)
    runner.join(timeout=300)
    assert killed, "the engine actor was not found"
    assert outcome["summary"].failed == 0 and outcome["summary"].done == 6
    oks = Counter(r["video"]["path"] for r in iter_lines(str(output)) if r["status"] == "ok")
    assert len(oks) == 6 and set(oks.values()) == {1}


def test_without_ray_installed_ray_is_one_clear_line(capsys, monkeypatch, videos, tiny_model, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as on a machine without it
    code, out, err = run(
        capsys,
        "batch",
        videos["plain.mp4"],
        "-q",
        "q",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--ray",
        "-o",
        str(tmp_path / "o.jsonl"),
    )
    assert code == 2
    assert_one_line_error(err, "--ray needs Ray with Ray Data: pip install 'keyframe-qa[ray]'")
    assert not (tmp_path / "o.jsonl").exists()


def test_an_unreachable_ray_address_is_one_line_at_once(videos, tiny_model, tmp_path):
    import subprocess

    from keyframe_qa.testing.serving_tool import free_port

    env = dict(os.environ, RAY_ADDRESS=f"127.0.0.1:{free_port()}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keyframe_qa",
            "batch",
            videos["plain.mp4"],
            "-q",
            "q",
            "--at",
            "1",
            "--model",
            tiny_model,
            "--ray",
            "-o",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: cannot join the Ray cluster at RAY_ADDRESS={env['RAY_ADDRESS']}")


# The slow tier keeps these Ray variants (a server client in the actors, --when through Ray): the default run
# keeps the plain --ray batch, under five minutes on 2 cores.
@pytest.mark.slow
def test_ray_actors_can_hold_an_openai_client(capsys, ray_cluster, clips, tiny_model, openai_server, tmp_path):
    code, out, err = run(
        capsys,
        "batch",
        str(clips),
        "-q",
        "What is it?",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "4",
        "--engine",
        "openai",
        "--base-url",
        openai_server,
        "--ray",
        "--concurrency",
        "1",
        "-o",
        str(tmp_path / "o.jsonl"),
    )
    assert code == 1, err  # the broken video
    records = by_video(tmp_path / "o.jsonl")
    assert {name: r["status"] for name, r in records.items()} == {
        "clip0.mp4": "ok",
        "clip1.mp4": "ok",
        "clip2.mp4": "ok",
        "clip3.mp4": "ok",
        "broken.mp4": "error",
    }
    assert all(r["model"]["engine"] == "openai" for r in records.values() if r["status"] == "ok")


@pytest.mark.slow
def test_killing_the_driver_and_rerunning_resumes(videos, tiny_model, tmp_path):
    import subprocess

    folder = clip_copies(tmp_path / "many", videos["plain.mp4"], 6)
    output = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "keyframe_qa",
        "batch",
        str(folder),
        "-q",
        "Describe it.",
        "--at",
        "1",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "32",
        "--ray",
        "-o",
        str(output),
    ]
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # the driver starts a local cluster of its own, which dies with it
    driver = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    wait_for_lines(output, 1, driver, 240)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started
    driver.wait()
    finished = list(iter_lines(str(output)))
    assert 1 <= len(finished) < 6, "the driver should have been killed part-way"
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} already done" in rerun.stderr
    oks = Counter(r["video"]["path"] for r in iter_lines(str(output)) if r["status"] == "ok")
    assert len(oks) == 6 and set(oks.values()) == {1}


@pytest.mark.slow
def test_ray_batch_when_gives_a_plain_batchs_moments(capsys, ray_cluster, clips, tiny_model, tmp_path):
    """--when on Ray: the search runs in the engine actor (it needs the engine to choose frames), and each
    video's line is the plain batch's."""
    common = [
        "batch",
        str(clips),
        "-q",
        "What happens?",
        "--when",
        "a red square",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "6",
        "--window-frames",
        "4",
    ]
    code, _, err = run(capsys, *common, "-o", str(tmp_path / "plain.jsonl"))
    assert code == 1, err  # the broken video
    code, _, err = run(capsys, *common, "--ray", "-o", str(tmp_path / "ray.jsonl"))
    assert code == 1, err
    assert "4 answered, 1 failed" in err.strip().splitlines()[-1]
    plain, distributed = by_video(tmp_path / "plain.jsonl"), by_video(tmp_path / "ray.jsonl")
    assert set(distributed) == set(plain)
    for name, record in plain.items():
        if record["status"] != "ok":
            assert distributed[name]["status"] == "error"
            continue
        theirs = distributed[name]
        assert theirs["when"]["passes"] and theirs["when"]["moments"] == record["when"]["moments"]
        assert [p["raw"] for p in theirs["when"]["passes"]] == [p["raw"] for p in record["when"]["passes"]]
        assert [a["raw"] for a in theirs["answers"]] == [a["raw"] for a in record["answers"]]
