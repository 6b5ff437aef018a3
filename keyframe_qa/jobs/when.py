"""The `when` job: find the moments a description happens, down to the exact first and last frame.

1. Coarse pass: the video is cut into overlapping windows (selection/windows.py), and the model is asked
   when the query happens in each:
   - images mode (any engine, servers included): the window's frames as labelled images;
   - video mode (Qwen2.5-VL and Qwen3-VL, the families trained to ground time; in process or through
     vLLM): the window's frames as one video at 2 fps at most, with the family's own grounding prompt.
   Time is told relative to each window's start, in every mode: Qwen2.5-VL's temporal position ids can
   only count from the video's first frame, and the models were trained on clips that start at 0. The
   labels, the video-mode times text and Qwen3-VL's `<t seconds>` markers all say the same window-relative
   times. The spans a reply states (replies/moments.py) are clamped to the window (flagged when they had to be),
   moved back onto the video by the window's start, and merged across windows.
2. Refinement: for each boundary, single-frame yes/no probes on frames decoded exactly from the index,
   bisecting between the last frame that does not show the query and the first that does (or the reverse
   for the end) until the gap is one frame, or `precision` seconds. About log2 of the frames in the gap:
   half a second at 30 fps takes 4 probes. Answers that are neither yes nor no, or that contradict the
   coarse span, keep the coarse boundary (`"refined": false` with the reason). A span the coarse pass
   proposed where no probed frame shows the query (near either boundary, nor in its middle) is not a
   moment: it is listed under `rejected`.
Finding nothing is a result: no moments.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Optional

from ..answering import AnswerOptions, answer_frames, check_text, yes_probability
from ..console import Progress, duration_text, status, warn
from ..engines import EngineSpec, build_engine, engine_checkpoint
from ..errors import ImageLimit, UsageError
from ..files.paths import check_distinct, check_output_file, write_file
from ..model.generation import GenerationRequest, resolve_generation
from ..model.time_positions import time_fidelity
from ..options import check_record, option, word_or_positive
from ..outputs.html import render_when
from ..outputs.report import SCHEMA_VERSION, model_record, video_record
from ..records import Frame, GenerationSettings
from ..replies.moments import parse_moments
from ..replies.reading import thinking_parts
from ..selection.windows import merge_spans, plan_windows
from ..texts import check_prompt_text
from ..video.container import check_path
from ..video.frames import read_frames
from ..video.probe import ProbedVideo, probe

COARSE_RATE = 2.0  # frames a second at most: what Qwen2.5-VL and Qwen3-VL were trained to ground at
LONG_RATE = 1.0  # beyond one window, a frame a second per window
PROBE_TOKENS = 4  # "yes" or "no" needs a token or two
STEP_LIMIT = 8  # steps outward looking for a probe that confirms a coarse boundary
VIDEO_FAMILIES = ("qwen2.5-vl", "qwen3-vl")  # trained to ground time in a video (Qwen2-VL was not)
NOT_SHOWN = "no frame near the coarse boundary showed it"
NEITHER = "a probe answered neither yes nor no"
# Probes are bounded by the windows: a real moment takes about 14 (two boundaries of log2 of a step's frames,
# plus the steps that confirm them), so 64 a window leaves room for several moments in every window, and a
# server that claims the query everywhere (or names thousands of spans) cannot make the search unbounded.
PROBES_PER_WINDOW = 64
MIN_PROBES = 256  # however few the windows: a short video may hold a dozen real moments
PROBES_PER_MOMENT = 14  # what the plan announces per moment found (the 30-minute benchmark's figure)
LIMIT_REACHED = f"the probe limit was reached ({PROBES_PER_WINDOW} probes a window, {MIN_PROBES} at least)"


@dataclass(frozen=True)
class WhenRequest:
    """Everything one `when` needs: the video, the query, and the options (declared in options.py),
    checked against their declarations when it is made."""

    video: str  # path to the video file
    query: str  # what happens, in words
    engine: EngineSpec = field(default_factory=EngineSpec)  # which model answers, and where
    generation: GenerationRequest = field(default_factory=GenerationRequest)  # decoding, as asked
    min_pixels: Optional[int] = option("min_pixels")  # per-frame minimum model-input pixels
    max_pixels: Optional[int] = option("max_pixels")  # per-frame maximum model-input pixels
    max_visual_tokens: Optional[int] = option("max_visual_tokens")  # each window's frames together
    mode: str = option("mode")  # the coarse pass's windows as images or as one video
    precision: str = option("precision")  # "frame" (exact boundaries) or seconds
    refine: bool = option("refine")  # single-frame probes at the boundaries
    window_frames: int = option("window_frames")  # frames sampled per window of the coarse pass

    def __post_init__(self) -> None:
        check_record(self)


def answer_options(request: WhenRequest, generation: GenerationSettings, mode: Optional[str] = None) -> AnswerOptions:
    """How the search puts its frames to the model: all together (never per frame), no grounding prompt."""
    return AnswerOptions(
        generation,
        mode=mode or request.mode,
        per_frame=False,
        min_pixels=request.min_pixels,
        max_pixels=request.max_pixels,
        max_visual_tokens=request.max_visual_tokens,
        find=None,
    )


@dataclass(frozen=True)
class Boundary:
    """One refined boundary of a moment."""

    frame_number: int  # the exact frame
    timestamp: float  # its presentation time, seconds from the first frame
    refined: bool  # found by probes (else the coarse boundary, snapped to a frame)
    reason: Optional[str]  # why not refined
    probes: int  # single-frame probes spent on it


def find_moments(request: WhenRequest, engine=None, *, progress: bool = False) -> dict:
    """Run one `when` request and return the JSON-ready report (schema_version 1).

    `progress`: the plan (calls and probes), the expected time once the first call is timed, and a bar
    (a line every 30 s in a log) on stderr."""
    check_prompt_text(request.query, "the query")
    if not request.query or not request.query.strip():
        raise UsageError('give a description of what to find, e.g. keyframe-qa when video.mp4 "a door opens"')
    precision = _precision(request.precision)
    check_path(request.video)
    checkpoint = engine.checkpoint if engine is not None else engine_checkpoint(request.engine)
    _check_mode(request, checkpoint)
    generation = resolve_generation(request.generation, checkpoint.generation_defaults)
    # The query goes into every prompt: a text that cannot fit the model's context is refused here, before
    # the video is read or the model loads (text_tokens.py bounds it before tokenising).
    check_text(
        answer_options(request, generation),
        checkpoint,
        [_coarse_question(request.query, request.mode)],
        [0.0] * request.window_frames,
    )
    started = time.perf_counter()
    probed = probe(request.video)
    probed.index  # noqa: B018 - the search reads frames by number: the complete index
    load_started = time.perf_counter()
    if engine is None:
        engine = build_engine(request.engine, checkpoint)
    load_s = time.perf_counter() - load_started
    search = _Search(request, probed, engine, generation, precision, progress=progress)
    moments = search.run()
    model = model_record(engine, request.mode, generation)
    if search.passes and request.mode == "video":
        fidelity = time_fidelity(engine.checkpoint, "video", search.first_told)
        if fidelity:
            model["time_fidelity"] = fidelity
    report = {
        "schema_version": SCHEMA_VERSION,
        "video": video_record(probed.info),
        "model": model,
        "query": request.query,
        "time_told": "from each window's start",
        "moments": moments,
        "rejected": search.rejected,
        "probes_read_by": sorted(search.probe_methods),
        "window_frames": search.window_frames,
        "passes": search.passes,
        "usage": search.usage,
        "probe_limit": {"limit": search.probe_limit, "per_window": PROBES_PER_WINDOW, "reached": search.limit_reached},
        "timings": {"model_load_s": round(load_s, 4), "total_s": round(time.perf_counter() - started, 4)},
    }
    return report


def when_job(
    request, *, output: Optional[str] = None, html: Optional[str] = None, engine=None, progress: bool = True
) -> tuple[dict, object]:
    """The `when` command: outputs checked before any work, the search, then the HTML page (the first and
    last frame of each moment read again, exactly); returns the report and the checked JSON output."""

    target = check_output_file(output or "-", "-o", [request.video])
    page = check_output_file(html, "--html", [request.video]) if html else None
    check_distinct([target, page])
    report = find_moments(request, engine, progress=progress)
    if html:
        probed = probe(request.video)
        pairs = []
        for moment in report["moments"]:
            # Found, not asked for: no "asked for" time in the captions.
            first, last = read_frames(
                probed, [moment["first_frame"]["timestamp"], moment["last_frame"]["timestamp"]], requested=[None, None]
            )
            pairs.append((first, last))
        write_file(
            html,
            render_when(probed.info, request.query, report["moments"], pairs, report["model"]["id"]),
            "--html",
            [request.video],
        )
        report["html"] = html
    return report, target


def _check_mode(request, checkpoint) -> None:
    """Video mode is for the families trained to ground time in a video (in process, or through vLLM: the
    server engine refuses any other server before the first frame is sent)."""
    if request.mode != "video":
        return
    if checkpoint.family.name not in VIDEO_FAMILIES:
        raise UsageError(
            f"when --mode video needs Qwen2.5-VL or Qwen3-VL, which were trained to find moments in "
            f"a video; {checkpoint.model_id} is {checkpoint.family.name}, which is told no time in "
            f"video mode: use --mode images (its frames labelled with their times)"
        )


def _coarse_question(query: str, mode: str) -> str:
    """The coarse pass's question. Images mode: the frames come labelled with their times from the window's
    start. Video mode: the Qwen cookbooks' grounding prompt, the video's times told by the model's own
    time encoding and the times text after it, from the window's start too."""
    if mode == "video":
        return (
            f"Give the query: '{query}', when does the described content occur in the video? "
            f'Use seconds for time format, as "from S to E seconds", one line per time it occurs, '
            f'or "never" if it does not occur.'
        )
    return (
        f"The frames above are from one clip, each labelled with its time from the clip's start. When does "
        f'this happen: "{query}"? Answer with its start and end time in seconds from the start of the clip, '
        f'as "from S to E seconds", one line per time it happens, or "never".'
    )


