"""What a checkpoint is, learned from its config without loading it (no torch, no transformers).

The family decides the budget's factor and the box format, and the context length bounds the prompt;
both are known from `config.json` alone, so impossible requests are refused before the model loads.
A local folder is read directly, a hub id from the Hugging Face cache (or, if it is not cached, its
config is fetched from the hub, with a line on stderr saying so right away).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

from ..console import status
from ..errors import ModelError, UsageError
from .families import Family, family_from_config
from .processor_limits import FILES as PROCESSOR_FILES
from .processor_limits import ProcessorLimits, read_limits

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
MODEL_ENV = "KEYFRAME_QA_MODEL"


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint as its config describes it."""

    model_id: str  # hub id or folder, as given
    source: str  # "local" (a folder) or "hub" (a hub id, cached or fetched)
    family: Family  # Qwen2-VL, Qwen2.5-VL or Qwen3-VL facts
    context_length: Optional[int]  # the language model's max_position_embeddings; None if the config lacks it
    # The checkpoint's generation_config.json (its own sampling settings), or None when it has none.
    generation_defaults: Optional[dict] = field(default=None, compare=False)
    # The pixel and frame limits its processor config states (processor_limits.py).
    limits: ProcessorLimits = field(default_factory=ProcessorLimits, compare=False)
    # Qwen2.5-VL: temporal position ids per second of video (vision_config.tokens_per_second); else None.
    tokens_per_second: Optional[float] = field(default=None, compare=False)


def default_model_id() -> str:
    """The model to use when --model is not given: $KEYFRAME_QA_MODEL or Qwen2-VL-2B-Instruct."""
    return model_from_env() or DEFAULT_MODEL


def model_from_env() -> Optional[str]:
    """$KEYFRAME_QA_MODEL, or None when it is unset; set but empty is a usage error, not the default
    (a 4.5 GB download nobody asked for)."""
    value = os.environ.get(MODEL_ENV)
    if value is None:
        return None
    if not value.strip():
        raise UsageError(f"{MODEL_ENV} is set but empty: unset it, or set it to a hub id or a checkpoint folder")
    return value.strip()


def inspect_checkpoint(model_id: Optional[str] = None) -> CheckpointInfo:
    """Family and context length of a checkpoint from its config; clear errors for bad ones."""
    model_id = model_id or default_model_id()
    source = check_source(model_id)
    config = read_config(model_id, source)
    return CheckpointInfo(
        model_id=model_id,
        source=source,
        family=family_from_config(config),
        context_length=context_length(config),
        generation_defaults=read_generation_config(model_id),
        limits=read_limits(checkpoint_files(model_id, PROCESSOR_FILES)),
        tokens_per_second=tokens_per_second(config),
    )


def inspect_local_checkpoint(model_id: str) -> Optional[CheckpointInfo]:
    """A checkpoint's facts if its config is here (a folder, or the Hugging Face cache), else None.

    Never asks the hub: for a served model the config is a help, not a need.
    """
    # Here (folder or cache): reading it goes no further than the cache.
    return inspect_checkpoint(model_id) if checkpoint_files(model_id, ("config.json",)) else None


def checkpoint_files(model_id: str, names: tuple[str, ...]) -> dict[str, str]:
    """Paths of those of `names` that the checkpoint has here (its folder or the hub cache)."""
    expanded = os.path.expanduser(model_id)
    found = {}
    for name in names:
        path: Optional[str] = os.path.join(expanded, name)
        if not os.path.isdir(expanded):
            try:
                from huggingface_hub import try_to_load_from_cache

                path = try_to_load_from_cache(model_id, name)
            except ValueError:
                path = None
        if isinstance(path, str) and os.path.isfile(path):
            found[name] = path
    return found


def tokens_per_second(config: dict) -> Optional[float]:
    """Qwen2.5-VL's temporal position ids per second of video, from its vision config."""
    given = config.get("vision_config")
    vision: dict = given if isinstance(given, dict) else {}
    value = vision.get("tokens_per_second", config.get("tokens_per_second"))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return None
    return float(value)


