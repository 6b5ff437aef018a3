"""Engines: what turns a visual prompt and questions into replies. One interface, declared here.

- `transformers`: the checkpoint loaded in this process (engines/transformers.py; the only module
  that imports torch and transformers).
- `openai`: any OpenAI-compatible chat server (vLLM, SGLang, `transformers serve`), engines/openai.py.

Exact frames, budgets, prompts and boxes are ours whichever engine answers; only generation moves.
"""

from __future__ import annotations

import importlib
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional, Protocol, runtime_checkable

from ..errors import UsageError
from ..model.checkpoint import CheckpointInfo
from ..model.families import Family
from ..options import OPTIONS, check_record, option
from ..records import GenerationSettings, Reply, VisualPrompt

# Engines by name: the module that holds each and its class, imported only when chosen (the in-process
# engine's torch costs seconds a server's users never pay).
REGISTRY = {
    "transformers": ("transformers", "QwenVLModel"),
    "openai": ("openai", "OpenAIEngine"),
}
ENGINES = tuple(REGISTRY)
assert ENGINES == OPTIONS["engine"].choices  # the --engine option offers exactly the registered engines


@runtime_checkable
class Engine(Protocol):
    """The model boundary: everything keyframe-qa needs from whatever generates the replies."""

    family: Family  # decides the budget's factor and the box format
    model_id: str  # the checkpoint or served model, as the user named it
    checkpoint: CheckpointInfo  # its config facts: context length, generation defaults
    context_length: Optional[int]  # prompt plus reply must fit; None when unknown
    load_seconds: float  # what building it took (loading the weights, or reaching the server)
    can_batch: bool  # whether `answer_batch` generates several prompts together (the in-process model)

    def answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        """One reply per question, each about all the frames of `prompt`."""

    def describe(self) -> dict:
        """The engine's part of the JSON `model` object (never a secret)."""

    def answer_batch(
        self, calls: Sequence[tuple[VisualPrompt, Sequence[str]]], settings: GenerationSettings
    ) -> list[list[Reply]]:
        """The replies of several `answer` calls generated together (only where `can_batch`)."""

    def yes_probability(self, prompt: VisualPrompt, question: str) -> Optional[float]:
        """P(yes) / (P(yes) + P(no)) for the first token of the reply to a yes/no question, or None when
        the engine cannot tell (the caller then reads the reply's text)."""


@dataclass(frozen=True)
class EngineSpec:
    """Which engine to build, and how (the engine options, declared in options.py; an `AskRequest`, a
    `WhenRequest` and the compare config's `defaults` each hold one)."""

    engine: str = option("engine")  # "transformers" (in process) or "openai" (a server)
    model_id: Optional[str] = option("model_id")  # hub id, checkpoint folder, or the served model's name
    device: str = option("device")  # auto, cpu, cuda or cuda:N (in process)
    dtype: str = option("dtype")  # auto, bfloat16, float16 or float32 (in process)
    base_url: Optional[str] = option("base_url")  # the server's /v1 URL (openai)
    api_key_env: str = option("api_key_env")  # the environment variable holding the API key (openai)
    family: Optional[str] = option("family")  # the model's family when its config is not here (openai)
    timeout: float = option("timeout")  # seconds for one whole reply (openai)
    max_images: Optional[int] = option("max_images")  # the most images the server takes in a prompt (openai)

    def __post_init__(self) -> None:
        check_record(self)


def resolved(spec: EngineSpec) -> EngineSpec:
    """The spec with its model named: --model, else $KEYFRAME_QA_MODEL (for a server too), else, in
    process, the default checkpoint."""

    from ..model.checkpoint import default_model_id, model_from_env

    if spec.model_id:
        return spec
    model_id = model_from_env() if spec.engine == "openai" else default_model_id()
    return replace(spec, model_id=model_id) if model_id else spec


