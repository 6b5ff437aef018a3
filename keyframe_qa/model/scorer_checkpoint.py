"""What a relevance scorer's checkpoint is, read from its config before anything loads (no torch).

`--relevant` scores frames against text with an image-text embedding model, never the VLM. The scorer is
named like a model (hub id or folder, the same offline rules and the same error when it is missing), and
refused at once, before the video is read, when its config is not a CLIP or SigLIP model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from ..errors import UsageError
from .checkpoint import check_source, checkpoint_files, read_config

# config.json `model_type`s with both towers and transformers' get_image_features / get_text_features.
SCORER_TYPES = ("clip", "siglip")
# The largest side a scorer's input may have. CLIP and SigLIP take 224 to 384 (512 for a few); each candidate is
# shrunk to it as decoded and batched 32 at a time, so a config asking for 100,000 took 5.9 GB. As the VLM's
# budget, the scorer's input is bounded before anything loads.
MAX_SCORER_SIDE = 1024
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class ScorerInfo:
    """A scorer checkpoint's facts, from its config."""

    model_id: str  # hub id or folder, as given
    source: str  # "local" (a folder) or "hub" (an id, read from the Hugging Face cache)
    model_type: str  # "clip" or "siglip"
    identity: dict  # what the cached embeddings depend on: the config's digest and the weight files


def inspect_scorer(model_id: str) -> ScorerInfo:
    """The scorer's facts; a ModelError when it cannot be found (as for a missing model), a UsageError when it
    is not an image-text embedding model."""
    source = check_source(model_id, "--scorer")
    config = read_config(model_id, source, "--scorer")
    model_type = config.get("model_type")
    if model_type not in SCORER_TYPES:
        raise UsageError(
            f"--scorer {model_id} is {_kind(model_type)}, not an image-text embedding model: give a "
            f"CLIP or SigLIP checkpoint (e.g. openai/clip-vit-base-patch32 or "
            f"google/siglip-base-patch16-224)"
        )
    _check_input_size(model_id, config)
    return ScorerInfo(model_id=model_id, source=source, model_type=model_type, identity=_identity(model_id))


def declared_sides(config: dict, processors: dict[str, dict]) -> list[tuple[float, str]]:
    """Every input side the checkpoint states, with where: each image processor's size and crop size (by file),
    and the vision tower's image_size."""
    sides = []
    for file_name, processor in processors.items():
        for key in ("size", "crop_size"):
            value = processor.get(key)
            values = value.items() if isinstance(value, dict) else [("", value)]
            for name, side in values:
                if isinstance(side, (int, float)) and not isinstance(side, bool):
                    sides.append((side, f"{key}{'.' + name if name else ''} in its {file_name}"))
    vision = config.get("vision_config")
    side = vision.get("image_size") if isinstance(vision, dict) else None
    if isinstance(side, (int, float)) and not isinstance(side, bool):
        sides.append((side, "vision_config.image_size in its config.json"))
    return sides


def _check_input_size(model_id: str, config: dict) -> None:

    # transformers 5 writes the image processor inside processor_config.json; older checkpoints have its own file.
    processors: dict[str, dict] = {}
    for name, path in checkpoint_files(model_id, ("processor_config.json", "preprocessor_config.json")).items():
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError, RecursionError):
            continue  # transformers says what is wrong with it when it loads
        if isinstance(loaded, dict) and name == "processor_config.json":
            loaded = loaded.get("image_processor")
        if isinstance(loaded, dict):
            processors[name] = loaded
    for side, where in declared_sides(config, processors):
        if not 0 < side <= MAX_SCORER_SIDE:
            raise UsageError(
                f"--scorer {model_id} asks for inputs {side:g} pixels on a side ({where}), outside 1 to "
                f"{MAX_SCORER_SIDE}: image-text scorers take 224 to 512; fix its config or give another "
                f"--scorer"
            )


def _kind(model_type) -> str:
    return f"a {model_type!r} model" if isinstance(model_type, str) and model_type else "a config without a model_type"


def _identity(model_id: str) -> dict:
    """The config's SHA-256 and each weight file's name, size and modification time: another checkpoint under
    the same name (a folder retrained in place, a new hub revision) gives other embeddings, so another key."""
    config = checkpoint_files(model_id, ("config.json",)).get("config.json")
    weights: list[list] = []
    identity: dict = {"id": model_id, "config_sha256": None, "weights": weights}
    if config is None:
        return identity
    with open(config, "rb") as handle:
        identity["config_sha256"] = hashlib.sha256(handle.read()).hexdigest()
    folder = os.path.dirname(config)
    for name in sorted(os.listdir(folder)):
        if name.endswith(WEIGHT_SUFFIXES):
            try:
                status = os.stat(os.path.join(folder, name))  # a hub snapshot's links lead to their blobs
                weights.append([name, status.st_size, status.st_mtime_ns])
            except OSError:
                continue
    return identity
