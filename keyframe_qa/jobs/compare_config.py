"""The before/after comparison config (YAML), validated with pydantic.

Every problem in a config is reported at once as `loc: message` lines (unknown keys, bad times,
missing videos, ...), so a user fixes the file in one go. Video paths are relative to the config.
Run `python -m keyframe_qa.config` to print the JSON Schema for editors.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, \
    model_validator

from ..model.budget import DEFAULT_MAX_VISUAL_TOKENS, LARGEST_OPTION
from ..errors import UsageError
from ..model.generation import MAX_SEED
from ..timecodes import parse_time


class ConfigError(UsageError):
    """An invalid config: one line per problem in `problems`."""

    def __init__(self, path: str, problems: list[str]):
        self.path, self.problems = path, problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid config {path} ({count}):")


# A whole number above 0 and no larger than any option takes.
Count = Annotated[int, Field(gt=0, le=LARGEST_OPTION)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Settings(_Strict):
    """Model and budget settings; the config's `defaults`, overridable per comparison."""

    mode: Optional[Literal["images", "video"]] = Field(None, description="images (default) or video")
    min_pixels: Optional[Count] = Field(None, description="per-frame minimum model-input pixels")
    max_pixels: Optional[Count] = Field(None, description="per-frame maximum model-input pixels")
    max_visual_tokens: Optional[Count] = Field(None, description="visual tokens for both frames together")
    max_new_tokens: Optional[Count] = Field(None, description="longest reply, in tokens (default 256; 1024 "
                                                               "for `find`)")
    sampling: Optional[Literal["greedy", "model"]] = Field(
        None, description="greedy (default, deterministic) or model: the checkpoint's generation config")
    temperature: Optional[float] = Field(None, ge=0, allow_inf_nan=False, description="sample at this temperature "
                                                                                    "(0: greedy)")
    top_p: Optional[float] = Field(None, gt=0, le=1, description="nucleus sampling mass")
    top_k: Optional[Count] = Field(None, description="sample among the k likeliest tokens")
    repetition_penalty: Optional[float] = Field(None, gt=0, allow_inf_nan=False,
                                                description="above 1 discourages repeats")
    seed: Optional[int] = Field(None, ge=0, le=MAX_SEED, description="makes sampled answers repeatable")


class Defaults(Settings):
    """Settings for every comparison, plus which model runs them."""

    model: Optional[str] = Field(None, description="hub id or checkpoint folder (default: $KEYFRAME_QA_MODEL "
                                                   "or Qwen/Qwen2-VL-2B-Instruct)")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (transformers engine)")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    engine: Literal["transformers", "openai"] = Field("transformers", description="transformers (in process) or "
                                                                                 "openai (an OpenAI-compatible server)")
    base_url: Optional[str] = Field(None, description="openai engine: the server's /v1 URL")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai engine: the variable holding the API key")
    family: Optional[Literal["qwen2-vl", "qwen2.5-vl", "qwen3-vl"]] = Field(
        None, description="openai engine: the model's family when its config is not here")
    timeout: float = Field(600.0, gt=0, allow_inf_nan=False, description="openai engine: seconds per reply")

    def engine_spec(self):
        """The engine these defaults name."""
        from ..engines import EngineSpec

        return EngineSpec(engine=self.engine, model_id=self.model, device=self.device, dtype=self.dtype,
                          base_url=self.base_url, api_key_env=self.api_key_env, family=self.family,
                          timeout=self.timeout)


Time = Union[float, str]


class Comparison(_Strict):
    """One before/after pair of frames and the questions about them."""

    name: str = Field(min_length=1)
    video: Optional[str] = Field(None, description="one video holding both moments")
    before_video: Optional[str] = Field(None, description="the video of the BEFORE frame")
    after_video: Optional[str] = Field(None, description="the video of the AFTER frame")
    before: Time = Field(description="time of the BEFORE frame: 5.5, 1:05.5 or 00:01:05.500")
    after: Time = Field(description="time of the AFTER frame")
    questions: list[str] = Field(default_factory=list, description="asked about both frames together")
    find: Optional[str] = Field(None, description="an object to locate in both frames (boxes)")
    overrides: Optional[Settings] = None

    @field_validator("before", "after")
    @classmethod
    def _time(cls, value: Time) -> float:
        if isinstance(value, bool):
            raise ValueError("a time is a number of seconds or m:ss / h:mm:ss")
        try:
            return parse_time(str(value)) if isinstance(value, str) else parse_time(repr(float(value)))
        except UsageError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("video", "before_video", "after_video")
    @classmethod
    def _exists(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is None:
            return None
        base = (info.context or {}).get("base", ".")
        path = value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))
        if not os.path.isfile(path):
            raise ValueError(f"video not found: {path}")
        return path

    @model_validator(mode="after")
    def _one_way_to_give_videos(self) -> "Comparison":
        if self.video and (self.before_video or self.after_video):
            raise ValueError("give `video`, or `before_video` and `after_video`, not both")
        if not self.video and not (self.before_video and self.after_video):
            if "video" in self.model_fields_set or "before_video" in self.model_fields_set or \
                    "after_video" in self.model_fields_set:
                raise ValueError("give both `before_video` and `after_video`")
            raise ValueError("give `video`, or `before_video` and `after_video`")
        if not self.questions and not self.find:
            raise ValueError("give `questions` or `find`")
        if any(not q.strip() for q in self.questions):
            raise ValueError("questions must not be empty")
        return self

    @property
    def before_path(self) -> str:
        return self.video or self.before_video  # type: ignore[return-value]

    @property
    def after_path(self) -> str:
        return self.video or self.after_video  # type: ignore[return-value]


class CompareConfig(_Strict):
    """A list of before/after comparisons with shared defaults."""

    defaults: Defaults = Field(default_factory=Defaults)
    comparisons: list[Comparison] = Field(min_length=1)

    def settings_for(self, comparison: Comparison) -> dict:
        """Budget, token and decoding settings for one comparison: its overrides over the defaults."""
        merged = {"mode": "images", "min_pixels": None, "max_pixels": None,
                  "max_visual_tokens": DEFAULT_MAX_VISUAL_TOKENS, "max_new_tokens": None, "sampling": "greedy",
                  "temperature": None, "top_p": None, "top_k": None, "repetition_penalty": None, "seed": None}
        for layer in (self.defaults, comparison.overrides):
            if layer is not None:
                merged.update({key: value for key, value in layer.model_dump(exclude_none=True).items()
                               if key in merged})
        return merged


def load_config(path: str) -> CompareConfig:
    """Read and validate a comparison config; ConfigError lists every problem."""
    import yaml

    if not os.path.isfile(path):
        raise UsageError(f"config not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "yaml"
        raise ConfigError(path, [f"{where}: {getattr(exc, 'problem', None) or exc}"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(path, ["(top): the config must be a mapping with `comparisons`"])
    try:
        return CompareConfig.model_validate(data, context={"base": os.path.dirname(os.path.abspath(path))})
    except ValidationError as exc:
        raise ConfigError(path, [_problem(error) for error in exc.errors()]) from exc


def _problem(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top)"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{location}: {message}"


def json_schema() -> dict:
    """The config's JSON Schema (for editors: yaml-language-server, VS Code)."""
    schema = CompareConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "keyframe-qa comparison config"
    return schema


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
