"""The ask pipeline: probe -> exact frames -> budget -> model -> boxes -> report.

Nothing here imports torch: the model module is imported only when a model is needed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Optional

from ..answering import AnswerOptions, answer_frames, check_text, plan
from ..console import warn
from ..engines import (
    EngineSpec,
    build_engine,
    check_spec,
    engine_checkpoint,
    resolved,
    shrink_for_engine,
    warm_engine_imports,
)
from ..engines.openai import check_images, check_server_limits
from ..errors import KeyframeQAError, ModelError, OutOfMemory, UsageError
from ..files.paths import OutputPath, check_distinct, check_output_dir, check_output_file, write_file, write_output
from ..model.checkpoint import CheckpointInfo, inspect_local_checkpoint
from ..model.generation import GenerationRequest, resolve_generation
from ..model.time_positions import fidelity_warning, time_fidelity
from ..options import check_record, option
from ..outputs.annotate import write_annotated
from ..outputs.html import render_html
from ..outputs.images import check_frame_names, save_frames
from ..outputs.report import build_report, model_record, pixel_limits_record, to_json
from ..records import Frame, GenerationSettings
from ..selection.select import Selection, SelectionRequest, check_request, select
from ..texts import check_prompt_text
from ..video.container import check_path
from ..video.frames import read_frames
from ..video.probe import ProbedVideo, probe
from .relevance import scorer_loader
from .when import WhenRequest, find_moments


@dataclass(frozen=True)
class AskRequest:
    """Everything one `ask` needs; the CLI builds it from options (declared in options.py: type, default,
    limits, help). The values are checked when it is made; the files and the model, once, by `ask`."""

    video: str  # path to the video file
    questions: tuple[str, ...]  # asked about the same frames
    selection: SelectionRequest = field(default_factory=SelectionRequest)  # which frames (default sampling)
    engine: EngineSpec = field(default_factory=EngineSpec)  # which model answers, and where
    generation: GenerationRequest = field(default_factory=GenerationRequest)  # decoding, as asked
    per_frame: bool = option("per_frame")  # every question about each frame on its own
    mode: str = option("mode")  # frames as images, or as one video
    find: Optional[str] = option("find")  # locate this with the grounding prompt (boxes)
    min_pixels: Optional[int] = option("min_pixels")  # per-frame minimum model-input pixels
    max_pixels: Optional[int] = option("max_pixels")  # per-frame maximum model-input pixels
    max_visual_tokens: Optional[int] = option("max_visual_tokens")  # all frames together
    when: Optional[str] = option("when")  # find the moments this happens first, then ask about them
    precision: str = option("precision")  # --when's boundaries: "frame" or seconds
    refine: bool = option("refine")  # --when's single-frame probes
    window_frames: int = option("window_frames")  # --when's frames per coarse window
    save_frames: Optional[str] = None  # directory for PNGs of the frames
    annotate: Optional[str] = None  # directory for frames with their boxes drawn
    html: Optional[str] = None  # path of a self-contained HTML page of the run
    output: Optional[str] = None  # where `ask` writes the JSON ("-": stdout); None: only returned

    def __post_init__(self) -> None:
        check_record(self)


def select_frames(probed: ProbedVideo, request: SelectionRequest) -> tuple[Selection, list[Frame]]:
    """Choose frames (times, sampling, scenes or --relevant) and read them. No VLM."""
    selection = select(probed, request, load_scorer=scorer_loader(request))
    return selection, read_selected(probed, selection)


def read_selected(probed: ProbedVideo, selection: Selection, convert=None) -> list[Frame]:
    """Read the frames a selection chose (each passed through `convert` as it is decoded)."""
    return read_frames(
        probed,
        list(selection.times),
        requested=list(selection.requested),
        scenes=list(selection.scenes),
        convert=convert,
        relevance=selection.relevance,
    )


def _shrinker(request: AskRequest, budgets: list):
    """Shrink each frame to its budget as it is decoded, the way the engine itself would, unless a
    full-size output (--save-frames, --annotate, --html) needs the displayed picture.

    Only budget-sized pictures are then held: a 720p frame is 2.8 MB, its budget-sized copy a tenth.
    """
    if request.save_frames or request.annotate or request.html:
        return None

    def shrink(frame: Frame) -> Frame:
        image = shrink_for_engine(frame.image, budgets[frame.index], request.engine.model_id)
        return replace(frame, image=image, display_size=(frame.width, frame.height))

    return shrink


@dataclass(frozen=True, eq=False)
class PreparedVideo:
    """A request's video probed and its frames read: everything before the model."""

    request: AskRequest  # the request, as asked
    probed: ProbedVideo  # its video, probed (and indexed as far as the selection needed)
    selection: Selection  # the frames chosen
    frames: list  # the frames read, each shrunk to its budget unless a full-size output needs it
    checkpoint: CheckpointInfo  # the model the budgets were planned for (its family decides them)
    options: AnswerOptions  # how the frames are put to it, decoding resolved for that checkpoint
    budgets: list  # FrameBudget per frame, planned (and checked against the context) before decoding
    probe_s: float  # seconds to probe
    decode_s: float  # seconds to select and decode
    import_s: float = 0.0  # importing the engine's resize (torch) before decoding: reported as model load
    time_fidelity: Optional[dict] = None  # video mode: how truly the model is told the frames' times


