"""What differs between the Qwen-VL families, learned from a checkpoint's config (never its name)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError, UsageError


@dataclass(frozen=True)
class Family:
    """Facts about one model family that the budget and grounding stages need."""

    name: str  # "qwen2-vl", "qwen2.5-vl" or "qwen3-vl"
    patch_size: int  # vision patch side in pixels (14, or 16 for Qwen3-VL)
    merge_size: int  # patches merged per side into one visual token (2)
    temporal_patch_size: int  # frames folded into one video token (2)
    box_format: str  # "qwen2-vl" special-token boxes, "absolute-json" or "relative-json"

    @property
    def factor(self) -> int:
        """Side in pixels covered by one visual token: model input sides are multiples of this."""
        return self.patch_size * self.merge_size

    @property
    def prints_times(self) -> bool:
        """Whether video mode prints each temporal patch's time before it (`<2.5 seconds>`, Qwen3-VL), where
        Qwen2.5-VL tells time in its position ids and Qwen2-VL not at all."""
        return self.name == "qwen3-vl"


_BY_MODEL_TYPE = {
    "qwen2_vl": ("qwen2-vl", 14, "qwen2-vl"),
    "qwen2_5_vl": ("qwen2.5-vl", 14, "absolute-json"),
    "qwen3_vl": ("qwen3-vl", 16, "relative-json"),
    "qwen3_vl_moe": ("qwen3-vl", 16, "relative-json"),
}

SUPPORTED_MODEL_TYPES = tuple(_BY_MODEL_TYPE)


def family_from_config(config: dict) -> Family:
    """Family of a checkpoint from its `config.json` contents (a plain dict)."""
    model_type = config.get("model_type")
    if model_type not in _BY_MODEL_TYPE:
        raise ModelError(
            f"unsupported model type {model_type!r}: keyframe-qa runs Qwen2-VL, Qwen2.5-VL and Qwen3-VL "
            f"checkpoints (model_type one of {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    name, default_patch, box_format = _BY_MODEL_TYPE[model_type]
    vision = config.get("vision_config") or {}
    return Family(
        name=name,
        patch_size=int(vision.get("patch_size", default_patch)),
        merge_size=int(vision.get("spatial_merge_size", 2)),
        temporal_patch_size=int(vision.get("temporal_patch_size", 2)),
        box_format=box_format,
    )


def family_by_name(name: str) -> Family:
    """A family from its name ("qwen2-vl", "qwen2.5-vl", "qwen3-vl"), with its standard sizes."""

    for model_type, (family_name, _, _) in _BY_MODEL_TYPE.items():
        if family_name == name:
            return family_from_config({"model_type": model_type})
    raise UsageError(f"unknown family {name!r}: use qwen2-vl, qwen2.5-vl or qwen3-vl")
