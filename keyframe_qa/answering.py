"""From frames to answers, the one way: budget -> prompt -> engine -> answers with boxes.

`ask`, `batch` and `compare` all come through here, whichever engine answers. Budgets are planned
(and the prompt checked against the model's context) before any frame is decoded, by `plan`; the
frames are then put to the engine by `answer_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from .console import counted, warn
from .errors import UsageError
from .model.budget import check_context, plan_request, prompt_tokens_lower_bound
from .model.checkpoint import CheckpointInfo
from .model.prompt import build_prompt, image_label_text, video_times_text
from .model.text_tokens import text_counter, utf8_length
from .options import option
from .records import Answer, Frame, FrameBudget, GenerationSettings
from .replies.boxes import FrameGeometry, find_boxes, grounding_prompt
from .timecodes import format_time


@dataclass(frozen=True)
class AnswerOptions:
    """How frames are put to the model: the decoding settings resolved for it, and the answer and budget
    options (declared in options.py)."""

    generation: GenerationSettings  # decoding settings, resolved for the model
    mode: str = option("mode")  # "images" (each frame an image) or "video" (one video)
    per_frame: bool = option("per_frame")  # every question about each frame on its own
    min_pixels: Optional[int] = option("min_pixels")  # per-frame minimum; None: the checkpoint's
    max_pixels: Optional[int] = option("max_pixels")  # per-frame maximum; None: the checkpoint's
    max_visual_tokens: Optional[int] = option("max_visual_tokens")  # all frames together
    find: Optional[str] = option("find")  # the object the grounding prompt asks boxes for


def plan(
    options: AnswerOptions,
    checkpoint: CheckpointInfo,
    sizes: Sequence[tuple[int, int]],
    *,
    questions: Sequence[str] = (),
    times: Optional[Sequence[float]] = None,
) -> list[FrameBudget]:
    """Each frame's budget for this model, and a refusal if a prompt cannot fit its context.

    With `questions` and the frames' `times`, the prompt's text (the questions, the --find prompt, the
    frames' labels) counts too (text_tokens.py: bounded, then tokenised; no torch)."""
    budgets = plan_request(
        sizes,
        checkpoint.family,
        mode=options.mode,
        per_frame=options.per_frame,
        min_pixels=options.min_pixels,
        max_pixels=options.max_pixels,
        max_visual_tokens=options.max_visual_tokens,
        checkpoint_pixels=checkpoint.limits.pixels(options.mode),
    )
    question, labels = text_at_least(options, checkpoint, questions, times if times is not None else [])
    if options.per_frame:
        longest = max(
            prompt_tokens_lower_bound([b], options.mode) + (labels[i] if labels else 0) for i, b in enumerate(budgets)
        )
    else:
        longest = prompt_tokens_lower_bound(budgets, options.mode) + sum(labels)
    check_context(longest + question, options.generation.max_new_tokens, checkpoint.context_length)
    return budgets


def check_text(
    options: AnswerOptions, checkpoint: CheckpointInfo, questions: Sequence[str], times: Sequence[float]
) -> None:
    """Refuse, before the video is even probed, a prompt whose text alone (with one visual token and two
    markers per frame, the least a frame can cost) cannot fit the model's context. (More frames than
    the budget can give a visual token each is refused by the selection, after the cheap probe.)"""
    count = len(times)
    question, labels = text_at_least(options, checkpoint, questions, times)
    if options.per_frame:
        frames = 3 + max(labels, default=0) if count else 0
    else:
        frames = count + (2 if options.mode == "video" else 2 * count) + sum(labels)
    context, reply = checkpoint.context_length, options.generation.max_new_tokens
    if context is not None and count > 1 and frames + reply > context:
        raise UsageError(
            f"{count} times: their frames and labels alone take at least {frames} tokens, with up to "
            f"{reply} for the reply over the model's context of {context} tokens "
            f"(max_position_embeddings in its config): give fewer times"
        )
    if context is not None and question + reply > context:
        raise UsageError(
            f"a question takes at least {question} tokens ({_size(max(questions, key=len, default=''))} of "
            f"text), with up to {reply} for the reply over the model's context of {context} tokens: "
            f"shorten it"
        )
    check_context(frames + question, reply, context)


def _size(text: str) -> str:

    size = utf8_length(text)
    return (
        f"{size / 1024 / 1024:.1f} MiB"
        if size >= 1024 * 1024
        else f"{size / 1024:.0f} KiB"
        if size >= 1024
        else f"{size} bytes"
    )


def text_at_least(
    options: AnswerOptions, checkpoint: CheckpointInfo, questions: Sequence[str], times: Sequence[float]
) -> tuple[int, list[int]]:
    """(tokens of the longest question, tokens of each frame's label text), as lower bounds.

    Each question goes in its own prompt after the frames; a label is counted with the requested time,
    less one token of slack, since the frame shown may carry a slightly different time."""
    counter = text_counter(checkpoint.model_id)
    context = checkpoint.context_length
    asked = list(questions)
    if options.find:
        asked.append(grounding_prompt(options.find, checkpoint.family, 1 if options.per_frame else max(1, len(times))))
    question = max((counter.count(q, context) for q in asked), default=0)
    slack = 1 if counter.exact else 0
    if not times:
        return question, []
    if options.mode == "video" and not options.per_frame:
        text = video_times_text([format_time(t) for t in times])
        return question, [max(0, counter.count(text, context) - slack * len(times))]
    labels = [image_label_text(f"frame {position + 1} at {format_time(t)}") for position, t in enumerate(times)]
    return question, [max(0, counter.count(label, context) - slack) for label in labels]


def yes_probability(
    engine, frames: Sequence[Frame], question: str, options: AnswerOptions
) -> tuple[Optional[float], list[FrameBudget]]:
    """(P(yes) for `question` about `frames` as the engine's first reply token tells it, or None; the budgets)."""
    budgets = plan(options, engine.checkpoint, [(f.width, f.height) for f in frames])
    return engine.yes_probability(build_prompt(frames, budgets, options.mode), question), budgets


def answer_frames(
    engine,
    frames: Sequence[Frame],
    questions: Sequence[str],
    options: AnswerOptions,
    *,
    budgets: Optional[Sequence[FrameBudget]] = None,
    labels: Optional[Sequence[str]] = None,
    mention_labels: Optional[Sequence[str]] = None,
    where: str = "",
    warn_cut: bool = True,
    origin: float = 0.0,
) -> tuple[list[Answer], list]:
    """Put the questions (and the --find prompt) about `frames` to `engine`; returns (answers, budgets).

    `labels` name the frames in the prompt (default "frame 2 at 0:00:05.500"); `mention_labels` are
    what a reply may call them (default their time labels), for tying boxes to frames. The times told
    are the frames' times less `origin` (model/prompt.py's build_prompt).
    """
    if budgets is None:
        budgets = plan(options, engine.checkpoint, [(f.width, f.height) for f in frames])
    budgets = list(budgets)
    questions = list(questions)
    find = None
    if options.find:
        find = (grounding_prompt(options.find, engine.family, 1 if options.per_frame else len(frames)), options.find)
        questions.append(find[0])
    answers: list[Answer] = []
    if options.per_frame:
        for position, frame in enumerate(frames):
            prompt = build_prompt([frame], [budgets[position]], options.mode)
            replies = engine.answer(prompt, questions, options.generation)
            answers.extend(
                make_answers(questions, replies, engine.family, [frame], [budgets[position]], frame.index, find=find)
            )
    else:
        prompt = build_prompt(frames, budgets, options.mode, labels=labels, origin=origin)
        replies = engine.answer(prompt, questions, options.generation)
        answers = make_answers(
            questions, replies, engine.family, frames, budgets, None, mention_labels=mention_labels, find=find
        )
    if warn_cut:  # a batch counts its truncated replies and says so once, in its summary
        warn_truncated(answers, options.generation, where)
    return answers, budgets


def make_answers(
    questions,
    replies,
    family,
    frames,
    budgets,
    frame_index: Optional[int],
    mention_labels: Optional[Sequence[str]] = None,
    find: Optional[tuple[str, str]] = None,
) -> list[Answer]:
    """Answers from replies, with their boxes tied to frames (`frame_index` for per-frame questions).

    `find` is (grounding prompt, object asked for): that question's answer records the object.
    """
    return [
        Answer(
            question=question,
            answer=reply.text,
            raw=reply.raw,
            boxes=tuple(_boxes(reply.raw, family, frames, budgets, frame_index, mention_labels)),
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            frame=frame_index,
            truncated=reply.truncated,
            find=find[1] if find and question == find[0] else None,
        )
        for question, reply in zip(questions, replies)
    ]


def warn_truncated(answers: Sequence[Answer], generation: GenerationSettings, where: str) -> None:
    """One warning line when replies stopped at the token limit (their answers say "truncated")."""
    cut = [a for a in answers if a.truncated]
    if not cut:
        return
    boxes = sum(len(a.boxes) for a in cut)
    kept = f", keeping the {counted(boxes, 'box', 'boxes')} before the cut" if boxes else ""
    warn(
        f"{where}: {counted(len(cut), 'reply', 'replies')} stopped at --max-new-tokens "
        f"{generation.max_new_tokens}{kept} "
        f'(marked "truncated"): raise --max-new-tokens to get them whole'
    )


def _boxes(
    raw: str,
    family,
    frames: Sequence[Frame],
    budgets: Sequence[FrameBudget],
    frame_index: Optional[int],
    mention_labels: Optional[Sequence[str]] = None,
):
    # A frame can be named by its time label, or by the label the prompt gave it (BEFORE, AFTER).
    labels = mention_labels if mention_labels is not None else [format_time(f.timestamp) for f in frames]
    geometry = [
        FrameGeometry(
            index=f.index, input_size=(b.input_width, b.input_height), frame_size=(f.width, f.height), label=label
        )
        for f, b, label in zip(frames, budgets, labels)
    ]
    return find_boxes(raw, family, geometry, asked_about=frame_index)