def prepare(
    request: AskRequest,
    checkpoint: Optional[CheckpointInfo] = None,
    *,
    quiet: bool = False,
    selection: Optional[SelectionRequest] = None,
    scorer=None,
) -> PreparedVideo:
    """Probe the video, check the request against it and the model, then read the frames.

    Everything that can refuse the request runs before decoding: the selection against the video
    (frame counts), the budget against the family, the prompt against the context length. The
    checkpoint's config is read (not the model) if `checkpoint` is not given. `selection`: the request's
    selection, already built and checked by the caller (`ask` checks it before its outputs). The result
    carries what was worked out (the checkpoint, the answer options, the budgets) to the model half.
    `scorer`: --relevant's scorer, already loaded (else the request's is loaded once the candidates are
    known to be enough). No torch; safe on a background thread.
    """
    selecting = selection
    if selecting is None:
        selecting = selection_request(request)
        _check_request(request, selecting, scorer=scorer)
    # The text (questions, the labels of given times) is checked first when the model's config is here:
    # a 10 MB question or 10,000 times are refused before the video is probed, indexed or decoded.
    early = checkpoint or _checkpoint_here(request)
    options = answer_options(request, generation_settings(request, early)) if early is not None else None
    if early is not None and options is not None:
        if request.engine.engine == "openai":
            _check_server_limits(request, early)
        check_text(options, early, request.questions, selecting.times or ())
    started = time.perf_counter()
    probed = probe(request.video)  # refuses a missing, empty or unreadable path first
    probe_s = time.perf_counter() - started
    decode_started = time.perf_counter()
    frame_range = (early.limits.min_frames, early.limits.max_frames) if early is not None else None
    chosen = select(probed, selecting, frame_range, scorer=scorer, load_scorer=scorer_loader(selecting))
    if request.engine.engine == "openai" and request.mode == "images" and not request.per_frame:
        check_images(len(chosen.times), request.engine.max_images, request.engine.base_url)  # before a frame is decoded
    checkpoint = early or engine_checkpoint(request.engine)
    if options is None:
        options = answer_options(request, generation_settings(request, checkpoint))
        if request.engine.engine == "openai":
            _check_server_limits(request, checkpoint)
    fidelity = time_fidelity(checkpoint, request.mode, chosen.times, request.per_frame)
    warning = fidelity_warning(fidelity, request.video)
    if warning and not quiet:
        warn(warning)
    budgets = plan(
        options,
        checkpoint,
        [(probed.info.width, probed.info.height)] * len(chosen.times),
        questions=request.questions,
        times=chosen.times,
    )
    shrink = _shrinker(request, budgets)
    import_s = 0.0
    if shrink is not None:
        imported = time.perf_counter()
        warm_engine_imports()  # the engines' resize imports torch: not part of decoding
        import_s = time.perf_counter() - imported
    decode_s = time.perf_counter() - decode_started - import_s
    decoding = time.perf_counter()
    frames = read_selected(probed, chosen, convert=shrink)
    return PreparedVideo(
        request=request,
        probed=probed,
        selection=chosen,
        frames=frames,
        checkpoint=checkpoint,
        options=options,
        budgets=budgets,
        probe_s=probe_s,
        decode_s=decode_s + time.perf_counter() - decoding,
        import_s=import_s,
        time_fidelity=fidelity,
    )


