"""Label files for `eval`: one labelled question about a video per row, read and checked before any model loads.

A row is a JSON object (`.jsonl`, one per line) or a CSV row (header first) with `video` (relative to the
file), `kind`, an optional `id`, an optional `at` (times: the frames the question is about) and any other
fields as groups (`category`, `duration`: the report scores each group). The kind decides the rest:

- `choice`: `question`, `options` (a list; in CSV a JSON list or `a|b|c`), `answer` (a letter, a 0-based
  index or an option's text);
- `yesno`: `question`, `answer` yes or no;
- `short`: `question`, `answer` (one string or a list of them), optional `match`: exact, contains or regex;
- `span`: `query`, `span` ([s, e], or a list of them) in seconds from the first frame;
- `box`: `find`, `at` (one time), `box` [x1, y1, x2, y2] in the frame's displayed pixels.

Every problem of every row is reported at once, each as `file:line: what is wrong` (`LabelError`, exit 2).
The video files are checked to exist; spans against their videos are checked by the job once it has
probed them.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import UsageError
from ..texts import check_prompt_text
from ..timecodes import parse_time, parse_time_list

KINDS = ("choice", "yesno", "short", "span", "box")
MATCHES = ("exact", "contains", "regex")
MAX_LABEL_BYTES = 64 * 1024 * 1024  # a label file lists questions by hand or by script: 64 MiB is millions of rows
MAX_ROW_BYTES = 1 << 20  # one row: far above any question with its options
MAX_OPTIONS = 26  # choice options are lettered A to Z
MAX_PROBLEMS_SHOWN = 50  # a file with every row wrong is named by its first problems, and the count
# The fields a row's kind reads; any other field is a group the report scores separately.
FIELDS = {"video", "kind", "id", "at", "question", "options", "answer", "match", "query", "span", "find", "box"}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class LabelError(UsageError):
    """Label rows that cannot be scored: one line per problem, each naming its file and line."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        lines = "\n  ".join(shown + ([f"... and {more} more"] if more else []))
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        super().__init__(f"invalid labels ({count}):\n  {lines}")


@dataclass(frozen=True)
class Label:
    """One labelled question about one video."""

    id: str  # the row's `id`, or FILE:LINE when it has none
    video: str  # the video's path, resolved against the label file's folder
    kind: str  # choice, yesno, short, span or box
    source: str  # FILE:LINE, for messages
    at: Optional[tuple[float, ...]] = None  # the frames the question is about; None: the pipeline chooses
    groups: tuple[tuple[str, str], ...] = ()  # (field, value) of each grouping field, as text
    question: Optional[str] = None  # choice, yesno, short: the question as the row gives it
    options: tuple[str, ...] = ()  # choice: the options, in order (lettered A, B, ...)
    correct: Optional[int] = None  # choice: the index of the right option
    yes: Optional[bool] = None  # yesno: whether the right answer is yes
    answers: tuple[str, ...] = ()  # short: the accepted answers
    match: str = "exact"  # short: exact, contains or regex (after normalising case and spaces)
    query: Optional[str] = None  # span: what happens, for the temporal search
    spans: tuple[tuple[float, float], ...] = ()  # span: the labelled moments, in seconds
    find: Optional[str] = None  # box: what to locate
    box: Optional[tuple[float, float, float, float]] = None  # box: x1, y1, x2, y2 in the displayed frame's pixels
    error: Optional[str] = None  # why the row cannot run (a benchmark's video that is not there): recorded, counted
    pair: Optional[str] = None  # a NExT-GQA span row: the id of the choice row it grounds


def read_labels(paths: Sequence[str]) -> list[Label]:
    """Every row of the label files, checked; LabelError lists every problem (and duplicate ids) at once."""
    labels, problems = read_label_rows(paths)
    check_labels(labels, ", ".join(paths), problems)
    return labels


