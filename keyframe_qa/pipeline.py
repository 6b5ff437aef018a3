"""The ask pipeline: probe -> exact frames -> budget -> model -> boxes -> report.

Nothing here imports torch: the model module is imported only when a model is needed, so
`extract_frames` (frames at times, no model) stays light.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence


from .budget import DEFAULT_MAX_VISUAL_TOKENS, check_context, plan_request, prompt_tokens_lower_bound
from .checkpoint import CheckpointInfo, inspect_checkpoint
from .generation import GenerationRequest, check_generation, resolve_generation
from .messages import warn
from .errors import UsageError
from .frames import read_frames
from .grounding import FrameGeometry, find_boxes, grounding_prompt
from .media import ProbedVideo, check_path, check_times, probe
from .outputs import check_distinct, check_output_dir, check_output_file, write_file, write_output
from .records import Answer, Frame, FrameBudget, GenerationSettings, ModelInfo
from .report import build_report, save_frames, to_json
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
    max_new_tokens: Optional[int] = None  # None: 256, or 1024 with `find` (grounding replies are long)
    sampling: str = "greedy"  # "greedy" (deterministic), or "model": the checkpoint's generation config
    temperature: Optional[float] = None  # sample at this temperature (0: greedy)
    top_p: Optional[float] = None  # sample from this nucleus mass
    top_k: Optional[int] = None  # sample among the k likeliest tokens
    repetition_penalty: Optional[float] = None  # above 1 discourages repeats
    seed: Optional[int] = None  # makes sampled answers repeatable
    save_frames: Optional[str] = None  # directory for PNGs of the frames
    find: Optional[str] = None  # an object to locate with the family's grounding prompt (--find)
    annotate: Optional[str] = None  # directory for frames with their boxes drawn
    html: Optional[str] = None  # path of a self-contained HTML page of the run
    output: Optional[str] = None  # where `ask` writes the JSON ("-": stdout); None: only returned


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
    return selection, read_selected(probed, selection)


def read_selected(probed: ProbedVideo, selection: Selection) -> list[Frame]:
    """Read the frames a selection chose."""
    return read_frames(probed, list(selection.times), requested=list(selection.requested),
                       scenes=list(selection.scenes))


@dataclass(frozen=True, eq=False)
class PreparedVideo:
    """A request's video probed and its frames read: everything before the model."""

    request: AskRequest
    probed: ProbedVideo
    selection: Selection
    frames: list
    probe_s: float
    decode_s: float
    checkpoint: Optional[CheckpointInfo] = None  # the model the budgets were planned for
    budgets: Optional[list] = None  # FrameBudget per frame, planned before decoding
    generation: Optional[GenerationSettings] = None  # the decoding settings, resolved for that model


def prepare(request: AskRequest, checkpoint: Optional[CheckpointInfo] = None) -> PreparedVideo:
    """Probe the video, check the request against it and the model, then read the frames.

    Everything that can refuse the request runs before decoding: the selection against the video
    (frame counts), the budget against the family, the prompt against the context length. The
    checkpoint's config is read (not the model) if `checkpoint` is not given. No torch; safe on a
    background thread.
    """
    selection_request = _selection_request(request)
    _check_request(request, selection_request)
    check_path(request.video)
    started = time.perf_counter()
    probed = probe(request.video)
    probe_s = time.perf_counter() - started
    decode_started = time.perf_counter()
    selection = select(probed, selection_request)
    checkpoint = checkpoint or inspect_checkpoint(request.model_id)
    generation = generation_settings(request, checkpoint)
    budgets = plan_frames(request, checkpoint, [(probed.info.width, probed.info.height)] * len(selection.times),
                          generation.max_new_tokens)
    frames = read_selected(probed, selection)
    return PreparedVideo(request, probed, selection, frames, probe_s, time.perf_counter() - decode_started,
                         checkpoint, budgets, generation)


def generation_request(request: AskRequest) -> GenerationRequest:
    """The decoding options of a request, as asked."""
    return GenerationRequest(sampling=request.sampling, max_new_tokens=request.max_new_tokens,
                             temperature=request.temperature, top_p=request.top_p, top_k=request.top_k,
                             repetition_penalty=request.repetition_penalty, seed=request.seed)


