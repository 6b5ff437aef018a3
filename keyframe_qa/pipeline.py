"""The ask pipeline: probe -> exact frames -> budget -> model -> boxes -> report.

Nothing here imports torch: the model module is imported only when a model is needed, so
`extract_frames` (frames at times, no model) stays light.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from .budget import DEFAULT_MAX_VISUAL_TOKENS, plan_budget
from .errors import UsageError
from .frames import read_frames
from .grounding import parse_boxes
from .media import ProbedVideo, check_times, probe
from .records import Answer, Frame, FrameBudget, ModelInfo
from .report import build_report, save_frames
from .selection import Selection, SelectionRequest, check_request, select
from .timecodes import format_time


@dataclass(frozen=True)
class AskRequest:
    """Everything one `ask` needs; the CLI builds it from options."""

    video: str  # path to the video file
    questions: tuple[str, ...]  # asked about the same frames
    times: Optional[tuple[float, ...]] = None  # shorthand for selection=SelectionRequest(times=...)
    selection: SelectionRequest = field(default_factory=SelectionRequest)  # which frames (default sampling)
    per_frame: bool = False  # ask every question about each frame on its own
    mode: str = "images"  # "images": one image per frame; "video": one video of the frames
    model_id: Optional[str] = None  # hub id or folder; None for $KEYFRAME_QA_MODEL or the default
    device: str = "auto"
    dtype: str = "auto"
    min_pixels: Optional[int] = None  # per frame
    max_pixels: Optional[int] = None  # per frame
    max_visual_tokens: Optional[int] = DEFAULT_MAX_VISUAL_TOKENS  # all frames together
    max_new_tokens: int = 256
    save_frames: Optional[str] = None  # directory for PNGs of the frames


def extract_frames(video: str, times: Sequence[float]) -> list[Frame]:
    """The frames on screen at `times` (seconds from the first frame), in display geometry.

    Library entry point with no model: it does not import torch.
    """
    probed = probe(video)
    check_times(probed.info, list(times))
    return read_frames(probed, list(times))


def select_frames(probed: ProbedVideo, request: SelectionRequest) -> tuple[Selection, list[Frame]]:
    """Choose frames (times, sampling or scenes) and read them. No model, no torch."""
    selection = select(probed, request)
    frames = read_frames(probed, list(selection.times), requested=list(selection.requested),
                         scenes=list(selection.scenes))
    return selection, frames


def ask(request: AskRequest, model=None) -> dict:
    """Run one request and return the JSON-ready report. Pass `model` to reuse a loaded one."""
    selection_request = _selection_request(request)
    _check_request(request, selection_request)
    started = time.perf_counter()
    probed = probe(request.video)
    probe_s = time.perf_counter() - started

    decode_started = time.perf_counter()
    selection, frames = select_frames(probed, selection_request)
    decode_s = time.perf_counter() - decode_started

    model_load_s = 0.0
    if model is None:
        model = load_model(request.model_id, device=request.device, dtype=request.dtype)
        model_load_s = model.load_seconds

    budgets = plan_budget(
        [(f.width, f.height) for f in frames],
        model.family,
        mode=request.mode,
        min_pixels=request.min_pixels,
        max_pixels=request.max_pixels,
        max_visual_tokens=request.max_visual_tokens,
    )
    images = [resize_for_model(f.image, b) for f, b in zip(frames, budgets)]
    generate_started = time.perf_counter()
    if request.per_frame:
        answers = []
        for position, frame in enumerate(frames):
            prompt = _prompt([frame], [images[position]], [budgets[position]], request.mode)
            replies = model.answer(prompt, list(request.questions), max_new_tokens=request.max_new_tokens)
            answers.extend(_answers(request.questions, replies, model, [frame], [budgets[position]], frame.index))
    else:
        prompt = _prompt(frames, images, budgets, request.mode)
        replies = model.answer(prompt, list(request.questions), max_new_tokens=request.max_new_tokens)
        answers = _answers(request.questions, replies, model, frames, budgets, None)
    generate_s = time.perf_counter() - generate_started

    files = save_frames(frames, request.save_frames) if request.save_frames else [None] * len(frames)
    info = ModelInfo(id=model.model_id, family=model.family.name, mode=request.mode,
                     device=model.device, dtype=model.dtype_name)
    timings = {
        "probe_s": probe_s,
        "decode_s": decode_s,
        "model_load_s": model_load_s,
        "generate_s": generate_s,
        "total_s": time.perf_counter() - started,
    }
    report = build_report(probed.info, info, frames, budgets, files, answers, timings)
    report["selection"] = dict(selection.record, per_frame=request.per_frame)
    return report


def _prompt(frames: Sequence[Frame], images: list, budgets: Sequence[FrameBudget], mode: str):
    from .model import VisualPrompt  # light: the module imports torch lazily inside functions

    return VisualPrompt(
        images=list(images),
        budgets=list(budgets),
        labels=[f"frame {f.index + 1} at {format_time(f.timestamp)}" for f in frames],
        mode=mode,
        times=[f.timestamp for f in frames],
    )


def _answers(questions, replies, model, frames, budgets, frame_index: Optional[int]) -> list[Answer]:
    return [
        Answer(
            question=question,
            answer=reply.text,
            raw=reply.raw,
            boxes=tuple(_boxes(reply.raw, model.family.box_format, frames, budgets, frame_index)),
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            frame=frame_index,
        )
        for question, reply in zip(questions, replies)
    ]


def _selection_request(request: AskRequest) -> SelectionRequest:
    selection = request.selection
    if request.times is not None:
        if selection != SelectionRequest():
            raise UsageError("give times either as `times` or inside `selection`, not both")
        selection = SelectionRequest(times=tuple(request.times))
    # The default sampling is capped by the same budget the model stage will apply.
    return replace(selection, mode=request.mode, max_visual_tokens=request.max_visual_tokens)


def load_model(model_id: Optional[str] = None, *, device: str = "auto", dtype: str = "auto"):
    """Load a Qwen-VL checkpoint (imports torch and transformers)."""
    from .model import QwenVLModel, default_model_id

    return QwenVLModel(model_id or default_model_id(), device=device, dtype=dtype)


def resize_for_model(image: np.ndarray, budget: FrameBudget) -> np.ndarray:
    """Resize a display frame to its budgeted model-input size.

    Area averaging when shrinking (no aliasing on fine detail), bicubic when enlarging.
    """
    import cv2

    height, width = image.shape[:2]
    if (width, height) == (budget.input_width, budget.input_height):
        return image
    shrinking = budget.input_width * budget.input_height < width * height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (budget.input_width, budget.input_height), interpolation=interpolation)


def _boxes(raw: str, box_format: str, frames: Sequence[Frame], budgets: Sequence[FrameBudget],
           frame_index: Optional[int]):
    # A per-frame question's boxes are on its frame, and with one frame every box is on it; with
    # several, the frame cannot be told from the box alone, so `frame` stays None (all frames of
    # one video share their display and input size).
    if frame_index is None and len(frames) == 1:
        frame_index = frames[0].index
    first, budget = frames[0], budgets[0]
    return parse_boxes(raw, box_format, (budget.input_width, budget.input_height),
                       (first.width, first.height), frame=frame_index)


def _check_request(request: AskRequest, selection: SelectionRequest) -> None:
    if not request.questions or not all(q.strip() for q in request.questions):
        raise UsageError("give at least one non-empty question")
    check_request(selection)
    if request.mode not in ("images", "video"):
        raise UsageError(f"unknown mode {request.mode!r}: use images or video")
    if request.max_new_tokens <= 0:
        raise UsageError("--max-new-tokens must be positive")