def read_label_rows(paths: Sequence[str]) -> tuple[list[Label], list[str]]:
    """(the rows that could be read, a problem line for each that could not), for `check_labels`."""
    labels: list[Label] = []
    problems: list[str] = []
    for path in paths:
        for source, row in _rows(path, problems):
            try:
                labels.append(_label(row, source, os.path.dirname(os.path.abspath(path))))
            except (ValueError, UsageError) as exc:
                problems.append(f"{source}: {exc}")
    return labels, problems


def check_labels(labels: Sequence[Label], where: str, problems: Sequence[str] = ()) -> None:
    """LabelError for the `problems`, for an id used twice, or for no rows at all (`where` names the files)."""
    found = list(problems)
    seen: dict[str, str] = {}
    for label in labels:
        if label.id in seen:
            found.append(f"{label.source}: id {label.id!r} is used twice (first at {seen[label.id]})")
        seen.setdefault(label.id, label.source)
    if found:
        raise LabelError(found)
    if not labels:
        raise LabelError([f"{where}: no label rows"])


def _rows(path: str, problems: list[str]) -> list[tuple[str, dict]]:
    """(FILE:LINE, row) of each row of one label file; unreadable rows are added to `problems`."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_LABEL_BYTES:
            raise LabelError(
                [f"{path}: {size / (1 << 20):.0f} MiB, more than the {MAX_LABEL_BYTES >> 20} MiB a label file may be"]
            )
        with open(path, encoding="utf-8-sig", newline="") as handle:
            if path.lower().endswith(".csv"):
                csv.field_size_limit(MAX_ROW_BYTES)
                return [(f"{name}:{number + 1}", dict(row)) for number, row in enumerate(csv.DictReader(handle), 1)]
            if not path.lower().endswith(".jsonl"):
                raise LabelError([f"{path}: a label file is .jsonl or .csv"])
            rows = []
            for number, line in enumerate(handle, 1):
                if len(line) > MAX_ROW_BYTES:
                    problems.append(f"{name}:{number}: the row is longer than {MAX_ROW_BYTES >> 10} KiB")
                    continue
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except (ValueError, RecursionError) as exc:
                    problems.append(f"{name}:{number}: not JSON ({str(exc)[:100]})")
                    continue
                if not isinstance(value, dict):
                    problems.append(f"{name}:{number}: a row is a JSON object")
                    continue
                rows.append((f"{name}:{number}", value))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelError([f"{path}: cannot be read ({exc})"]) from exc


def _label(row: dict, source: str, base: str) -> Label:
    kind = _text(row, "kind")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    video = _text(row, "video")
    path = video if os.path.isabs(video) else os.path.join(base, video)
    if not os.path.isfile(path):
        raise ValueError(f"video {video!r} is not a file (paths are relative to the label file)")
    at = _times(row.get("at"))
    common: dict[str, Any] = {
        "id": str(row["id"]) if row.get("id") not in (None, "") else source,
        "video": path,
        "kind": kind,
        "source": source,
        "at": at,
        "groups": tuple(
            (key, str(value)) for key, value in row.items() if key not in FIELDS and value not in (None, "")
        ),
    }
    if kind in ("choice", "yesno", "short"):
        question = _text(row, "question")
        check_prompt_text(question, "the question")
        common["question"] = question
    if kind == "choice":
        options = _options(row.get("options"))
        return Label(**common, options=options, correct=_choice(row.get("answer"), options))
    if kind == "yesno":
        answer = str(row.get("answer", "")).strip().lower()
        if answer not in ("yes", "no"):
            raise ValueError(f"a yesno answer is yes or no, not {row.get('answer')!r}")
        return Label(**common, yes=answer == "yes")
    if kind == "short":
        answers = _answers(row.get("answer"))
        match = str(row.get("match") or "exact")
        if match not in MATCHES:
            raise ValueError(f"match {match!r} is not one of {', '.join(MATCHES)}")
        if match == "regex":
            for answer in answers:
                try:
                    re.compile(answer)
                except re.error as exc:
                    raise ValueError(f"answer {answer!r} is not a regular expression ({exc})") from exc
        return Label(**common, answers=answers, match=match)
    if kind == "span":
        query = _text(row, "query")
        check_prompt_text(query, "the query")
        return Label(**common, query=query, spans=_spans(row.get("span")))
    find = _text(row, "find")
    check_prompt_text(find, "--find")
    if at is None or len(at) != 1:
        raise ValueError("a box row needs `at`: the one time of the frame its box is in")
    return Label(**common, find=find, box=_box(row.get("box")))


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"`{key}` is missing or empty")
    return value


def _times(value: Any) -> Optional[tuple[float, ...]]:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("`at` is times in seconds, m:ss or h:mm:ss")
    if isinstance(value, (int, float)):
        return (parse_time(repr(float(value))),)
    if isinstance(value, list):
        return tuple(parse_time(repr(float(v)) if isinstance(v, (int, float)) else str(v)) for v in value)
    return tuple(parse_time_list(str(value)))


def _json_or(value: Any, separator: str) -> Any:
    """A CSV cell holding a JSON list, or items split by `separator`; other values as they are."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{text[:60]!r} is not a JSON list") from exc
        return [part.strip() for part in text.split(separator)] if separator in text else text
    return value


