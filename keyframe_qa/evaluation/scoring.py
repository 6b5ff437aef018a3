"""Scoring one labelled item from what a pipeline answered: the prompt each kind is asked with, the reply read
tolerantly, and a score from 0 to 1 with the prediction and the reason.

- choice: the options as `A. ...` lines, then "Answer with the option's letter from the given choices
  directly." The reply may say "B", "(B)", "The answer is B.", "B. a cat", or the option's text alone, in any
  case; a reply in which no option can be found scores 0 and counts as unanswered.
- yesno: yes or no, as the reply's first word or its only yes/no word.
- short: normalised (case, spaces, the punctuation around it) and matched exactly, as a substring, or by the
  row's regular expression.
- span: the temporal search's first moment against the best-matching labelled span: IoU (the score), and
  the boundary errors in frames.
- box: the best IoU of the boxes the reply gave on the frame against the labelled box (the score), a hit
  at 0.5.

A thinking model's reasoning is never read as its answer (replies/reading.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from ..replies.reading import answer_text
from .labels import LETTERS, Label

CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."
YESNO_INSTRUCTION = "Answer yes or no."
READ_CHARS = 65_536  # a reply is read this far (a server may send 16 MiB; an answer is at its start)
BINARY_KINDS = ("choice", "yesno", "short")  # scored 0 or 1 (McNemar applies); span and box are IoUs


@dataclass(frozen=True)
class Scored:
    """One item's score in one pipeline."""

    score: float  # 0 to 1: right (1) or wrong (0), or an IoU for span and box items
    answered: bool  # False: no answer could be read (no option, no yes/no, no moment, a failed video)
    prediction: Optional[object]  # what was read: a letter, yes/no, the reply, [start, end] or a box
    reason: str  # why this score, in words
    iou: Optional[float] = None  # span and box items: the IoU (the score)
    boundary_frames: Optional[tuple[float, float]] = None  # span: |start error|, |end error| in frames
    iop: Optional[float] = None  # span: intersection over the predicted moment (NExT-GQA's IoP)


def choice_prompt(question: str, options: Sequence[str]) -> str:
    """The common multiple-choice form: the question, the lettered options, the instruction."""
    lines = [question.strip()] + [f"{LETTERS[i]}. {option}" for i, option in enumerate(options)]
    return "\n".join(lines + [CHOICE_INSTRUCTION])


def question_prompt(label: Label) -> str:
    """What a choice, yesno or short row is asked as."""
    question = label.question or ""
    if label.kind == "choice":
        return choice_prompt(question, label.options)
    if label.kind == "yesno":
        return f"{question.strip()}\n{YESNO_INSTRUCTION}"
    return question


def _reply(text: str) -> str:
    return answer_text(str(text)[:READ_CHARS]).strip()


def read_choice(reply: str, options: Sequence[str]) -> Optional[int]:
    """The option a reply picks, or None when none can be told."""
    text = _reply(reply)
    letters = LETTERS[: len(options)]
    bare = text.strip(" \t\n.()[]*:'\"")
    if len(bare) == 1 and bare.upper() in letters:
        return letters.index(bare.upper())
    # "The answer is B", "Answer: (C)": the keyword in any case, the letter a capital (not the article "a").
    stated = re.search(rf"\b(?i:answer|option|choice)\s{{0,4}}(?i:is|:)?\s{{0,4}}[(\[]?([{letters}])\b", text)
    if stated:
        return letters.index(stated.group(1))
    # "B. a cat", "(B)", "C)": a capital letter first, closed by a bracket, a stop or a colon.
    leading = re.match(rf"\s{{0,8}}[(\[]?([{letters}])(?:[).\]:]|$)", text)
    if leading:
        return letters.index(leading.group(1))
    folded = _normal(text)
    named = [i for i, option in enumerate(options) if _normal(option) == folded]
    if not named:
        named = [
            i for i, option in enumerate(options) if re.search(rf"(?<!\w){re.escape(_normal(option))}(?!\w)", folded)
        ]
    return named[0] if len(named) == 1 else None


