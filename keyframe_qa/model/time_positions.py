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

Both are told through the metadata the processor takes beside the frames (`video_metadata`), the same
for every engine: the in-process processor gets it as a VideoMetadata, vLLM as the request's
`media_io_kwargs`, and each then computes the same positions and printed times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from ..timecodes import format_time
from .checkpoint import CheckpointInfo

# Frame indices are whole numbers to vLLM: each frame's time is told as `index / fps` with fps at least this
# many ticks a second, so a time is told to within half a microsecond.
TICKS_PER_SECOND = 1_000_000


def sampling_rate(times: Sequence[float]) -> float:
    """The one rate told for frames at `times`: frames less one over their span (1 for a single frame)."""
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return (len(times) - 1) / span if span > 0 else 1.0


def video_metadata(times: Sequence[float]) -> dict:
    """What the processor is told about a video of frames at `times` (seconds): `fps`, whole-number
    `frames_indices`, `total_num_frames` and `duration`, so that

    - Qwen2.5-VL's rate, `len(frames_indices) / total_num_frames * fps`, is `sampling_rate(times)` to the
      last bit (fps and total_num_frames are that rate and the frame count times one power of two, which
      a float multiplies and divides exactly): its position ids are the ones time_fidelity computes;
    - Qwen3-VL's time of each frame, `frames_indices[i] / fps`, is `times[i]` to half a microsecond.

    vLLM takes exactly these fields in `media_io_kwargs` (it wants whole-number indices and a
    total_num_frames of at least the frames sent); the in-process engine passes the same values."""
    count = len(times)
    rate = sampling_rate(times)
    scale = 1
    while rate * scale < TICKS_PER_SECOND:
        scale *= 2
    fps = rate * scale
    return {
        "fps": fps,
        "frames_indices": [round(t * fps) for t in times],
        "total_num_frames": count * scale,
        "duration": times[-1] - times[0] if count > 1 else 0.0,
    }


def patch_times(metadata: dict, temporal_patch_size: int) -> list[float]:
    """Qwen3-VL's time of each temporal patch, printed before it as `<t seconds>`, from `video_metadata`:
    as its processor computes it, each frame at index / fps, the last frame repeated to fill the last
    patch, and a patch at the mean of its first and last frame's times."""
    indices = list(metadata["frames_indices"])
    if len(indices) % temporal_patch_size:
        indices += [indices[-1]] * (temporal_patch_size - len(indices) % temporal_patch_size)
    seconds = [index / metadata["fps"] for index in indices]
    step = temporal_patch_size
    return [(seconds[i] + seconds[i + step - 1]) / 2 for i in range(0, len(seconds), step)]


def time_fidelity(
    checkpoint: CheckpointInfo, mode: str, times: Sequence[float], per_frame: bool = False
) -> Optional[dict]:
    """The JSON `model.time_fidelity` for a video-mode prompt of frames at `times` (None when the
    model reads times as text, or sees no video)."""
    family = checkpoint.family
    if mode != "video" or per_frame or len(times) < 2:
        return None
    if family.prints_times:
        return {"status": "exact", "how": "each temporal patch's time is printed in the prompt as text"}
    if family.name != "qwen2.5-vl":
        return None  # Qwen2-VL's temporal ids are plain patch indices: it is told no time at all
    per_second = checkpoint.tokens_per_second or 2.0
    patch = family.temporal_patch_size
    start = times[0]
    rate = sampling_rate(times)  # the one rate every engine tells the processor (video_metadata)
    seconds_per_patch = patch / rate
    starts = [t - start for t in times[::patch]]  # when each temporal patch really begins
    # As the model computes them: second_per_grid_ts is a float32 tensor, so the ids are truncated float32
    # products (in float64 a rate of 1.0000001 would put the second patch at id 3 where the model puts 4).
    interval = np.float32(per_second) * np.float32(seconds_per_patch)
    ids = [int(np.float32(k) * interval) for k in range(len(starts))]
    error = max(abs(i / per_second - s) for i, s in zip(ids, starts))
    distinct = len(set(ids))
    most = per_second * patch
    record = {
        "status": "exact",
        "tokens_per_second": per_second,
        "seconds_per_patch": round(seconds_per_patch, 6),
        "patches": len(ids),
        "distinct_positions": distinct,
        "max_error_s": round(error, 6),
        "max_fps": most,
    }
    problems = []
    if distinct < len(ids):
        problems.append(
            f"at {rate:.3g} frames a second its {len(ids)} temporal patches get only {distinct} "
            f"distinct time positions (it tells times apart up to {most:g} frames a second)"
        )
    if error >= 1.0 / per_second:
        problems.append(
            f"the frames are unevenly spaced, which one rate cannot describe: a patch is placed up "
            f"to {error:.2f}s from its real time ({format_time(start)} to {format_time(times[-1])})"
        )
    if problems:
        record.update(status="approximate", note="; ".join(problems))
    return record


def fidelity_warning(record: Optional[dict], where: str) -> Optional[str]:
    """One warning line for an approximate record, saying what to do instead."""
    if not record or record.get("status") != "approximate":
        return None
    return (
        f"{where}: Qwen2.5-VL video mode: {record['note']}. Answers about when things happen are "
        f"unreliable: use --mode images (times as text), or evenly spaced frames at "
        f"{record['max_fps']:g} fps or less"
    )
