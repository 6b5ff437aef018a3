"""Generation settings: deterministic greedy decoding unless asked otherwise, recorded as used.

Greedy is the default on purpose: the same frames and question give the same answer, which is what
QA and inspection runs compare. `--sampling model` takes the checkpoint's own generation config
(Qwen3-VL Instruct ships top_p 0.8, top_k 20, temperature 0.7); explicit options override either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..options import check_record, option
from ..records import GenerationSettings

DEFAULT_MAX_NEW_TOKENS = 256
# Grounding replies list one object per box; the Qwen cookbooks allow 1024 tokens for them, and real
# replies with a dozen objects need 300 to 1700.
FIND_MAX_NEW_TOKENS = 1024


@dataclass(frozen=True)
class GenerationRequest:
    """What the user asked for about decoding (the options declared in options.py); None means "the
    default" (see `resolve_generation`). Each value is checked against its declaration when it is made."""

    sampling: str = option("sampling")  # greedy, or the checkpoint's generation config ("model")
    max_new_tokens: Optional[int] = option("max_new_tokens")  # None: 256, or 1024 with --find
    temperature: Optional[float] = option("temperature")  # 0: greedy
    top_p: Optional[float] = option("top_p")  # nucleus mass
    top_k: Optional[int] = option("top_k")  # the k likeliest tokens
    repetition_penalty: Optional[float] = option("repetition_penalty")  # above 1 discourages repeats
    seed: Optional[int] = option("seed")  # the same seed gives the same sampled answer

    def __post_init__(self) -> None:
        check_record(self)


def resolve_generation(
    request: GenerationRequest, checkpoint_defaults: Optional[dict] = None, *, find: bool = False
) -> GenerationSettings:
    """The settings a run uses: greedy or the checkpoint's config, with explicit options on top."""
    defaults = checkpoint_defaults or {}
    if request.sampling == "model":
        do_sample = bool(defaults.get("do_sample", False))
        temperature, top_p, top_k = defaults.get("temperature"), defaults.get("top_p"), defaults.get("top_k")
        repetition_penalty = defaults.get("repetition_penalty")
    else:
        do_sample, temperature, top_p, top_k, repetition_penalty = False, None, None, None, None
    if request.temperature is not None:
        do_sample, temperature = request.temperature > 0, request.temperature
    if request.top_p is not None or request.top_k is not None:
        if request.temperature != 0:  # an explicit temperature 0 keeps it greedy
            do_sample = True
        top_p = request.top_p if request.top_p is not None else top_p
        top_k = request.top_k if request.top_k is not None else top_k
    if request.repetition_penalty is not None:
        repetition_penalty = request.repetition_penalty
    if do_sample:
        temperature = 1.0 if temperature is None else float(temperature)
    else:
        temperature = top_p = top_k = None  # not used by greedy decoding: not recorded as if they were
    max_new_tokens = request.max_new_tokens or (FIND_MAX_NEW_TOKENS if find else DEFAULT_MAX_NEW_TOKENS)
    return GenerationSettings(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=None if top_p is None else float(top_p),
        top_k=None if top_k is None else int(top_k),
        repetition_penalty=None if repetition_penalty is None else float(repetition_penalty),
        seed=request.seed,
    )