def read_yesno(reply: str) -> Optional[bool]:
    """True for yes, False for no, None when the reply says neither (or both)."""
    words = re.findall(r"[a-z]+", _reply(reply).lower()[:2000])
    if words and words[0] in ("yes", "no"):
        return words[0] == "yes"
    said = {word for word in words if word in ("yes", "no")}
    return (said.pop() == "yes") if len(said) == 1 else None


def _normal(text: str) -> str:
    return " ".join(str(text).casefold().split()).strip(" .,;:!?\"'()[]")


def score_choice(label: Label, reply: str) -> Scored:
    """1 when the reply picks the right option."""
    picked = read_choice(reply, label.options)
    if picked is None:
        return Scored(0.0, False, None, "no option found in the reply")
    right = picked == label.correct
    letter = LETTERS[picked]
    return Scored(
        float(right),
        True,
        letter,
        "the right option" if right else f"picked {letter}, not {LETTERS[label.correct or 0]}",
    )


def score_yesno(label: Label, reply: str) -> Scored:
    """1 when the reply's yes or no is the label's."""
    said = read_yesno(reply)
    if said is None:
        return Scored(0.0, False, None, "neither yes nor no in the reply")
    right = said == label.yes
    word = "yes" if said else "no"
    return Scored(float(right), True, word, "right" if right else f"said {word}")


def score_short(label: Label, reply: str) -> Scored:
    """1 when the reply matches one accepted answer (exact, contains or regex, after normalising)."""
    text = _reply(reply)
    normal = _normal(text)
    for answer in label.answers:
        if label.match == "exact" and normal == _normal(answer):
            return Scored(1.0, True, text, f"equals {answer!r}")
        if label.match == "contains" and _normal(answer) in normal:
            return Scored(1.0, True, text, f"contains {answer!r}")
        if label.match == "regex" and re.search(answer, text, re.I):
            return Scored(1.0, True, text, f"matches {answer!r}")
    return Scored(0.0, bool(text), text, "matches no accepted answer" if text else "an empty reply")


def interval_iop(predicted: tuple[float, float], truth: tuple[float, float]) -> float:
    """Intersection over the predicted interval (NExT-GQA's IoP: how much of the moment found is right)."""
    inter = max(0.0, min(predicted[1], truth[1]) - max(predicted[0], truth[0]))
    length = predicted[1] - predicted[0]
    return inter / length if length > 0 else 0.0


def interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time intervals."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_span(label: Label, moments: Sequence[dict], fps: float) -> Scored:
    """The first moment found against the best-matching labelled span: its IoU, and the boundary errors in
    frames (at the video's rate)."""
    if not moments:
        return Scored(0.0, False, None, "no moment found", iou=0.0, iop=0.0)
    moment = moments[0]
    found = (float(moment["start"]), float(moment["end"]))
    iou, truth = max((interval_iou(found, span), span) for span in label.spans)
    errors = (abs(found[0] - truth[0]) * fps, abs(found[1] - truth[1]) * fps)
    iop = max(interval_iop(found, span) for span in label.spans)
    return Scored(
        iou,
        True,
        [found[0], found[1]],
        f"IoU {iou:.3f} with [{truth[0]:g}, {truth[1]:g}]",
        iou=iou,
        boundary_frames=(round(errors[0], 3), round(errors[1], 3)),
        iop=iop,
    )


def score_box(label: Label, boxes: Sequence[dict]) -> Scored:
    """The best IoU of the reply's boxes with the labelled one (boxes in the frame's pixels)."""
    if label.box is None or not boxes:
        return Scored(0.0, False, None, "no box in the reply", iou=0.0)
    best = max(boxes, key=lambda box: box_iou(box["bbox"], label.box or (0, 0, 0, 0)))
    iou = box_iou(best["bbox"], label.box)
    return Scored(iou, True, list(best["bbox"]), f"best IoU {iou:.3f}" + (" (a hit)" if iou >= 0.5 else ""), iou=iou)
