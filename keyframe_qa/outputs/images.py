"""Frame images on disk: named by position and time, encoded as PNG or JPEG, written under the rules for
names keyframe-qa chooses (paths.write_chosen_name: never through a link, never over an input)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional

from ..records import Frame


def save_frames(
    frames: Sequence[Frame],
    directory: str,
    *,
    image_format: str = "png",
    quality: int = 95,
    max_side: Optional[int] = None,
    suffix: str = "",
    option: str = "--save-frames",
    inputs: Sequence[str] = (),
) -> list[str]:
    """Write each frame named by position and time (PNG, or JPEG at `quality`); returns the paths.

    `max_side` shrinks frames whose longer side is larger (area averaging), for previews. The names
    are ours, so each is written by `outputs.write_chosen_name`: never through a symlink, never over
    an input of the run (`inputs`), atomically.
    """
    return [
        path
        for path, _ in save_frame_files(
            frames,
            directory,
            image_format=image_format,
            quality=quality,
            max_side=max_side,
            suffix=suffix,
            option=option,
            inputs=inputs,
        )
    ]


def save_frame_files(
    frames: Sequence[Frame],
    directory: str,
    *,
    image_format: str = "png",
    quality: int = 95,
    max_side: Optional[int] = None,
    suffix: str = "",
    option: str = "--save-frames",
    inputs: Sequence[str] = (),
) -> list[tuple[str, tuple[int, int]]]:
    """`save_frames`, also returning each written image's (width, height)."""
    from ..files.paths import check_output_dir

    check_output_dir(directory, option)
    os.makedirs(directory, exist_ok=True)
    check_frame_names(frames, directory, image_format=image_format, suffix=suffix, option=option, inputs=inputs)
    return [
        write_frame_file(
            frame,
            directory,
            image_format=image_format,
            quality=quality,
            max_side=max_side,
            suffix=suffix,
            option=option,
            inputs=inputs,
        )
        for frame in frames
    ]


def frame_file_name(frame: Frame, image_format: str = "png", suffix: str = "") -> str:
    """The name a frame's image gets: its position and its time (`frame_002_0000010.000s.png`)."""
    extension = "jpg" if image_format in ("jpg", "jpeg") else "png"
    return f"frame_{frame.index:03d}_{frame.timestamp:010.3f}s{suffix}.{extension}"


def check_frame_names(
    frames: Sequence[Frame],
    directory: str,
    *,
    image_format: str = "png",
    suffix: str = "",
    option: str = "--save-frames",
    inputs: Sequence[str] = (),
) -> None:
    """Refuse, before the expensive work, frame names that stand on a symlink, a non-file or an input."""
    from ..files.paths import check_chosen_name

    for frame in frames:
        check_chosen_name(os.path.join(directory, frame_file_name(frame, image_format, suffix)), option, inputs)


def write_frame_file(
    frame: Frame,
    directory: str,
    *,
    image_format: str = "png",
    quality: int = 95,
    max_side: Optional[int] = None,
    suffix: str = "",
    option: str = "--save-frames",
    inputs: Sequence[str] = (),
) -> tuple[str, tuple[int, int]]:
    """Write one frame into an existing `directory`; returns its path and the image's (width, height).

    Safe on a decoding thread: OpenCV encodes with the GIL released.
    """
    import cv2

    from ..errors import KeyframeQAError
    from ..files.paths import write_chosen_name

    name = frame_file_name(frame, image_format, suffix)
    extension = name.rsplit(".", 1)[1]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if extension == "jpg" else []
    image = frame.image
    if max_side and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    path = os.path.join(directory, name)
    ok, encoded = cv2.imencode(f".{extension}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise KeyframeQAError(f"could not encode {path}")
    write_chosen_name(path, encoded.tobytes(), option, inputs)
    return path, (int(image.shape[1]), int(image.shape[0]))