def _check_server_limits(request: AskRequest, checkpoint: CheckpointInfo) -> None:

    check_server_limits(checkpoint, request.mode, request.min_pixels, request.max_pixels)


def _checkpoint_here(request: AskRequest) -> Optional[CheckpointInfo]:
    """The model's config facts when they can be read here at once (a folder or the cache), else None:
    a model that must be fetched, or a broken config, is reported in its usual place, after the video."""

    try:
        spec = resolved(request.engine)
        return engine_checkpoint(spec) if spec.model_id and inspect_local_checkpoint(spec.model_id) else None
    except KeyframeQAError:
        return None


def generation_settings(request: AskRequest, checkpoint: CheckpointInfo, *, quiet: bool = False) -> GenerationSettings:
    """The decoding settings this request runs with on this checkpoint (see generation.py); `quiet` leaves
    the warning about them to the later call (the early checks need only the reply's length)."""
    if request.generation.sampling == "model" and checkpoint.generation_defaults is None and not quiet:
        warn(f"{checkpoint.model_id} has no generation_config.json: --sampling model decodes greedily")
    return resolve_generation(request.generation, checkpoint.generation_defaults, find=bool(request.find))


def answer_options(request: AskRequest, generation: GenerationSettings) -> AnswerOptions:
    """How this request puts its frames to the model."""
    return AnswerOptions(
        generation,
        mode=request.mode,
        per_frame=request.per_frame,
        min_pixels=request.min_pixels,
        max_pixels=request.max_pixels,
        max_visual_tokens=request.max_visual_tokens,
        find=request.find,
    )


def check_outputs(request: AskRequest) -> Optional[OutputPath]:
    """Refuse, before any work, outputs that cannot or must not be written (files/paths.py); returns the
    checked JSON output (`-o`), which is then written as checked, or None when there is none."""
    inputs = [request.video]
    target = check_output_file(request.output, "-o", inputs) if request.output else None
    page = check_output_file(request.html, "--html", inputs) if request.html else None
    check_distinct([target, page])
    for folder, flag in ((request.save_frames, "--save-frames"), (request.annotate, "--annotate")):
        if folder:
            check_output_dir(folder, flag)
    return target


def ask(request: AskRequest, engine=None) -> dict:
    """Run one request and return the JSON-ready report (also written to `request.output` if set).

    Pass `engine` to reuse a loaded model or a connected server. Outputs are checked before anything
    is read, loaded or contacted.
    """
    selection = selection_request(request)
    _check_request(request, selection)
    check_spec(request.engine)
    check_path(request.video)
    target = check_outputs(request)
    if request.when is not None:
        report = ask_when(request, engine)
    else:
        checkpoint = engine.checkpoint if engine is not None else None
        report = answer_prepared(prepare(request, checkpoint, selection=selection), engine)
    if target is not None:
        write_output(target, to_json(report))
    return report


def ask_when(request, engine=None, *, warn_cut: bool = True) -> dict:
    """`ask --when`: the moments `request.when` happens (the search), then the questions about the first,
    middle and last frame of each, as one `ask` of those frames (labelled with their times). As many
    moments as the visual-token budget gives frames for (at least 64 tokens a frame), in time order."""

    if engine is None:
        engine = build_engine(request.engine)
    asked_when = WhenRequest(
        video=request.video,
        query=request.when or "",
        engine=request.engine,
        generation=request.generation,
        min_pixels=request.min_pixels,
        max_pixels=request.max_pixels,
        max_visual_tokens=request.max_visual_tokens,
        mode=request.mode,
        precision=request.precision,
        refine=request.refine,
        window_frames=request.window_frames,
    )
    found = find_moments(asked_when, engine, progress=warn_cut)
    times = moment_frames(found, request.max_visual_tokens)
    if times and (request.questions or request.find):
        asked = replace(request, selection=SelectionRequest(times=tuple(times)), when=None)
        prepared = prepare(asked, engine.checkpoint, quiet=not warn_cut, selection=selection_request(asked))
        report = answer_prepared(prepared, engine, warn_cut=warn_cut)
    else:  # nothing found, or nothing asked beyond the search: the moments are the answer
        report = {
            "schema_version": found["schema_version"],
            "video": found["video"],
            "model": found["model"],
            "frames": [],
            "answers": [],
            "usage": {"prompt_tokens": 0, "visual_tokens": 0, "completion_tokens": 0},
            "timings": found["timings"],
        }
    report["when"] = {key: found[key] for key in ("query", "moments", "probes_read_by", "passes", "usage")}
    return report


