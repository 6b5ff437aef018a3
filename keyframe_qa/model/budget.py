"""Model-input sizes and visual-token budgets, following qwen-vl-utils' `smart_resize` rules.

Every frame is resized (by us, before the processor) to a size whose sides are multiples of the
family's factor (28 for Qwen2/2.5-VL, 32 for Qwen3-VL); one visual token covers factor x factor
pixels. Per-frame limits come from --min-pixels/--max-pixels, and --max-visual-tokens caps all
frames together: it is split evenly, so no frame is starved, and it is never exceeded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

from ..errors import UsageError
from ..options import DEFAULT_MAX_VISUAL_TOKENS
from ..records import FrameBudget
from .families import Family

MAX_ASPECT_RATIO = 200
# qwen-vl-utils defaults, in visual tokens per frame.
IMAGE_MIN_TOKENS, IMAGE_MAX_TOKENS = 4, 16384
VIDEO_MIN_TOKENS, VIDEO_MAX_TOKENS = 128, 768
# Our default cap across all frames (options.py): one full-size image's worth. Keeps several 1080p frames
# within what a 2B model answers in seconds on a GPU; raise it with --max-visual-tokens.


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) for the model: multiples of `factor`, area within [min_pixels, max_pixels].

    Same rules as qwen-vl-utils: round each side to the factor; if too large scale both sides by
    sqrt(area/max) and floor; if too small scale up and ceil. Unlike the reference it never returns
    a side of 0 or an area above max_pixels (both can happen there at extreme sizes).
    """
    if min(height, width) <= 0:
        raise UsageError(f"cannot size a {width}x{height} frame")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise UsageError(f"frame aspect ratio {width}x{height} is above {MAX_ASPECT_RATIO}:1, which Qwen-VL rejects")
    if max_pixels < factor * factor:
        raise UsageError(f"max pixels {max_pixels} is below one visual token ({factor}x{factor} = {factor * factor})")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    # Flooring the minimum side to one factor can still leave the area too big for a thin frame.
    while h_bar * w_bar > max_pixels and max(h_bar, w_bar) > factor:
        if h_bar >= w_bar:
            h_bar -= factor
        else:
            w_bar -= factor
    return h_bar, w_bar


