"""From frames to answers, the one way: budget -> prompt -> engine -> answers with boxes.

`ask`, `batch` and `compare` all come through here, whichever engine answers. Budgets are planned
(and the prompt checked against the model's context) before any frame is decoded, by `plan`; the
frames are then put to the engine by `answer_frames`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .budget import check_context, plan_request, prompt_tokens_lower_bound
from .checkpoint import CheckpointInfo
from .grounding import FrameGeometry, find_boxes, grounding_prompt
from .messages import warn
from .records import Answer, Frame, FrameBudget, GenerationSettings, VisualPrompt
from .timecodes import format_time


@dataclass(frozen=True)
class AnswerOptions:
    """How frames are put to the model."""

    generation: GenerationSettings  # decoding settings, resolved for the model
    mode: str = "images"  # "images": one image per frame; "video": one video of the frames
    per_frame: bool = False  # every question about each frame on its own
    min_pixels: Optional[int] = None  # per frame
    max_pixels: Optional[int] = None  # per frame
    max_visual_tokens: Optional[int] = None  # all frames together
    find: Optional[str] = None  # an object to locate with the family's grounding prompt


def plan(options: AnswerOptions, checkpoint: CheckpointInfo, sizes: Sequence[tuple[int, int]]) -> list[FrameBudget]:
    """Each frame's budget for this model, and a refusal if a prompt cannot fit its context."""
    budgets = plan_request(sizes, checkpoint.family, mode=options.mode, per_frame=options.per_frame,
                           min_pixels=options.min_pixels, max_pixels=options.max_pixels,
                           max_visual_tokens=options.max_visual_tokens)
    prompts = [[b] for b in budgets] if options.per_frame else [budgets]
    longest = max(prompt_tokens_lower_bound(p, options.mode) for p in prompts)
    check_context(longest, options.generation.max_new_tokens, checkpoint.context_length)
    return budgets


def answer_frames(engine, frames: Sequence[Frame], questions: Sequence[str], options: AnswerOptions, *,
                  budgets: Optional[Sequence[FrameBudget]] = None, labels: Optional[Sequence[str]] = None,
                  mention_labels: Optional[Sequence[str]] = None, where: str = "") -> tuple[list[Answer], list]:
    """Put the questions (and the --find prompt) about `frames` to `engine`; returns (answers, budgets).

    `labels` name the frames in the prompt (default "frame 2 at 0:00:05.500"); `mention_labels` are
    what a reply may call them (default their time labels), for tying boxes to frames.
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
            answers.extend(make_answers(questions, replies, engine.family, [frame], [budgets[position]],
                                        frame.index, find=find))
    else:
        prompt = build_prompt(frames, budgets, options.mode, labels=labels)
        replies = engine.answer(prompt, questions, options.generation)
        answers = make_answers(questions, replies, engine.family, frames, budgets, None,
                               mention_labels=mention_labels, find=find)
    warn_truncated(answers, options.generation, where)
    return answers, budgets


def prompt_parts(prompt: VisualPrompt, question: str) -> list[tuple[str, object]]:
    """The user turn every engine sends, in order: ("text", str), ("image", frame position), ("video", None).

    Images mode labels each frame ("Frame 2 at 0:00:05.500:") before its picture; video mode sends
    the video, then says when its frames were taken. The question comes last, so every question about
    the same frames shares one prefix.
    """
    parts: list[tuple[str, object]] = []
    if prompt.mode == "video":
        times = ", ".join(label.split(" at ")[-1] for label in prompt.labels)
        parts.append(("video", None))
        parts.append(("text", f"The video above is {len(prompt.images)} frames shown at {times}.\n"))
    else:
        for position, label in enumerate(prompt.labels):
            parts.append(("text", f"{label[:1].upper()}{label[1:]}:"))
            parts.append(("image", position))
    parts.append(("text", question))
    return parts


def frame_labels(frames: Sequence[Frame]) -> list[str]:
    """How frames are named in prompts: "frame 2 at 0:00:05.500"."""
    return [f"frame {f.index + 1} at {format_time(f.timestamp)}" for f in frames]


def build_prompt(frames: Sequence[Frame], budgets: Sequence[FrameBudget], mode: str,
                 labels: Optional[Sequence[str]] = None) -> VisualPrompt:
    """The model's view of the frames: the display frames, their budgets and the label each gets.

    The engine resizes each frame to its budget (the way its model's processor resizes).
    """
    return VisualPrompt(
        images=[f.image for f in frames],
        budgets=list(budgets),
        labels=list(labels) if labels is not None else frame_labels(frames),
        mode=mode,
        times=[f.timestamp for f in frames],
    )


def make_answers(questions, replies, family, frames, budgets, frame_index: Optional[int],
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
    kept = f", keeping the {boxes} box(es) before the cut" if boxes else ""
    warn(f"{where}: {len(cut)} reply(ies) stopped at --max-new-tokens {generation.max_new_tokens}{kept} "
         f"(marked \"truncated\"): raise --max-new-tokens to get them whole")


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
