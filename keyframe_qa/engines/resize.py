"""Frames resized to their budgets exactly as the Qwen-VL processors resize, for every engine.

The in-process engine gives the processor frames already at their planned size (it is told not to
resize again), and the OpenAI engine sends them at that size so the server's processor keeps them. Both
resize the same way, the processor's own: torchvision on a uint8 tensor, antialiased, with the
checkpoint's `resample` filter. So both engines send the very same pixels, and a server answers what
the in-process model answers.

For bicubic and bilinear (every Qwen-VL processor's filters), torchvision's resize of a uint8 tensor is
torch's own antialiased `interpolate` on it, called here directly: the same pixels (tested against
torchvision), without importing torchvision, which costs a server client about 4 s of its start (7.7 s
for torchvision against 3.4 s for torch alone, on the 2-core machine). PIL's resize is not used: it
differs from torchvision's in a tenth of the pixels, by up to 24 levels.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np

from ..model.checkpoint import checkpoint_files, default_model_id
from ..model.processor_limits import FILES, read_limits


def resize_to_budget(image: np.ndarray, budget, model_id: Optional[str] = None) -> np.ndarray:
    """The frame at its budgeted size, resized with `model_id`'s processor filter."""
    return resize_like_processor(image, budget.input_width, budget.input_height, processor_resample(model_id))


def resize_like_processor(image: np.ndarray, width: int, height: int, resample=None) -> np.ndarray:
    """An RGB frame at (width, height) as the Qwen-VL processors resize: torchvision on a uint8 tensor,
    antialiased, with the processor's `resample` filter (bicubic when not given)."""
    import torch

    if image.shape[1] == width and image.shape[0] == height:
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    mode = filter_name(resample)
    if mode in ("bicubic", "bilinear"):
        # What torchvision's resize does for a uint8 tensor with these filters (see the module doc).
        out = torch.nn.functional.interpolate(
            tensor.unsqueeze(0), size=(height, width), mode=mode, antialias=True, align_corners=False
        ).squeeze(0)
    else:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvF

        out = tvF.resize(tensor, [height, width], interpolation=InterpolationMode(mode), antialias=True)
    return out.permute(1, 2, 0).contiguous().numpy()


def filter_name(resample) -> str:
    """The resize filter's name for a processor's `resample` (a PIL filter number, or a name)."""
    pil = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
    if resample is None:
        return "bicubic"  # every Qwen-VL processor's filter
    if isinstance(resample, str):
        return resample.lower() if resample.lower() in pil.values() else "bicubic"
    value = getattr(resample, "value", resample)  # a torchvision InterpolationMode
    if isinstance(value, str):
        return filter_name(value)
    try:
        return pil.get(int(value), "bicubic")
    except (TypeError, ValueError):
        return "bicubic"


def import_resize() -> None:
    """Import torch now (it takes seconds the first time); torchvision only for a filter torch lacks."""
    import torch  # noqa: F401 - imported for its cost, not its names


@lru_cache(maxsize=16)
def processor_resample(model_id: Optional[str]):
    """The image processor's `resample` from the checkpoint's processor config, read without loading it."""

    return read_limits(checkpoint_files(model_id or default_model_id(), FILES)).resample
