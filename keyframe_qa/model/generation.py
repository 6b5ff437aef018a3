"""Generation settings: deterministic greedy decoding unless asked otherwise, recorded as used.

Greedy is the default on purpose: the same frames and question give the same answer, which is what
QA and inspection runs compare. `--sampling model` takes the checkpoint's own generation config
(Qwen3-VL Instruct ships top_p 0.8, top_k 20, temperature 0.7); explicit options override either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..errors import UsageError
from ..records import GenerationSettings

DEFAULT_MAX_NEW_TOKENS = 256
# Grounding replies list one object per box; the Qwen cookbooks allow 1024 tokens for them, and real
# replies with a dozen objects need 300 to 1700.
FIND_MAX_NEW_TOKENS = 1024
SAMPLING_CHOICES = ("greedy", "model")
MAX_SEED = 2 ** 32 - 1


@dataclass(frozen=True)
class GenerationRequest:
    """What the user asked for; None means "the default" (see `resolve_generation`)."""

    sampling: str = "greedy"  # "greedy", or "model" for the checkpoint's generation config
    max_new_tokens: Optional[int] = None  # None: 256, or 1024 with --find
    temperature: Optional[float] = None  # 0 means greedy
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    repetition_penalty: Optional[float] = None
    seed: Optional[int] = None


def check_generation(request: GenerationRequest) -> None:
    """Usage errors for settings no model can use."""
    if request.sampling not in SAMPLING_CHOICES:
        raise UsageError(f"unknown --sampling {request.sampling!r}: use greedy or model")
    if request.max_new_tokens is not None and request.max_new_tokens <= 0:
        raise UsageError("--max-new-tokens must be positive")
    if request.temperature is not None and not (math.isfinite(request.temperature) and request.temperature >= 0):
        raise UsageError("--temperature must be a number of 0 or more (0 is greedy)")
    if request.top_p is not None and not (math.isfinite(request.top_p) and 0 < request.top_p <= 1):
        raise UsageError("--top-p must be above 0 and at most 1")
    if request.top_k is not None and request.top_k < 1:
        raise UsageError("--top-k must be at least 1")
    if request.repetition_penalty is not None and not (math.isfinite(request.repetition_penalty)
                                                        and request.repetition_penalty > 0):
        raise UsageError("--repetition-penalty must be above 0 (1 is none)")
    if request.seed is not None and not 0 <= request.seed <= MAX_SEED:
        raise UsageError(f"--seed must be from 0 to {MAX_SEED}")


def resolve_generation(request: GenerationRequest, checkpoint_defaults: Optional[dict] = None, *,
                       find: bool = False) -> GenerationSettings:
    """The settings a run uses: greedy or the checkpoint's config, with explicit options on top."""
    check_generation(request)
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
