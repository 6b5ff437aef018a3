"""What a model is told about time in video mode, and how truly (no torch).

- Qwen2.5-VL places each temporal patch (two frames) at position id
  `int(k * tokens_per_second * seconds_per_patch)`, where seconds_per_patch is
  temporal_patch_size / fps and fps is one rate for the whole video (transformers'
  `get_vision_position_ids`). Two things bend the truth:
  - above `tokens_per_second * temporal_patch_size / 2` frames a second... precisely: when
    `tokens_per_second * seconds_per_patch < 1`, neighbouring patches share an id (at 5 fps with
    tokens_per_second 2, 12 patches get 9 distinct ids);
  - one rate cannot describe frames taken at uneven times (`--at 0,1,10,11`, scene keyframes): the
    ids then put patches seconds away from where they are.
- Qwen3-VL prints each patch's time as text (`<2.5 seconds>`, the mean of its two frames' times),
  which keyframe-qa makes the frames' real times: exact to the 0.1 s it prints.
- Images mode labels each frame with its time in text: nothing to check.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .checkpoint import CheckpointInfo
from ..timecodes import format_time


def time_fidelity(checkpoint: CheckpointInfo, mode: str, times: Sequence[float], per_frame: bool = False
                  ) -> Optional[dict]:
    """The JSON `model.time_fidelity` for a video-mode prompt of frames at `times` (None when the
    model reads times as text, or sees no video)."""
    family = checkpoint.family
    if mode != "video" or per_frame or len(times) < 2:
        return None
    if family.name == "qwen3-vl":
        return {"status": "exact", "how": "each temporal patch's time is printed in the prompt as text"}
    if family.name != "qwen2.5-vl":
        return None  # Qwen2-VL's temporal ids are plain patch indices: it is told no time at all
    per_second = checkpoint.tokens_per_second or 2.0
    patch = family.temporal_patch_size
    start = times[0]
    span = times[-1] - start
    rate = (len(times) - 1) / span if span > 0 else 1.0  # the one rate the engine tells the processor
    seconds_per_patch = patch / rate
    starts = [t - start for t in times[::patch]]  # when each temporal patch really begins
    # As the model computes them: second_per_grid_ts is a float32 tensor, so the ids are truncated float32
    # products (in float64 a rate of 1.0000001 would put the second patch at id 3 where the model puts 4).
    interval = np.float32(per_second) * np.float32(seconds_per_patch)
    ids = [int(np.float32(k) * interval) for k in range(len(starts))]
    error = max(abs(i / per_second - s) for i, s in zip(ids, starts))
    distinct = len(set(ids))
    most = per_second * patch
    record = {"status": "exact", "tokens_per_second": per_second, "seconds_per_patch": round(seconds_per_patch, 6),
              "patches": len(ids), "distinct_positions": distinct, "max_error_s": round(error, 6),
              "max_fps": most}
    problems = []
    if distinct < len(ids):
        problems.append(f"at {rate:.3g} frames a second its {len(ids)} temporal patches get only {distinct} "
                        f"distinct time positions (it tells times apart up to {most:g} frames a second)")
    if error >= 1.0 / per_second:
        problems.append(f"the frames are unevenly spaced, which one rate cannot describe: a patch is placed up "
                        f"to {error:.2f}s from its real time ({format_time(start)} to {format_time(times[-1])})")
    if problems:
        record.update(status="approximate", note="; ".join(problems))
    return record


def fidelity_warning(record: Optional[dict], where: str) -> Optional[str]:
    """One warning line for an approximate record, saying what to do instead."""
    if not record or record.get("status") != "approximate":
        return None
    return (f"{where}: Qwen2.5-VL video mode: {record['note']}. Answers about when things happen are "
            f"unreliable: use --mode images (times as text), or evenly spaced frames at "
            f"{record['max_fps']:g} fps or less")
