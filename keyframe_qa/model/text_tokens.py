"""Counting a prompt's text tokens before any frame is decoded or the model loads (no torch).

A question can be any size (a 10 MB manifest cell, a pasted log). Tokenising it through the model's
processor costs seconds and gigabytes, so text is bounded first and tokenised after:
1. a cheap bound: no token is longer than the vocabulary's longest entry, so a text of B bytes takes at
   least B / longest tokens; a text that cannot fit the context even so is refused without tokenising;
2. then the exact count, with the checkpoint's own `tokenizer.json` (the Rust `tokenizers`) when it is
   on this machine; the engine checks the whole prompt exactly again once it is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from .checkpoint import checkpoint_files

# Without the checkpoint's vocabulary: longer than any token of the Qwen vocabularies (their longest
# are runs of about a hundred spaces or symbols), so the bound stays a bound.
FALLBACK_MAX_TOKEN_BYTES = 256


@dataclass(frozen=True)
class TextCounter:
    """Lower bounds on (or exact counts of) the tokens a piece of prompt text takes."""

    max_token_bytes: int  # the longest token of the vocabulary, in UTF-8 bytes
    encode: Optional[Callable[[str], int]] = None  # exact count with the checkpoint's tokenizer, if here

    def at_least(self, text: str) -> int:
        """Fewest tokens `text` can take, without tokenising it."""
        return math.ceil(utf8_length(text) / self.max_token_bytes)

    def count(self, text: str, context_length: Optional[int] = None) -> int:
        """Tokens of `text`: exact when the tokenizer is here, else the lower bound. A text whose lower
        bound is already past `context_length` is not tokenised (the bound is returned)."""
        bound = self.at_least(text)
        if self.encode is None or (context_length is not None and bound > context_length):
            return bound
        return self.encode(text)

    @property
    def exact(self) -> bool:
        """Whether `count` tokenises (else it is a lower bound)."""
        return self.encode is not None


def utf8_length(text: str) -> int:
    """Bytes of `text` in UTF-8 (a lone surrogate from an undecodable name counts as its escape)."""
    return len(text.encode("utf-8", "surrogatepass"))


@lru_cache(maxsize=8)
def text_counter(model_id: Optional[str]) -> TextCounter:
    """The counter for a checkpoint: its tokenizer when `tokenizer.json` is here, else the byte bound."""
    if not model_id:
        return TextCounter(FALLBACK_MAX_TOKEN_BYTES)

    path = checkpoint_files(model_id, ("tokenizer.json",)).get("tokenizer.json")
    if path is None:
        return TextCounter(FALLBACK_MAX_TOKEN_BYTES)
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(path)
        decoder = _byte_level_lengths()
        longest = max(
            (sum(decoder.get(ch, 4) for ch in token) for token in tokenizer.get_vocab(with_added_tokens=False)),
            default=FALLBACK_MAX_TOKEN_BYTES,
        )
    except Exception:  # noqa: BLE001 - an unreadable tokenizer only costs the exact early count
        return TextCounter(FALLBACK_MAX_TOKEN_BYTES)

    def encode(text: str) -> int:
        return len(tokenizer.encode(text.encode("utf-8", "replace").decode("utf-8"), add_special_tokens=False).ids)

    return TextCounter(max(1, longest), encode)


def _byte_level_lengths() -> dict:
    # Byte-level BPE vocabularies spell each byte as one printable character: every such character is
    # one byte. Anything else (a non-byte-level vocabulary) counts as up to 4 bytes (UTF-8's longest).
    visible = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    characters = visible + [256 + n for n in range(256 - len(visible))]
    return {chr(c): 1 for c in characters}