def generation_settings(request: AskRequest, checkpoint: CheckpointInfo) -> GenerationSettings:
    """The decoding settings this request runs with on this checkpoint (see generation.py)."""
    if request.sampling == "model" and checkpoint.generation_defaults is None:
        warn(f"{checkpoint.model_id} has no generation_config.json: --sampling model decodes greedily")
    return resolve_generation(generation_request(request), checkpoint.generation_defaults, find=bool(request.find))


def plan_frames(request: AskRequest, checkpoint: CheckpointInfo, sizes: Sequence[tuple[int, int]],
                max_new_tokens: int) -> list:
    """Each frame's budget for this model, and a refusal if a prompt cannot fit its context."""
    budgets = plan_request(sizes, checkpoint.family, mode=request.mode, per_frame=request.per_frame,
                           min_pixels=request.min_pixels, max_pixels=request.max_pixels,
                           max_visual_tokens=request.max_visual_tokens)
    prompts = [[b] for b in budgets] if request.per_frame else [budgets]
    longest = max(prompt_tokens_lower_bound(p, request.mode) for p in prompts)
    check_context(longest, max_new_tokens, checkpoint.context_length)
    return budgets


def check_outputs(request: AskRequest) -> None:
    """Refuse, before any work, outputs that cannot or must not be written (see outputs.py)."""
    inputs = [request.video]
    files = [check_output_file(path, option, inputs)
             for path, option in ((request.output, "-o"), (request.html, "--html")) if path]
    check_distinct(files)
    for folder, option in ((request.save_frames, "--save-frames"), (request.annotate, "--annotate")):
        if folder:
            check_output_dir(folder, option)


def ask(request: AskRequest, model=None) -> dict:
    """Run one request and return the JSON-ready report (also written to `request.output` if set).

    Pass `model` to reuse a loaded one. Outputs are checked before anything is read or loaded.
    """
    _check_request(request, _selection_request(request))
    check_path(request.video)
    check_outputs(request)
    report = answer_prepared(prepare(request, model.checkpoint if model is not None else None), model)
    if request.output:
        write_output(check_output_file(request.output, "-o", [request.video]), to_json(report))
    return report


def answer_prepared(prepared: PreparedVideo, model=None) -> dict:
    """The model half of `ask`: budget, prompt, generate, boxes, report and its files."""
    request, probed, selection, frames = prepared.request, prepared.probed, prepared.selection, prepared.frames
    started = time.perf_counter()
    model_load_s = 0.0
    if model is None:
        model = load_model(request.model_id, device=request.device, dtype=request.dtype,
                           checkpoint=prepared.checkpoint)
        model_load_s = model.load_seconds
    budgets, generation = prepared.budgets, prepared.generation
    if budgets is None or prepared.checkpoint is None or prepared.checkpoint.family != model.family:
        generation = generation_settings(request, model.checkpoint)
        budgets = plan_frames(request, model.checkpoint, [(f.width, f.height) for f in frames],
                              generation.max_new_tokens)
    questions = list(request.questions)
    find = None
    if request.find:
        find = (grounding_prompt(request.find, model.family, 1 if request.per_frame else len(frames)), request.find)
        questions.append(find[0])
    generate_started = time.perf_counter()
    if request.per_frame:
        answers = []
        for position, frame in enumerate(frames):
            prompt = build_prompt([frame], [budgets[position]], request.mode)
            replies = model.answer(prompt, questions, generation)
            answers.extend(make_answers(questions, replies, model, [frame], [budgets[position]], frame.index,
                                        find=find))
    else:
        prompt = build_prompt(frames, budgets, request.mode)
        replies = model.answer(prompt, questions, generation)
        answers = make_answers(questions, replies, model, frames, budgets, None, find=find)
    generate_s = time.perf_counter() - generate_started
    warn_truncated(answers, generation, request.video)

    files = save_frames(frames, request.save_frames, option="--save-frames") if request.save_frames \
        else [None] * len(frames)
    info = ModelInfo(id=model.model_id, family=model.family.name, mode=request.mode,
                     device=model.device, dtype=model.dtype_name, generation=generation)
    timings = {
        "probe_s": prepared.probe_s,
        "decode_s": prepared.decode_s,
        "model_load_s": model_load_s,
        "generate_s": generate_s,
        "total_s": prepared.probe_s + prepared.decode_s + time.perf_counter() - started,
    }
    report = build_report(probed.info, info, frames, budgets, files, answers, timings)
    report["selection"] = dict(selection.record, per_frame=request.per_frame)
    if request.annotate:
        for record, path in zip(report["frames"], write_annotated(frames, answers, request.annotate)):
            record["annotated"] = path
    if request.html:
        from .html_report import render_html

        write_file(request.html, render_html(probed.info, frames, answers, model.model_id), "--html",
                   [request.video])
        report["html"] = request.html
    return report