def _options(value: Any) -> tuple[str, ...]:
    options = _json_or(value, "|")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o.strip() for o in options):
        raise ValueError("`options` is a list of at least two option texts")
    if len(options) > MAX_OPTIONS:
        raise ValueError(f"at most {MAX_OPTIONS} options (lettered A to Z), not {len(options)}")
    return tuple(o.strip() for o in options)


def _choice(answer: Any, options: tuple[str, ...]) -> int:
    """The index of the right option: a letter, a 0-based index, or an option's text."""
    if isinstance(answer, bool) or answer is None:
        raise ValueError("a choice row needs `answer`: a letter, a 0-based index or an option's text")
    if isinstance(answer, int) or (isinstance(answer, str) and answer.strip().isdigit()):
        index = int(answer)
        if 0 <= index < len(options):
            return index
        raise ValueError(f"answer index {index} is not among the {len(options)} options")
    text = str(answer).strip()
    if len(text) == 1 and text.upper() in LETTERS[: len(options)]:
        return LETTERS.index(text.upper())
    folded = [o.casefold() for o in options]
    if text.casefold() in folded:
        return folded.index(text.casefold())
    raise ValueError(f"answer {text!r} is not among the options (A to {LETTERS[len(options) - 1]}, or their text)")


def _answers(value: Any) -> tuple[str, ...]:
    answers = _json_or(value, "|") if isinstance(value, str) and value.strip().startswith("[") else value
    answers = answers if isinstance(answers, list) else [answers]
    if not answers or not all(
        isinstance(a, (str, int, float)) and not isinstance(a, bool) and str(a).strip() for a in answers
    ):
        raise ValueError("a short row needs `answer`: a string, or a list of the accepted ones")
    return tuple(str(a).strip() for a in answers)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what} must be a number")
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError(f"{what} must be a number, not {value!r}") from exc
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number")
    return number


def _spans(value: Any) -> tuple[tuple[float, float], ...]:
    value = _json_or(value, ",")
    if isinstance(value, list) and len(value) == 2 and not isinstance(value[0], list):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(s, list) and len(s) == 2 for s in value):
        raise ValueError("`span` is [start, end] in seconds, or a list of them")
    spans = []
    for start, end in value:
        first, last = _number(start, "a span's start"), _number(end, "a span's end")
        if first < 0 or last <= first:
            raise ValueError(f"span [{start}, {end}] must start at 0 or later and end after it starts")
        spans.append((first, last))
    return tuple(spans)


def _box(value: Any) -> tuple[float, float, float, float]:
    value = _json_or(value, ",")
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError("`box` is [x1, y1, x2, y2] in the frame's pixels")
    x1, y1, x2, y2 = (_number(v, "a box coordinate") for v in value)
    if x2 <= x1 or y2 <= y1 or min(x1, y1) < 0:
        raise ValueError(f"box {value} must have x2 > x1 >= 0 and y2 > y1 >= 0")
    return x1, y1, x2, y2
