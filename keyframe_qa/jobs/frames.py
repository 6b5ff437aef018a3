"""The `frames` job: the frames a selection picks, written as images plus a `frames.json` index, no model.

Each frame is written on the decoding thread as it comes, so no full picture is held.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Optional

import numpy as np

from ..console import status
from ..errors import UsageError
from ..files.paths import check_chosen_name, check_output_dir, write_chosen_name
from ..outputs.images import write_frame_file
from ..outputs.report import frames_index, to_json
from ..records import Frame
from ..selection.select import Selection, SelectionRequest, check_request, select
from ..video.container import check_path
from ..video.frames import read_frames
from ..video.probe import ProbedVideo, check_times, probe
from .relevance import scorer_loader

INDEX_NAME = "frames.json"


def extract_frames(video: str, times: Sequence[float]) -> list[Frame]:
    """The frames on screen at `times` (seconds from the first frame), in display geometry.

    Library entry point with no model: it imports neither torch nor keyframe-qa's model code.
    """
    probed = probe(video)
    check_times(probed.info, list(times))
    return read_frames(probed, list(times))


def frames_job(
    video: str,
    request: SelectionRequest,
    out_dir: str,
    *,
    image_format: str = "png",
    quality: int = 95,
    max_side: Optional[int] = None,
) -> tuple[str, int]:
    """Write the selected frames of `video` and their index into `out_dir`; returns (index path, frames).

    Every refusal comes before decoding: the selection, the video, the folder, and `frames.json` (a name
    we choose: a link or an input standing there is refused)."""
    if request.queries and request.relevant is None:
        raise UsageError(
            "--query goes with --relevant (the frames most relevant to it): add --relevant N, or leave --query out"
        )
    check_request(request)
    check_path(video)
    check_output_dir(out_dir, "--out")
    index = os.path.join(out_dir, INDEX_NAME)
    check_chosen_name(index, "--out", [video])
    probed = probe(video)
    chosen = select(probed, request, load_scorer=scorer_loader(request))
    if chosen.record.get("method") == "default":
        # Writing files nobody chose: say how many and how to choose.
        status(
            f"no frames chosen (--at, --every, --num-frames, --fps, --scenes or --relevant): writing "
            f"{len(chosen.times)} sampled like qwen-vl-utils ({chosen.record['fps']:g} a second)"
        )
    extracted, files = write_frames(
        probed, chosen, out_dir, image_format=image_format, quality=quality, max_side=max_side, option="--out"
    )
    text = to_json(frames_index(probed.info, chosen.record, extracted, files))
    write_chosen_name(index, text.encode("utf-8"), "--out", [video])
    return index, len(files)


def write_frames(
    probed: ProbedVideo,
    selection: Selection,
    directory: str,
    *,
    image_format: str = "png",
    quality: int = 95,
    max_side: Optional[int] = None,
    option: str = "--out",
) -> tuple[list[Frame], list[tuple[str, tuple[int, int]]]]:
    """Write the selected frames as images while they are decoded; no full picture is kept.

    Returns the frames (their pictures dropped: `display_size` keeps the displayed size) and, for
    each, the file written and its (width, height), in selection order.
    """
    check_output_dir(directory, option)
    os.makedirs(directory, exist_ok=True)
    files: dict[int, tuple[str, tuple[int, int]]] = {}

    def write(frame: Frame) -> Frame:
        files[frame.index] = write_frame_file(
            frame,
            directory,
            image_format=image_format,
            quality=quality,
            max_side=max_side,
            option=option,
            inputs=[probed.info.path],
        )
        return drop_picture(frame)

    frames = read_frames(
        probed,
        list(selection.times),
        requested=list(selection.requested),
        scenes=list(selection.scenes),
        convert=write,
        relevance=selection.relevance,
    )
    return frames, [files[frame.index] for frame in frames]


def drop_picture(frame: Frame) -> Frame:
    """The frame's record without its picture (the displayed size is kept)."""
    return replace(frame, image=_NO_PICTURE, display_size=(frame.width, frame.height))


_NO_PICTURE = np.zeros((0, 0, 3), dtype=np.uint8)