def write_annotated(frames: Sequence[Frame], answers: Sequence[Answer], directory: str) -> list[str]:
    """Each frame with the boxes attributed to it drawn, as PNG; returns the paths."""
    from .annotate import draw_boxes

    drawn = [replace(f, image=draw_boxes(f.image, [b for a in answers for b in a.boxes if b.frame == f.index]))
             for f in frames]
    return save_frames(drawn, directory, suffix="_annotated", option="--annotate")


def frame_labels(frames: Sequence[Frame]) -> list[str]:
    """How frames are named in prompts: "frame 2 at 0:00:05.500"."""
    return [f"frame {f.index + 1} at {format_time(f.timestamp)}" for f in frames]


def warn_truncated(answers: Sequence[Answer], generation: GenerationSettings, where: str) -> None:
    """One warning line when replies stopped at the token limit (their answers say "truncated")."""
    cut = [a for a in answers if a.truncated]
    if not cut:
        return
    boxes = sum(len(a.boxes) for a in cut)
    kept = f", keeping the {boxes} box(es) before the cut" if boxes else ""
    warn(f"{where}: {len(cut)} reply(ies) stopped at --max-new-tokens {generation.max_new_tokens}{kept} "
         f"(marked \"truncated\"): raise --max-new-tokens to get them whole")


def build_prompt(frames: Sequence[Frame], budgets: Sequence[FrameBudget], mode: str,
                 labels: Optional[Sequence[str]] = None):
    """The model's view of the frames: the display frames, their budgets and the label each gets.

    The engine resizes each frame to its budget (the way its model's processor resizes).
    """
    from .model import VisualPrompt  # light: the module imports torch lazily inside functions

    return VisualPrompt(
        images=[f.image for f in frames],
        budgets=list(budgets),
        labels=list(labels) if labels is not None else frame_labels(frames),
        mode=mode,
        times=[f.timestamp for f in frames],
    )


def make_answers(questions, replies, model, frames, budgets, frame_index: Optional[int],
                 mention_labels: Optional[Sequence[str]] = None,
                 find: Optional[tuple[str, str]] = None) -> list[Answer]:
    """Answers from replies, with their boxes tied to frames (`frame_index` for per-frame questions).

    `find` is (grounding prompt, object asked for): that question's answer records the object.
    """
    return [
        Answer(
            question=question,
            answer=reply.text,
            raw=reply.raw,
            boxes=tuple(_boxes(reply.raw, model.family, frames, budgets, frame_index, mention_labels)),
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            frame=frame_index,
            truncated=reply.truncated,
            find=find[1] if find and question == find[0] else None,
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


def load_model(model_id: Optional[str] = None, *, device: str = "auto", dtype: str = "auto",
               checkpoint: Optional[CheckpointInfo] = None):
    """Load a Qwen-VL checkpoint (imports torch and transformers)."""
    from .model import QwenVLModel

    return QwenVLModel(model_id, device=device, dtype=dtype, checkpoint=checkpoint)


def _boxes(raw: str, family, frames: Sequence[Frame], budgets: Sequence[FrameBudget],
           frame_index: Optional[int], mention_labels: Optional[Sequence[str]] = None):
    # A frame can be named by its time label, or by the label the prompt gave it (BEFORE, AFTER).
    labels = mention_labels if mention_labels is not None else [format_time(f.timestamp) for f in frames]
    geometry = [
        FrameGeometry(index=f.index, input_size=(b.input_width, b.input_height), frame_size=(f.width, f.height),
                      label=label)
        for f, b, label in zip(frames, budgets, labels)
    ]
    return find_boxes(raw, family, geometry, asked_about=frame_index)


def _check_request(request: AskRequest, selection: SelectionRequest) -> None:
    if request.find is not None and not request.find.strip():
        raise UsageError("--find needs something to look for, e.g. --find \"red car\"")
    if not request.questions and not request.find:
        raise UsageError("give at least one question (or --find WHAT)")
    if not all(q.strip() for q in request.questions):
        raise UsageError("questions must not be empty")
    check_request(selection)
    if request.mode not in ("images", "video"):
        raise UsageError(f"unknown mode {request.mode!r}: use images or video")
    check_generation(generation_request(request))
