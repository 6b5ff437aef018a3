"""Videos with known content, for tests, samples and benchmarks.

Every frame carries its own frame number as a row of black/white cells (readable after lossy
compression), a red marker in its top-left corner (so orientation can be checked) and a
background colour per scene (so cuts are real cuts). Encoded with PyAV, so nothing but the
project's own dependencies is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import av
import numpy as np

CODE_BITS = 12  # up to 4095 frames
_SCENE_COLOURS = [
    (40, 90, 160),
    (200, 120, 40),
    (60, 150, 70),
    (150, 60, 140),
    (180, 180, 60),
    (70, 160, 170),
]


@dataclass(frozen=True)
class SyntheticSpec:
    """What to write. Times are seconds; `frame_times` overrides `fps` for variable frame rate."""

    width: int = 320
    height: int = 240
    fps: float = 10.0
    frame_count: int = 40
    frame_times: Optional[Sequence[float]] = None  # presentation time of each frame (VFR)
    cuts: Sequence[int] = ()  # frame numbers where a new scene starts
    codec: str = "libx264"
    gop: int = 12  # keyframe interval in frames
    bframes: int = 2
    sample_aspect_ratio: Optional[tuple[int, int]] = None  # e.g. (16, 11)
    rotation: int = 0  # degrees clockwise a player must turn the picture (phone-style metadata)
    start_time: float = 0.0  # PTS of the first frame, seconds
    crf: int = 18
    pixel_format: str = "yuv420p"
    open_gop: bool = False  # keyframes after the first are recovery points that leading B-frames reach past
    muxer_options: Optional[dict] = None  # e.g. {"movflags": "frag_keyframe+empty_moov"} for a fragmented MP4


def scene_of(frame_number: int, cuts: Sequence[int]) -> int:
    """Scene index of a frame given the cut list."""
    return sum(1 for cut in cuts if cut <= frame_number)


def draw_frame(number: int, width: int, height: int, scene: int = 0) -> np.ndarray:
    """The RGB picture for frame `number` (coded geometry)."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = _SCENE_COLOURS[scene % len(_SCENE_COLOURS)]
    # A soft horizontal gradient gives the encoder texture without disturbing the code cells.
    image[:, :, 1] = (np.linspace(0, 60, width, dtype=np.float32)[None, :] + image[:, :, 1] * 0.7).astype(np.uint8)
    marker_h, marker_w = max(2, height // 8), max(2, width // 8)
    image[:marker_h, :marker_w] = (255, 0, 0)
    return stamp_frame_number(image, number)


def stamp_frame_number(image: np.ndarray, number: int, band: tuple[float, float] = (0.4, 0.6)) -> np.ndarray:
    """Draw `number` as black/white cells across the rows `band` (fractions of the height), in place."""
    height, width = image.shape[:2]
    top, bottom = int(height * band[0]), int(height * band[1])
    for bit, (left, right) in enumerate(_cell_spans(width)):
        image[top:bottom, left:right] = 255 if (number >> bit) & 1 else 0
    return image


def read_frame_number(image: np.ndarray, row_fraction: float = 0.5) -> int:
    """Read back a number drawn by `draw_frame` / `stamp_frame_number` from an RGB image of any size."""
    height, width = image.shape[:2]
    row = int(height * row_fraction)
    value = 0
    for bit, (left, right) in enumerate(_cell_spans(width)):
        centre = (left + right) // 2
        luma = float(image[row - 1 : row + 2, centre - 1 : centre + 2].mean())
        if luma > 128:
            value |= 1 << bit
    return value


def marker_corner(image: np.ndarray) -> str:
    """Which corner holds the red marker: 'top-left', 'top-right', 'bottom-left' or 'bottom-right'."""
    height, width = image.shape[:2]
    dy, dx = max(1, height // 20), max(1, width // 20)
    corners = {
        "top-left": image[:dy, :dx],
        "top-right": image[:dy, -dx:],
        "bottom-left": image[-dy:, :dx],
        "bottom-right": image[-dy:, -dx:],
    }

    def redness(patch: np.ndarray) -> float:
        patch = patch.astype(np.float32)
        return float((patch[..., 0] - patch[..., 1] - patch[..., 2]).mean())

    return max(corners, key=lambda name: redness(corners[name]))


def frame_times_of(spec: SyntheticSpec) -> list[float]:
    """Presentation time (seconds, from the first frame) of each frame the spec writes."""
    if spec.frame_times is not None:
        return [float(t) for t in spec.frame_times]
    return [i / spec.fps for i in range(spec.frame_count)]


def write_video(path: str, spec: SyntheticSpec = SyntheticSpec()) -> list[float]:
    """Encode the spec to `path` (container from the extension); returns the frame times written."""
    times = frame_times_of(spec)
    time_base = Fraction(1, 1000) if spec.frame_times is not None else _rate_time_base(spec.fps)
    with av.open(path, mode="w", options=dict(spec.muxer_options or {})) as container:
        stream = container.add_stream(spec.codec, rate=_rate(spec.fps))
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = spec.pixel_format
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if spec.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = Fraction(*spec.sample_aspect_ratio)
        stream.options = _encoder_options(spec)
        if spec.rotation:
            # FFmpeg's display matrix angle is counter-clockwise; players turn clockwise by -angle.
            stream.set_display_rotation(-spec.rotation)
        start_ticks = int(round(spec.start_time / time_base))
        for number, t in enumerate(times):
            picture = draw_frame(number, spec.width, spec.height, scene_of(number, spec.cuts))
            frame = to_yuv(picture, spec.pixel_format)
            frame.pts = start_ticks + int(round(t / time_base))
            frame.time_base = time_base
            if number in spec.cuts or number == 0:
                frame.pict_type = av.video.frame.PictureType.I
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return times


def write_pictures(
    path: str,
    pictures: Iterable[np.ndarray],
    *,
    fps: int = 25,
    crf: int = 20,
    gop: Optional[int] = None,
    bframes: Optional[int] = None,
) -> int:
    """Encode RGB pictures (all one size) as H.264 at a constant `fps`; returns the frame count."""
    count = 0
    with av.open(path, mode="w") as container:
        stream = None
        for picture in pictures:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.height, stream.width = picture.shape[:2]
                stream.pix_fmt = "yuv420p"
                params = ":".join(
                    f"{key}={value}"
                    for key, value in (
                        ("keyint", gop),
                        ("min-keyint", gop),
                        ("scenecut", 0 if gop else None),
                        ("bframes", bframes),
                    )
                    if value is not None
                )
                stream.options = {"crf": str(crf), "preset": "veryfast", **({"x264-params": params} if params else {})}
            frame = to_yuv(np.ascontiguousarray(picture))
            frame.pts = count
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode(None):
                container.mux(packet)
    return count


def to_yuv(picture: np.ndarray, pixel_format: str = "yuv420p") -> av.VideoFrame:
    """An RGB picture as an untagged YUV frame with the matrix players assume for its size.

    Players show untagged HD (wider than 1024 or taller than 576) as BT.709 and smaller video as
    BT.601; converting with the same matrix makes the file look as drawn.
    """
    from ..video.frames import player_matrix

    height, width = picture.shape[:2]
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
    return frame.reformat(format=pixel_format, dst_colorspace=player_matrix(width, height))


def _encoder_options(spec: SyntheticSpec) -> dict:
    if spec.codec == "libx264":
        params = f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:bframes={spec.bframes}"
        if spec.open_gop:
            params += ":open-gop=1:b-adapt=0"
        return {"crf": str(spec.crf), "preset": "veryfast", "x264-params": params}
    return {"g": str(spec.gop), "bf": str(spec.bframes), "qscale": "3"}


def _rate(fps: float):
    return Fraction(fps).limit_denominator(1001)


def _rate_time_base(fps: float) -> Fraction:
    rate = _rate(fps)
    return Fraction(rate.denominator, rate.numerator)


def _cell_spans(width: int) -> list[tuple[int, int]]:
    left, right = int(width * 0.1), int(width * 0.9)
    step = (right - left) / CODE_BITS
    return [(int(left + i * step + step * 0.15), int(left + (i + 1) * step - step * 0.15)) for i in range(CODE_BITS)]