def _precision(text: str) -> Optional[float]:
    """None for frame precision, else seconds (a usage error for anything else)."""
    return word_or_positive("precision", text, "frame", "a number of seconds")


class _Search:
    """The coarse pass and the refinement of one request, with what they spent."""

    def __init__(
        self, request, probed: ProbedVideo, engine, generation, precision: Optional[float], *, progress: bool = False
    ):
        self.request, self.probed, self.engine, self.precision = request, probed, engine, precision
        self.progress = progress
        self.probe_limit = PROBES_PER_WINDOW  # set from the windows in run()
        self.limit_reached = False
        self._bar: Optional[Progress] = None
        self.generation = generation
        self.passes: list[dict] = []
        self.usage = {"calls": 0, "frames": 0, "prompt_tokens": 0, "visual_tokens": 0, "completion_tokens": 0}
        self.answers: dict[int, Optional[bool]] = {}  # frame number -> shows the query (probe cache)
        self.probe_methods: set[str] = set()  # how probes were read: "probability" (first token) or "text"
        self.first_told: list[float] = []  # the first pass's frame times as the model was told them (every
        # window is sampled on the same grid, so one says how truly video mode tells time)
        self.rejected: list[dict] = []  # coarse spans no probed frame confirmed
        self.window_frames = request.window_frames  # frames a window: fewer when the server takes fewer images

    def _fit(self, frames: int, limit: int, source: str) -> int:
        """Windows of at most `limit` frames (at least 2: a window needs a start and an end), said in one line."""
        if limit < 2:
            raise UsageError(
                f"the server takes at most {limit} image in one prompt ({source}): when's windows need "
                f"2 at least; raise the server's limit (vLLM: --limit-mm-per-prompt '{{\"image\": N}}')"
            )
        status(
            f"when: the server takes at most {limit} images in one prompt ({source}): windows of {limit} frames "
            f"instead of {frames}"
        )
        return limit

    def _coarse_pass(self, frames: int):
        """The coarse pass over windows of at most `frames` frames: (its spans, the windows, the sampling rate)."""
        info = self.probed.info
        # Sample real frames: up to the last frame's time, every `step` frames (a whole number, so a
        # constant-rate video's samples are evenly spaced, at the wanted rate or just under it).
        duration = self._time(self.probed.frame_count - 1)
        wanted = COARSE_RATE if duration <= (frames - 1) / COARSE_RATE else LONG_RATE
        step = max(1, math.ceil(info.fps / wanted - 1e-9)) if info.fps else 0
        rate = info.fps / step if step else wanted
        windows = plan_windows(duration, rate=rate, frames=frames)
        self.probe_limit = max(MIN_PROBES, PROBES_PER_WINDOW * len(windows))
        refine = self.request.refine
        if self.progress:
            status(
                f"when: {len(windows)} call{'s' if len(windows) != 1 else ''} for the coarse pass (windows of "
                f"up to {frames} frames at {rate:.3g} a second)"
                + (
                    f", then about {PROBES_PER_MOMENT} single-frame probes for each moment found (at most "
                    f"{self.probe_limit}: {PROBES_PER_WINDOW} a window)"
                    if refine
                    else ""
                )
            )
        spans = []
        self._bar = Progress(len(windows), desc="when: coarse pass", unit="call", enabled=self.progress)
        try:
            for number, window in enumerate(windows):
                started = time.perf_counter()
                spans.extend(self._coarse(window))
                self._bar.update()
                if number == 0 and self.progress and len(windows) > 1:
                    took = time.perf_counter() - started
                    status(
                        f"when: the first call took {duration_text(took)}: the coarse pass takes about "
                        f"{duration_text(took * len(windows))}"
                        + (", each probe a fraction of a call (one forward pass of one frame)" if refine else "")
                    )
        finally:
            self._bar.close()
        return spans, windows, rate

    def run(self) -> list[dict]:
        frames = self.request.window_frames
        limit = self.request.engine.max_images if self.request.engine.engine == "openai" else None
        if limit is not None and limit < frames:
            frames = self._fit(frames, limit, "--max-images")
        while True:
            try:
                spans, windows, rate = self._coarse_pass(frames)
                break
            except ImageLimit as exc:
                # The server said how many images a prompt may hold: the windows are planned again to fit.
                if exc.limit >= frames:
                    raise
                frames = self._fit(frames, exc.limit, "the server's refusal")
                self.passes.clear()  # the calls made stay in the usage: they were made
                self.first_told = []
        self.window_frames = frames
        refine = self.request.refine
        merged = merge_spans([(s, e) for s, e, _ in spans], gap=1.0 / rate)
        moments = []
        planned = min(self.probe_limit, PROBES_PER_MOMENT * len(merged)) if refine else 0
        self._bar = Progress(planned, desc="when: probes", unit="probe", enabled=self.progress and planned > 0)
        try:
            for start, end in merged:
                labels = [label for s, e, label in spans if s <= end and e >= start and label]
                moment = self._moment(start, end, labels[0] if labels else "", rate)
                if moment is not None:
                    moments.append(moment)
        finally:
            self._bar.close()
        if self.limit_reached:
            kept = sum(1 for m in moments if m["reason"] and LIMIT_REACHED in m["reason"])
            keep = "moments keep their" if kept != 1 else "moment keeps its"
            warn(
                f"when: the probe limit was reached: {self.probe_limit} probes for {len(windows)} "
                f"window{'s' if len(windows) != 1 else ''} ({PROBES_PER_WINDOW} a window, {MIN_PROBES} at least), "
                f"and the coarse pass named {len(merged)} spans; {kept} {keep} coarse boundaries (refined false)"
            )
        return moments

    def _coarse(self, window) -> list[tuple[float, float, str]]:
        """One window's pass: its spans in the video's seconds, from a reply in the window's own."""
        frames = self._read(list(window.times))
        # Video mode needs two frames for a temporal patch: a one-frame window (a one-frame video) goes as an image.
        mode = self.request.mode if len(frames) > 1 else "images"
        origin = frames[0].timestamp  # the window's first frame is its time 0
        answer = self._ask(
            frames, _coarse_question(self.request.query, mode), self.generation.max_new_tokens, mode=mode, origin=origin
        )
        if not self.first_told:
            self.first_told = [round(f.timestamp - origin, 6) for f in frames]
        length = window.end - origin
        spans, clamped = [], False
        for span in parse_moments(answer.raw):
            start, end = max(0.0, span.start), min(length, span.end)
            clamped = clamped or (start, end) != (span.start, span.end)
            if end >= start:
                spans.append((round(start + origin, 6), round(end + origin, 6), span.label))
        self.passes.append(
            {
                "window": [window.start, window.end],
                "origin": round(origin, 6),
                "mode": mode,
                "frames": len(frames),
                "raw": answer.raw,
                "spans": [[s, e] for s, e, _ in spans],
                "clamped": clamped,
                "truncated": answer.truncated,
            }
        )
        if thinking_parts(answer.raw)[2]:
            # A thinking model cut off before its answer: its spans are what its reasoning stated.
            self.passes[-1]["thinking"] = "cut off inside its reasoning: spans from the reasoning"
        return spans

    def _moment(self, start: float, end: float, label: str, rate: float) -> Optional[dict]:
        """The moment a merged coarse span becomes, or None when probes rejected it (listed in `rejected`)."""
        first_number = self._number_at(start)
        last_number = self._number_at(end)
        if self.request.refine:
            spent = len(self.answers)
            step = max(1, round(self.probed.info.fps / rate))
            # Stepping inward stays inside the coarse span (and one step past it): a boundary is looked for in
            # its own span, not in the next moment's.
            first = self._boundary(first_number, rising=True, step=step, limit=last_number + step)
            last = self._boundary(last_number, rising=False, step=step, limit=first_number - step)
            # A span whose probed frames all said no, its middle too, was proposed but never seen: a model told
            # to name times in every window may name one where nothing happens.
            if first.reason == last.reason == NOT_SHOWN and self._shows((first_number + last_number) // 2) is False:
                self.rejected.append(
                    {
                        "coarse": [round(start, 6), round(end, 6)],
                        "label": label,
                        "probes": len(self.answers) - spent,
                        "reason": "no probed frame showed it, near either boundary or in the middle",
                    }
                )
                return None
        else:
            first = Boundary(first_number, self._time(first_number), False, "--no-refine", 0)
            last = Boundary(last_number, self._time(last_number), False, "--no-refine", 0)
        if last.frame_number < first.frame_number:
            last = first
        reasons = list(dict.fromkeys(b.reason for b in (first, last) if b.reason))
        return {
            "start": first.timestamp,
            "end": last.timestamp,
            "first_frame": {"timestamp": first.timestamp, "frame_number": first.frame_number},
            "last_frame": {"timestamp": last.timestamp, "frame_number": last.frame_number},
            "label": label,
            "coarse": [round(start, 6), round(end, 6)],
            "refined": first.refined and last.refined,
            "reason": "; ".join(reasons) or None,
            "probes": first.probes + last.probes,
        }

    def _boundary(self, guess: int, *, rising: bool, step: int, limit: int) -> Boundary:
        """The exact first frame showing the query (`rising`), or the last one, near the coarse `guess`:
        a frame that shows it (stepping inward from the guess, not past `limit`) and one beyond it that does
        not (stepping outward) are found, then the gap between them is bisected."""
        spent = len(self.answers)
        count = self.probed.frame_count
        outward = -1 if rising else 1  # where the frames without the query lie
        inside = guess
        for _ in range(STEP_LIMIT + 1):  # a frame at or just inside the coarse boundary must show it
            verdict = self._shows(inside)
            if verdict is None:
                return self._coarse_boundary(guess, self._undecided(), spent)
            if verdict:
                break
            inside -= outward * step
            if not 0 <= inside < count or (inside > limit if rising else inside < limit):
                break
        if not 0 <= inside < count or not self.answers.get(inside):
            return self._coarse_boundary(guess, NOT_SHOWN, spent)
        outside = inside + outward * step
        for _ in range(STEP_LIMIT):  # and a frame beyond it must not
            if not 0 <= outside < count:
                edge = 0 if rising else count - 1
                verdict = self._shows(edge)
                if verdict is None and self.limit_reached:
                    return self._coarse_boundary(guess, self._undecided(), spent)
                if verdict:  # shown from the video's very first (or to its last) frame
                    return Boundary(edge, self._time(edge), True, None, len(self.answers) - spent)
                outside = edge
                break
            verdict = self._shows(outside)
            if verdict is None:
                return self._coarse_boundary(guess, self._undecided(), spent)
            if not verdict:
                break
            inside, outside = outside, outside + outward * step
        else:
            return self._coarse_boundary(guess, "every frame stepped through showed it", spent)
        while abs(inside - outside) > 1 and not self._close_enough(inside, outside):
            middle = (inside + outside) // 2
            verdict = self._shows(middle)
            if verdict is None:
                return self._coarse_boundary(guess, self._undecided(), spent)
            if verdict:
                inside = middle
            else:
                outside = middle
        return Boundary(inside, self._time(inside), True, None, len(self.answers) - spent)

    def _undecided(self) -> str:
        """Why a probe gave no verdict: the limit, or an answer that was neither yes nor no."""
        return LIMIT_REACHED if self.limit_reached else NEITHER

    def _close_enough(self, a: int, b: int) -> bool:
        return self.precision is not None and abs(self._time(a) - self._time(b)) <= self.precision

    def _coarse_boundary(self, guess: int, reason: str, spent: int) -> Boundary:
        return Boundary(guess, self._time(guess), False, reason, len(self.answers) - spent)

    def _shows(self, number: int) -> Optional[bool]:
        """Whether frame `number` shows the query, by one single-frame probe (cached): the probability of
        "yes" against "no" from the reply's first token where the engine gives it (in process: the logits;
        a server: its logprobs), else the reply's first word."""
        if number not in self.answers:
            if len(self.answers) >= self.probe_limit:
                self.limit_reached = True
                return None
            if self._bar is not None:
                self._bar.update()
            frame = self._read([self._time(number)])[0]
            question = f'Does this frame show: "{self.request.query}"? Answer yes or no.'
            probability, budgets = yes_probability(self.engine, [frame], question, self._options(1))
            if probability is not None:
                self._count([frame], budgets, None)
                self.probe_methods.add("probability")
                self.answers[number] = probability >= 0.5
            else:
                reply = self._ask([frame], question, PROBE_TOKENS).answer.strip().lower()
                word = re.match(r"[a-z]+", reply)
                self.probe_methods.add("text")
                self.answers[number] = {"yes": True, "no": False}.get(word.group(0) if word else "")
        return self.answers[number]

    def _options(self, max_new_tokens: int, mode: str = "images"):
        generation = replace(self.generation, max_new_tokens=max_new_tokens)
        return answer_options(self.request, generation, mode)

    def _ask(
        self, frames: list[Frame], question: str, max_new_tokens: int, *, mode: str = "images", origin: float = 0.0
    ):
        answers, budgets = answer_frames(
            self.engine,
            frames,
            [question],
            self._options(max_new_tokens, mode),
            where=self.request.video,
            warn_cut=False,
            origin=origin,
        )
        self._count(frames, budgets, answers[0])
        return answers[0]

    def _count(self, frames: list[Frame], budgets, answer) -> None:
        self.usage["calls"] += 1
        self.usage["frames"] += len(frames)
        self.usage["visual_tokens"] += sum(b.visual_tokens for b in budgets)
        if answer is not None:
            self.usage["prompt_tokens"] += answer.prompt_tokens
            self.usage["completion_tokens"] += answer.completion_tokens

    def _read(self, times: list[float]) -> list[Frame]:
        return read_frames(self.probed, times)

    def _number_at(self, seconds: float) -> int:
        """The frame on screen at `seconds` (the last frame shown at or before it), from the index."""
        return min(self.probed.frame_count - 1, self.probed.index.frame_number_at(max(0.0, seconds)))

    def _time(self, number: int) -> float:
        return self.probed.frame_time(number)