def plan_budget(
    frame_sizes: Sequence[tuple[int, int]],
    family: Family,
    *,
    mode: str = "images",
    min_pixels: Optional[int] = None,
    max_pixels: Optional[int] = None,
    max_visual_tokens: Optional[int] = DEFAULT_MAX_VISUAL_TOKENS,
    checkpoint_pixels: tuple[Optional[int], Optional[int]] = (None, None),
) -> list[FrameBudget]:
    """Choose each frame's model-input size. `frame_sizes` are display (width, height) pairs.

    Per-frame limits: --min-pixels/--max-pixels, else the checkpoint's processor's own
    (`checkpoint_pixels`), else qwen-vl-utils' defaults for the mode (see `pixel_limits`).

    In video mode all frames share one size (they form one tensor) and pairs of frames share a
    temporal patch, so a frame's `visual_tokens` is its share of its pair's tokens (the first of a
    pair takes the odd one), and the shares add up to the video's tokens exactly.
    """
    if mode not in ("images", "video"):
        raise UsageError(f"unknown mode {mode!r}: use images or video")
    count = len(frame_sizes)
    if count == 0:
        raise UsageError("no frames selected")
    unit = family.factor * family.factor
    (low, _), (high, _) = pixel_limits(family, mode, min_pixels, max_pixels, checkpoint_pixels)
    if low <= 0 or high <= 0:
        raise UsageError("--min-pixels and --max-pixels must be positive")
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise UsageError(f"--min-pixels {min_pixels} is above --max-pixels {max_pixels}")
    if max_pixels is not None and max_pixels < unit:
        raise UsageError(
            f"--max-pixels {max_pixels} is below one visual token ({family.factor}x{family.factor} = {unit} pixels)"
        )
    if max_pixels is None and low > high:
        high = low
    if min_pixels is None and low > high:
        low = high

    if max_visual_tokens is not None:
        if max_visual_tokens <= 0:
            raise UsageError("--max-visual-tokens must be positive")
        # In video mode tokens are paid per temporal patch (a pair of frames).
        slots = count if mode == "images" else math.ceil(count / family.temporal_patch_size)
        tokens_per_slot = max_visual_tokens // slots
        if tokens_per_slot < 1:
            raise UsageError(
                f"--max-visual-tokens {max_visual_tokens} cannot give each of {count} frames even one visual token"
            )
        high = min(high, tokens_per_slot * unit)
        low = min(low, high)  # the total budget wins over a per-frame minimum

    if mode == "video":
        width, height = max(frame_sizes, key=lambda size: size[0] * size[1])
        h, w = smart_resize(height, width, family.factor, low, high)
        per_patch = (h // family.factor) * (w // family.factor)
        return [FrameBudget(w, h, share) for share in _video_shares(count, per_patch, family.temporal_patch_size)]

    budgets = []
    for width, height in frame_sizes:
        h, w = smart_resize(height, width, family.factor, low, high)
        budgets.append(FrameBudget(w, h, (h // family.factor) * (w // family.factor)))
    if max_visual_tokens is not None:
        assert sum(b.visual_tokens for b in budgets) <= max_visual_tokens
    return budgets


def pixel_limits(
    family: Family,
    mode: str,
    min_pixels: Optional[int],
    max_pixels: Optional[int],
    checkpoint_pixels: tuple[Optional[int], Optional[int]] = (None, None),
) -> tuple[tuple, tuple]:
    """((min, source), (max, source)) per frame: the option, else the checkpoint's processor
    ("checkpoint"), else qwen-vl-utils' default for the mode ("default")."""
    unit = family.factor * family.factor
    defaults = (
        (IMAGE_MIN_TOKENS * unit, IMAGE_MAX_TOKENS * unit)
        if mode == "images"
        else (VIDEO_MIN_TOKENS * unit, VIDEO_MAX_TOKENS * unit)
    )
    limits = []
    for given, stated, default in zip((min_pixels, max_pixels), checkpoint_pixels, defaults):
        if given is not None:
            limits.append((given, "option"))
        elif stated is not None:
            limits.append((stated, "checkpoint"))
        else:
            limits.append((default, "default"))
    return limits[0], limits[1]


def _video_shares(count: int, per_patch: int, temporal: int) -> list[int]:
    shares: list[int] = []
    for start in range(0, count, temporal):
        members = min(temporal, count - start)
        base, extra = divmod(per_patch, members)
        shares.extend(base + (1 if i < extra else 0) for i in range(members))
    return shares


def plan_request(
    frame_sizes: Sequence[tuple[int, int]],
    family: Family,
    *,
    mode: str = "images",
    per_frame: bool = False,
    min_pixels: Optional[int] = None,
    max_pixels: Optional[int] = None,
    max_visual_tokens: Optional[int] = DEFAULT_MAX_VISUAL_TOKENS,
    checkpoint_pixels: tuple[Optional[int], Optional[int]] = (None, None),
) -> list[FrameBudget]:
    """Budgets for a request's frames: together in one prompt, or each in its own (`per_frame`).

    Per frame in video mode, each frame is a one-frame video: the processor repeats it to fill a
    temporal patch, so it costs a whole patch's tokens, and the total is split per frame.
    """
    if not (per_frame and mode == "video"):
        return plan_budget(
            frame_sizes,
            family,
            mode=mode,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            max_visual_tokens=max_visual_tokens,
            checkpoint_pixels=checkpoint_pixels,
        )
    count = len(frame_sizes)
    if count == 0:
        raise UsageError("no frames selected")
    share = None
    if max_visual_tokens is not None:
        share = max_visual_tokens // count
        if share < 1:
            raise UsageError(
                f"--max-visual-tokens {max_visual_tokens} cannot give each of {count} frames even one visual token"
            )
    return [
        plan_budget(
            [size],
            family,
            mode="video",
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            max_visual_tokens=share,
            checkpoint_pixels=checkpoint_pixels,
        )[0]
        for size in frame_sizes
    ]


def check_budget_settings(
    family: Family,
    *,
    mode: str = "images",
    min_pixels: Optional[int] = None,
    max_pixels: Optional[int] = None,
    max_visual_tokens: Optional[int] = None,
) -> None:
    """Usage errors for budget settings this family can never meet (before any frame or model)."""
    plan_budget(
        [(family.factor * 16, family.factor * 9)],
        family,
        mode=mode,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        max_visual_tokens=max_visual_tokens,
    )


def prompt_tokens_lower_bound(budgets: Sequence[FrameBudget], mode: str) -> int:
    """Fewest tokens a prompt of these frames can take: the visual tokens plus each picture's
    vision-start and vision-end markers (labels, the template and the question come on top)."""
    markers = 2 if mode == "video" else 2 * len(budgets)
    return sum(b.visual_tokens for b in budgets) + markers


def check_context(
    prompt_tokens: int, max_new_tokens: int, context_length: Optional[int], *, exact: bool = False
) -> None:
    """Refuse a prompt that, with its reply, cannot fit the model's context window."""
    if context_length is None or prompt_tokens + max_new_tokens <= context_length:
        return
    size = f"{prompt_tokens}" if exact else f"at least {prompt_tokens}"
    raise UsageError(
        f"the prompt needs {size} tokens plus up to {max_new_tokens} for the reply, over the model's context "
        f"of {context_length} tokens (max_position_embeddings in its config): lower --max-visual-tokens, "
        f"choose fewer frames, or lower --max-new-tokens"
    )