def check_spec(spec: EngineSpec) -> None:
    """Usage errors in an engine's options, before anything is loaded or contacted."""
    check_record(spec)
    if spec.model_id is not None and not spec.model_id.strip():
        # As an empty $KEYFRAME_QA_MODEL: never the default checkpoint (a 4.5 GB download nobody asked for).
        raise UsageError(
            "--model is empty: give a hub id or a checkpoint folder (or leave --model out for the default)"
        )
    spec = resolved(spec)
    if spec.engine == "openai":
        if not spec.base_url:
            raise UsageError("--engine openai needs --base-url, e.g. --base-url http://localhost:8000/v1")
        if not spec.model_id:
            raise UsageError(
                "--engine openai needs --model (or $KEYFRAME_QA_MODEL): the model's name as the server serves it"
            )
        key = os.environ.get(spec.api_key_env)
        if key and not all(33 <= ord(ch) <= 126 for ch in key):
            raise UsageError(
                f"the API key in ${spec.api_key_env} contains a space, a newline or another character "
                f"an HTTP header cannot carry; set it to the key alone"
            )
        check_url(spec.base_url)
    elif spec.base_url or spec.family or spec.max_images is not None:
        raise UsageError("--base-url, --family and --max-images go with --engine openai")


def check_url(url: str) -> None:
    """A usage error for a --base-url that cannot be asked: not http(s), no host, a port outside 1-65535,
    or characters a request line cannot carry (checked here, before anything is read or contacted)."""

    shown = url if len(url) <= 200 else url[:200] + "..."
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url {shown!r} must start with http:// or https://")
    if any(ord(ch) <= 32 or ord(ch) >= 127 for ch in url):
        raise UsageError(
            f"--base-url {shown!r} holds a space, a control character or a character outside ASCII: "
            f"give the URL alone (percent-encode anything else)"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError outside 0-65535 or for a port that is not a number
    except ValueError:
        raise UsageError(f"--base-url {shown!r} has a port that is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise UsageError(f"--base-url {shown!r} names no host, e.g. http://localhost:8000/v1")
    if port == 0:
        raise UsageError(f"--base-url {shown!r} has port 0: ports run from 1 to 65535")


def engine_checkpoint(spec: EngineSpec) -> CheckpointInfo:
    """The model's config facts for this engine, without loading or contacting anything slow.

    The transformers engine reads the checkpoint it will load. A served model's config is read when
    it is here (a folder, or the Hugging Face cache); otherwise --family says what it is, and the
    family is never guessed from a name.
    """
    from ..model.checkpoint import inspect_checkpoint, inspect_local_checkpoint
    from ..model.families import family_by_name

    check_spec(spec)
    spec = resolved(spec)
    model_id = spec.model_id
    if not model_id:  # refused by check_spec for a server; in process the default checkpoint is named
        raise UsageError("no model is named: give --model (or set $KEYFRAME_QA_MODEL)")
    if spec.engine == "transformers":
        return inspect_checkpoint(model_id)
    local = inspect_local_checkpoint(model_id)
    if spec.family:
        family = family_by_name(spec.family)
        if local is not None and local.family.name != family.name:
            raise UsageError(f"--family {spec.family} contradicts the config of {spec.model_id} ({local.family.name})")
        return local or CheckpointInfo(model_id=model_id, source="server", family=family, context_length=None)
    if local is None:
        raise UsageError(
            f"no config of {spec.model_id!r} here (not a folder, not in the Hugging Face cache): give "
            f"--family qwen2-vl, qwen2.5-vl or qwen3-vl"
        )
    return local


def build_engine(spec: EngineSpec, checkpoint: Optional[CheckpointInfo] = None) -> Engine:
    """Load (transformers) or connect to (openai) the engine a spec names: a lookup in REGISTRY."""

    checkpoint = checkpoint or engine_checkpoint(spec)
    module, name = REGISTRY[resolved(spec).engine]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name).build(resolved(spec), checkpoint)


def warm_engine_imports() -> None:
    """Import what `shrink_for_engine` needs now (torch and torchvision), so the time it takes is not
    counted as decoding."""
    from .resize import import_resize

    import_resize()


def shrink_for_engine(image, budget, model_id: Optional[str] = None):
    """A frame resized to its budget the way every engine resizes it (the checkpoint's processor's own
    resize, resize.py), so it can travel small (batch --ray) and the engine's own resize is then a no-op.
    Both engines resize alike, so both send the same pixels."""
    from .resize import resize_to_budget

    return resize_to_budget(image, budget, model_id)
