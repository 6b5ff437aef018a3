"""Small frozen records that flow between the pipeline stages (probe, read, budget, model, report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """What `video.probe` learns about a video, in display terms (what a viewer sees)."""

    path: str  # the path as given by the user
    container: str  # demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # video codec name, e.g. "h264"
    duration: float  # seconds from the first frame's PTS to the end of the last frame
    fps: float  # average frame rate: frame_count / duration
    width: int  # display width: sample aspect ratio and rotation applied
    height: int  # display height
    coded_width: int  # decoded picture size before display corrections
    coded_height: int
    sample_aspect_ratio: tuple[int, int]  # (num, den); (1, 1) for square pixels
    rotation: int  # degrees clockwise a player rotates the picture: 0, 90, 180 or 270
    frame_count: Optional[int]  # number of displayed frames; None until a complete index is built
    variable_frame_rate: Optional[bool] = False  # frame intervals differ by more than 1%; None: not known
    start_time: float = 0.0  # PTS of the first frame in seconds (times are reported relative to it)
    index_source: str = "packet scan"  # how frames are located: sample table, seek windows or packet scan
    frame_numbers: str = "exact"  # "exact", or "estimated from the frame rate" (seek windows)
    index_note: Optional[str] = None  # why a container index was not used, when one was expected


@dataclass(frozen=True, eq=False)
class Frame:
    """One extracted frame as a viewer sees it."""

    index: int  # position in the selection (what `frame` in a box refers to)
    requested: Optional[float]  # the time the user asked for; None when sampled or chosen by scene
    timestamp: float  # presentation time of the returned frame, relative to the first frame
    frame_number: int  # 0-based index of the frame in presentation order
    image: np.ndarray = field(repr=False)  # H x W x 3 uint8 RGB in display geometry
    scene: Optional[int] = None  # scene index when chosen by scene detection
    relevance: Optional[float] = None  # --relevant: how relevant to the question, in [0, 1] over the candidates
    corrupt: bool = False  # the decoder reported errors for this frame: it may look broken
    # (width, height) as displayed, when `image` was shrunk to its budget to travel (batch --ray)
    display_size: Optional[tuple[int, int]] = None

    @property
    def width(self) -> int:
        """Displayed width in pixels (what boxes are mapped to)."""
        return int(self.display_size[0]) if self.display_size else int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Displayed height in pixels."""
        return int(self.display_size[1]) if self.display_size else int(self.image.shape[0])


@dataclass(frozen=True)
class FrameBudget:
    """The model-input size chosen for one frame and what it costs."""

    input_width: int  # width of the picture handed to the vision encoder (a multiple of the factor)
    input_height: int
    visual_tokens: int  # tokens this frame adds to the prompt after the 2x2 patch merge


@dataclass(frozen=True)
class Box:
    """A box the model reported, in pixels of the displayed frame `frame`."""

    label: str
    frame: Optional[int]  # index into the selected frames; None when it cannot be told
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in display-frame pixels, clipped
    kind: str = "box"  # "box", or "point" (a zero-size box at the point)
    # How `frame` was decided: "per-frame", "only-frame", "named" (the model said so in the box),
    # "mentioned" (last frame named before the box), "mentioned-later", "unknown"; None if not asked.
    frame_source: Optional[str] = None


@dataclass(frozen=True)
class Answer:
    """The model's reply to one question."""

    question: str
    answer: str  # the reply as a person reads it (special tokens removed)
    raw: str  # the reply exactly as generated, special tokens kept
    boxes: tuple[Box, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    frame: Optional[int] = None  # with --per-frame: the frame this answer is about
    truncated: bool = False  # the reply stopped at max_new_tokens: it (and its boxes) may be incomplete
    find: Optional[str] = None  # the object asked for, when this is the answer to the --find prompt


@dataclass(frozen=True)
class GenerationSettings:
    """How replies are generated, as recorded in `model.generation`."""

    max_new_tokens: int  # the longest reply, in tokens
    do_sample: bool  # False: greedy decoding, the same reply every time; True: sampled
    temperature: Optional[float] = None  # sampling temperature (None when greedy)
    top_p: Optional[float] = None  # nucleus sampling mass (None when greedy)
    top_k: Optional[int] = None  # sample among the k likeliest tokens (None when greedy)
    repetition_penalty: Optional[float] = None  # above 1 discourages repeats; None: none
    seed: Optional[int] = None  # seeds each question's sampling, so a sampled answer can be had again


@dataclass(frozen=True)
class VisualPrompt:
    """The frames of one prompt, as an engine receives them."""

    images: list  # H x W x 3 uint8 RGB display frames; the engine resizes each to its budget
    budgets: list  # FrameBudget per image: the size the model must see and its visual tokens
    labels: list  # one short label per frame, e.g. "frame 1 at 0:00:05.500"
    mode: str  # "images" or "video"
    times: list  # the frames' times as the model is told them, in seconds (video mode: the rate and Qwen3-VL's markers)


@dataclass(frozen=True)
class Reply:
    """What an engine generated for one question."""

    raw: str  # exactly as generated, special tokens kept (as far as the engine can tell)
    text: str  # special tokens removed, stripped
    prompt_tokens: int  # tokens of the prompt, visual tokens included
    completion_tokens: int  # tokens generated
    truncated: bool = False  # stopped at max_new_tokens rather than at an end-of-sequence token
