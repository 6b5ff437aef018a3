"""Frames resized to their budgets exactly as the Qwen-VL processors resize, for every engine.

The in-process engine gives the processor frames already at their planned size (it is told not to
resize again), and the OpenAI engine sends them at that size so the server's processor keeps them. Both
resize the same way, the processor's own: torchvision on a uint8 tensor, antialiased, with the
checkpoint's `resample` filter. So both engines send the very same pixels, and a server answers what
the in-process model answers.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np


def resize_to_budget(image: np.ndarray, budget, model_id: Optional[str] = None) -> np.ndarray:
    """The frame at its budgeted size, resized with `model_id`'s processor filter."""
    return resize_like_processor(image, budget.input_width, budget.input_height, processor_resample(model_id))


def resize_like_processor(image: np.ndarray, width: int, height: int, resample=None) -> np.ndarray:
    """An RGB frame at (width, height) as the Qwen-VL processors resize: torchvision on a uint8 tensor,
    antialiased, with the processor's `resample` filter (bicubic when not given)."""
    import torch
    from torchvision.transforms.v2 import functional as tvF

    if image.shape[1] == width and image.shape[0] == height:
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    out = tvF.resize(tensor, [height, width], interpolation=_interpolation(resample), antialias=True)
    return out.permute(1, 2, 0).contiguous().numpy()


def _interpolation(resample):
    """torchvision's interpolation mode for a processor's `resample` (a PIL filter number or a mode)."""
    from torchvision.transforms.v2 import InterpolationMode

    pil = {0: InterpolationMode.NEAREST, 1: InterpolationMode.LANCZOS, 2: InterpolationMode.BILINEAR,
           3: InterpolationMode.BICUBIC, 4: InterpolationMode.BOX, 5: InterpolationMode.HAMMING}
    if isinstance(resample, InterpolationMode):
        return resample
    if resample is None:
        return InterpolationMode.BICUBIC  # every Qwen-VL processor's filter
    return pil.get(int(resample), InterpolationMode.BICUBIC)


def import_resize() -> None:
    """Import torch and torchvision's resize now (they take a second or more the first time)."""
    from torchvision.transforms.v2 import functional  # noqa: F401 - imported for its cost, not its names


@lru_cache(maxsize=16)
def processor_resample(model_id: Optional[str]):
    """The image processor's `resample` from the checkpoint's processor config, read without loading it."""
    from ..model.checkpoint import checkpoint_files, default_model_id
    from ..model.processor_limits import FILES, read_limits

    return read_limits(checkpoint_files(model_id or default_model_id(), FILES)).resample
