"""The tolerant reader the reply parsers share: a thinking model's reasoning set apart from its answer,
the balanced JSON-like spans of a reply, and values read from them however loosely they are written.

Every function here is linear in the reply's length: the span scan stops only at brackets and quotes,
and the fallbacks (json-repair, Python literals) read only values short enough to be a real answer.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Optional

REPAIR_CHARS = 65_536  # json-repair reads a value up to this long (its time grows faster than the length)
LITERAL_CHARS = 1 << 20  # Python literals up to this long (its parser holds the whole tree)
_THINK_END = "</think>"
_THINK_START = "<think>"


def answer_text(reply: str) -> str:
    """What a reply answers: after a thinking model's reasoning (the text after the last `</think>`);
    the whole reply when it has none. A reply cut off inside its reasoning answers nothing yet: its
    reasoning is returned, for the caller to mark (`thinking_parts`)."""
    answer, _, _ = thinking_parts(reply)
    return answer


def thinking_parts(reply: str) -> tuple[str, str, bool]:
    """(the text to read, the reasoning, whether the reply was cut off inside its reasoning).

    After `</think>`, only the answer counts; a reply with `<think>` and no `</think>` ends inside the
    reasoning, and what the reasoning states is all there is (the third value says so)."""
    reply = str(reply)
    end = reply.rfind(_THINK_END)
    if end >= 0:
        start = reply.find(_THINK_START)
        thinking = reply[start + len(_THINK_START) if 0 <= start < end else 0 : end]
        return reply[end + len(_THINK_END) :], thinking, False
    start = reply.find(_THINK_START)
    if start >= 0:
        thinking = reply[start + len(_THINK_START) :]
        return reply[:start] + thinking, thinking, True
    return reply, "", False


_DECODER = json.JSONDecoder()
_MAX_NESTING = 4096  # brackets open at once that are followed (deeper ones are text: no answer nests so deep)
_BRACKETS = re.compile(r"[\[\]{}\"']")  # the only characters the span scan stops at


def balanced_spans(text: str, begin: int = 0, stop: Optional[int] = None) -> list[tuple[int, int]]:
    """(start, end) of the outermost complete bracketed values, in one pass.

    A bracket that never closes (a stray `{`, a list cut off by the token limit) is skipped, so the
    complete values inside it still count. A quote starts a string only inside brackets, and a quote
    with no partner on its line is an apostrophe, not a string (and so is every later one of its kind
    on that line: each line is looked along once per kind of quote). Text between brackets and quotes is
    skipped by a regex, so plain prose costs next to nothing, and a value that opens outside any other is
    first read as JSON by the C decoder (a valid one is skipped whole; a failed try is never repeated inside
    it, so each character is tried at most once).
    """
    stop = len(text) if stop is None or stop > len(text) else stop
    if stop < len(text):
        text = text[:stop]  # once: the decoder reads to the end of what it is given
    pairs = {"}": "{", "]": "["}
    stack: list[tuple[str, int]] = []
    done: list[tuple[int, int]] = []
    unpaired = {"'": -1, '"': -1}  # a quote of this kind before this position has no partner on its line
    line_end = -1  # where the line of the last quote ends (found once per line: a line may be the whole reply)
    i = begin
    while True:
        found = _BRACKETS.search(text, i, stop)
        if found is None:
            return done
        i = found.start()
        char = text[i]
        if char in "{[":
            if not stack:
                try:
                    _, end = _DECODER.raw_decode(text, i)
                except (ValueError, RecursionError):
                    end = None
                if end is not None:
                    while done and done[-1][0] >= i:
                        done.pop()
                    done.append((i, end))
                    i = end
                    continue
            if len(stack) < _MAX_NESTING:
                stack.append((char, i))
        elif char in "}]":
            if stack and stack[-1][0] == pairs[char]:
                _, opened = stack.pop()
                while done and done[-1][0] > opened:
                    done.pop()  # inside this one: the outer value replaces them
                done.append((opened, i + 1))
        elif stack and i >= unpaired[char]:
            if i > line_end:
                line_end = text.find("\n", i, stop)
                line_end = stop if line_end < 0 else line_end
            close = _string_end(text, i, line_end)
            if close is None:
                unpaired[char] = line_end
            else:
                i = close
        i += 1


def _string_end(text: str, start: int, line_end: int) -> Optional[int]:
    """Where the string opened at `start` closes before `line_end` (None when it does not)."""
    quote = text[start]
    i = start + 1
    while True:
        i = text.find(quote, i, line_end)
        if i < 0:
            return None
        backslashes = 0
        while text[i - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return i
        i += 1


def loads_tolerant(candidate: str) -> Any:
    """A JSON value, or a Python literal, or what json-repair makes of it (None when nothing).

    The fallbacks read only values short enough to be an answer (LITERAL_CHARS, REPAIR_CHARS): a longer
    value that is not JSON is looked into by the callers, value by value."""
    try:
        return json.loads(candidate)
    except (ValueError, RecursionError):
        pass
    if len(candidate) > LITERAL_CHARS:
        return None
    try:
        return ast.literal_eval(candidate)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if len(candidate) > REPAIR_CHARS:
        return None
    import json_repair

    try:
        return json_repair.loads(candidate)
    except Exception:  # noqa: BLE001 - untrusted text; no value means no boxes
        return None