def context_length(config: dict) -> Optional[int]:
    """The longest sequence the language model was built for (prompt and reply together)."""
    for section in (config.get("text_config") or {}, config):
        value = section.get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_source(model_id: str, flag: str = "--model") -> str:
    """'local' for a checkpoint folder, 'hub' for a hub id; clear errors for bad or unreadable folders, and a
    usage error for an empty name (as an empty $KEYFRAME_QA_MODEL: never the hub's wording about it)."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise UsageError(f"{flag} is empty: give a hub id or a checkpoint folder")
    expanded = os.path.expanduser(model_id)
    # Hub ids are "org/name"; anything else with a path shape is meant as a folder.
    looks_like_path = os.path.isabs(expanded) or model_id.startswith((".", "~")) or model_id.count("/") > 1
    if os.path.isdir(expanded):
        if not os.access(expanded, os.R_OK | os.X_OK):
            raise ModelError(f"cannot read the model folder {model_id}: permission denied")
        config_path = os.path.join(expanded, "config.json")
        if not os.path.isfile(config_path):
            raise ModelError(f"model folder {model_id} has no config.json: it is not a Hugging Face checkpoint folder")
        for name in sorted(os.listdir(expanded)):
            path = os.path.join(expanded, name)
            if os.path.isfile(path) and not os.access(path, os.R_OK):
                raise ModelError(f"cannot read {path}: permission denied (the model's files must be readable)")
        return "local"
    if os.path.exists(expanded):
        raise ModelError(f"model path {model_id} is a file; give the checkpoint folder or a hub id")
    if looks_like_path:
        raise ModelError(f"model folder {model_id} does not exist")
    return "hub"


def read_config(model_id: str, source: str, flag: str = "--model") -> dict:
    """The checkpoint's config.json as a dict (for a hub id: cached, or fetched once); `flag` is the option
    that named it, for the error when it cannot be found."""
    if source == "local":
        return _read_json(os.path.join(os.path.expanduser(model_id), "config.json"), model_id)
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model_id, "config.json")
    except ValueError as exc:  # not a valid repo id
        raise ModelError(f"{model_id!r} is neither a checkpoint folder nor a hub id ({exc})") from exc
    if isinstance(cached, str):
        return _read_json(cached, model_id)
    if _offline():
        raise ModelError(missing_model_message(model_id, flag))
    # huggingface_hub retries an unreachable hub for about half a minute: say so before the wait.
    status(
        f"{model_id} is not in the Hugging Face cache ({hub_cache()}); asking the hub for it "
        f"(set HF_HUB_OFFLINE=1 to skip the wait)"
    )
    from huggingface_hub import hf_hub_download

    try:
        config = _read_json(hf_hub_download(model_id, "config.json"), model_id)
    except Exception as exc:  # noqa: BLE001 - any hub failure (offline, 404, auth) means "not available"
        raise ModelError(missing_model_message(model_id, flag)) from exc
    for name in ("generation_config.json", *PROCESSOR_FILES):  # read from the cache like the rest
        try:
            hf_hub_download(model_id, name)
        except Exception:  # noqa: BLE001 - a checkpoint without one is fine
            pass
    return config


def read_generation_config(model_id: str) -> Optional[dict]:
    """The checkpoint's generation_config.json as a dict, if it has one here (its folder or the cache;
    read_config fetched it beside config.json if the hub had to be asked)."""
    path = checkpoint_files(model_id, ("generation_config.json",)).get("generation_config.json")
    if path is None:
        return None
    try:
        return _read_json(path, model_id)
    except ModelError:
        return None


def hub_cache() -> str:
    """Where the Hugging Face cache lives on this machine."""
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )


def missing_model_message(model_id: str, flag: str = "--model") -> str:
    """The error for a hub id that is neither cached nor reachable, with a download command; `flag` is the
    option that names such a checkpoint (--model, or --scorer for the relevance scorer)."""
    hub = "HF_HUB_OFFLINE is set, so the hub was not asked" if _offline() else "the hub could not be reached"
    environment = f" (or set {MODEL_ENV})" if flag == "--model" else ""
    return (
        f"model {model_id!r} not found: it is not a local folder, not in the Hugging Face cache ({hub_cache()}), "
        f"and {hub}. Download it once with `hf download {model_id}` "
        f"(from a clone of keyframe-qa: `uv run hf download {model_id}`), "
        f"or pass {flag} /path/to/checkpoint{environment}"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _read_json(path: str, model_id: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except PermissionError as exc:
        raise ModelError(f"cannot read {path}: permission denied") from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {model_id}/config.json: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelError(f"cannot read {model_id}/config.json: it is not a JSON object")
    return config
