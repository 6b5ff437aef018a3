"""Text from outside, made safe to use: prompt text (questions, --find, --when, when's query, frames --query,
manifest cells) checked once, the same way for every command, before the video is read or a model loads;
and any text (file names above all) made readable for a message or a JSON string.

A shell whose locale is not UTF-8 (or a latin-1 manifest read as bytes) hands Python a string with lone
surrogates where the bytes were not UTF-8 (PEP 383). No tokenizer takes them: in process they failed
after the model loaded, and a scorer's tokenizer raised a TypeError. Here they are one usage error that
names the first such byte.
"""

from __future__ import annotations

import os
from typing import Optional

from .errors import UsageError


def check_prompt_text(text: object, what: str) -> str:
    """`text` if it can go into a prompt (a string that is valid Unicode), else a UsageError saying
    what is wrong with `what` ("the question", "--find")."""
    if not isinstance(text, str):
        raise UsageError(f"{what} must be text, not {type(text).__name__}")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError as exc:
        start = exc.start
    try:
        raw = os.fsencode(text[start : start + 1])
        byte = f"byte 0x{raw[0]:02x}" if raw else "a character"
    except UnicodeEncodeError:
        byte = f"the lone surrogate U+{ord(text[start]):04X}"
    before = text[max(0, start - 20) : start]
    raise UsageError(
        f"{what} is not valid UTF-8 text ({byte} after {before!r}): give it in UTF-8 (a shell's "
        f"locale such as LANG=C.UTF-8, or the manifest saved as UTF-8)"
    )


def is_valid(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def readable(text: str) -> str:
    """`text` with each undecodable byte of a file name (or any lone surrogate) shown as U+FFFD."""
    if is_valid(text):
        return text
    raw = name_bytes(text)
    if raw is not None:
        return raw.decode("utf-8", "replace")
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def name_bytes(text: str) -> Optional[bytes]:
    """The bytes a file name string stands for (None for text that is not a decoded name)."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return None