def moment_frames(found: dict, max_visual_tokens: Optional[int]) -> list[float]:
    """The times of each moment's first, middle and last frame, for as many moments as the budget feeds."""
    limit = max(1, (max_visual_tokens or 3 * 64 * len(found["moments"])) // 64)
    times: list[float] = []
    for moment in found["moments"]:
        first, last = moment["first_frame"]["timestamp"], moment["last_frame"]["timestamp"]
        chosen = list(dict.fromkeys((first, round((first + last) / 2, 6), last)))
        if times and len(times) + len(chosen) > limit:
            break
        times.extend(chosen[:limit])
    return times


def answer_prepared(prepared: PreparedVideo, engine=None, *, warn_cut: bool = True) -> dict:
    """The model half of `ask`: the engine answers, boxes are tied to frames, the report and its files.

    `warn_cut=False` leaves out the warning for replies cut at --max-new-tokens (a batch counts them)."""
    request, probed, selection, frames = prepared.request, prepared.probed, prepared.selection, prepared.frames
    started = time.perf_counter()
    _check_frame_files(request, frames)  # a planted link or an input in a frame's name: refused before the model
    model_load_s = prepared.import_s
    if engine is None:
        engine = build_engine(request.engine, prepared.checkpoint)
        model_load_s += engine.load_seconds
    if engine.family.name != prepared.checkpoint.family.name:
        # The frames were shrunk to budgets of another family's patch size: the model would not see what
        # the report says. The engine and the checkpoint given to `prepare` must be the same model.
        raise ModelError(
            f"{request.video}: the frames were planned for {prepared.checkpoint.model_id} "
            f"({prepared.checkpoint.family.name}), but the engine is {engine.model_id} ({engine.family.name})"
        )
    options, budgets = prepared.options, prepared.budgets
    generate_started = time.perf_counter()
    retry = None
    try:
        answers, budgets = answer_frames(
            engine, frames, request.questions, options, budgets=budgets, where=request.video, warn_cut=warn_cut
        )
    except OutOfMemory as exc:
        # Once, with half the visual tokens: the frames are decoded again at the smaller size, so the
        # model sees exactly what the report says.
        options, frames, budgets, retry = _halve_budget(prepared, engine, budgets, exc)
        answers, budgets = answer_frames(
            engine, frames, request.questions, options, budgets=budgets, where=request.video, warn_cut=warn_cut
        )
    generate_s = time.perf_counter() - generate_started

    files = (
        save_frames(frames, request.save_frames, option="--save-frames", inputs=[request.video])
        if request.save_frames
        else [None] * len(frames)
    )
    timings = {
        "probe_s": prepared.probe_s,
        "decode_s": prepared.decode_s,
        "model_load_s": model_load_s,
        "generate_s": generate_s,
        "total_s": prepared.probe_s + prepared.import_s + prepared.decode_s + time.perf_counter() - started,
    }
    model = model_record(engine, request.mode, options.generation)
    model["pixel_limits"] = pixel_limits_record(engine.checkpoint, request.mode, request.min_pixels, request.max_pixels)
    if prepared.time_fidelity is not None:
        model["time_fidelity"] = prepared.time_fidelity
    report = build_report(probed.info, model, frames, budgets, files, answers, timings)
    report["selection"] = dict(selection.record, per_frame=request.per_frame)
    if retry is not None:
        report["memory_retry"] = retry
    if request.annotate:
        for record, path in zip(
            report["frames"], write_annotated(frames, answers, request.annotate, inputs=[request.video])
        ):
            record["annotated"] = path
    if request.html:
        write_file(
            request.html,
            render_html(probed.info, frames, answers, engine.model_id, selection.record),
            "--html",
            [request.video],
        )
        report["html"] = request.html
    return report


def _halve_budget(prepared: PreparedVideo, engine, budgets: list, error: OutOfMemory):
    """(answer options, frames, budgets, JSON record) for the one retry after running out of accelerator
    memory: the visual-token budget set to half of what the failed prompt used."""
    request = prepared.request
    sizes = [(f.width, f.height) for f in prepared.frames]
    used = sum(b.visual_tokens for b in budgets)
    half = used // 2
    retried = replace(request, max_visual_tokens=half)
    options = replace(prepared.options, max_visual_tokens=half)
    try:
        smaller = plan(options, engine.checkpoint, sizes)
    except UsageError as exc:
        raise OutOfMemory(f"{error} (half the budget, {half} visual tokens, cannot be planned: {exc})") from error
    warn(
        f"{request.video}: the GPU ran out of memory with {used} visual tokens; retrying once with "
        f"--max-visual-tokens {half}"
    )
    shrink = _shrinker(retried, smaller)
    frames = prepared.frames if shrink is None else read_selected(prepared.probed, prepared.selection, convert=shrink)
    record = {
        "error": str(error),
        "visual_tokens_before": used,
        "max_visual_tokens": half,
        "visual_tokens": sum(b.visual_tokens for b in smaller),
    }
    return options, frames, smaller, record


def _check_frame_files(request: AskRequest, frames: Sequence[Frame]) -> None:

    for directory, flag, suffix in (
        (request.save_frames, "--save-frames", ""),
        (request.annotate, "--annotate", "_annotated"),
    ):
        if directory:
            check_frame_names(frames, directory, suffix=suffix, option=flag, inputs=[request.video])


def selection_request(request: AskRequest) -> SelectionRequest:
    """The request's SelectionRequest, with what it takes from the request (budget, mode, --relevant's texts)."""
    selection = request.selection
    # The default sampling is capped by the same budget the model stage will apply; --relevant scores frames
    # against the questions and the --find target, with its scorer where the model runs.
    queries = tuple(request.questions) + ((request.find,) if request.find else ())
    return replace(
        selection,
        mode=request.mode,
        max_visual_tokens=request.max_visual_tokens,
        queries=queries,
        device=request.engine.device,
        dtype=request.engine.dtype,
    )


def load_model(
    model_id: Optional[str] = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    checkpoint: Optional[CheckpointInfo] = None,
):
    """Load a Qwen-VL checkpoint in this process: the transformers engine (imports torch)."""
    return build_engine(EngineSpec(engine="transformers", model_id=model_id, device=device, dtype=dtype), checkpoint)


def check_texts(request: AskRequest) -> None:
    """Usage errors for prompt text that no tokenizer takes (texts.py): the questions, --find, --when."""
    for question in request.questions:
        check_prompt_text(question, "the question")
    for text, what in ((request.find, "--find"), (request.when, "--when")):
        if text is not None:
            check_prompt_text(text, what)


def _check_request(request: AskRequest, selection: SelectionRequest, scorer=None) -> None:
    check_texts(request)
    if request.find is not None and not request.find.strip():
        raise UsageError('--find needs something to look for, e.g. --find "red car"')
    if not request.questions and not request.find and request.when is None:
        raise UsageError("give at least one question (or --find WHAT)")
    if not all(q.strip() for q in request.questions):
        raise UsageError("questions must not be empty")
    check_request(selection, scorer=scorer)
    check_when(request, selection)


def check_when(request: AskRequest, selection: Optional[SelectionRequest] = None) -> None:
    """Usage errors for --when beside options it cannot go with (it chooses the frames itself)."""
    selection = selection or request.selection
    if request.when is not None:
        if not request.when.strip():
            raise UsageError('--when needs a description of what to find, e.g. --when "a door opens"')
        if selection.method != "default":
            raise UsageError(
                "choose frames one way: --when finds them itself, without --at, --scenes, --every, "
                "--num-frames, --fps or --relevant"
            )
        # Without questions --when is the search alone, which --mode video runs on windows of video.
        if (request.per_frame or request.mode == "video") and (request.questions or request.find):
            raise UsageError(
                "--when asks about the frames it found as images, together: without --per-frame and --mode video"
            )
