"""The `eval` config: label files, named pipelines (the options of `ask`, declared once in options.py), the
baseline each other pipeline is compared with, and shared defaults. Validated whole before any model loads.

    labels: labels.jsonl              # one file or a list; paths relative to the config
    pipelines:
      before: {num_frames: 8}
      after:  {relevant: 8}
    baseline: before
    defaults: {model: Qwen/Qwen2-VL-2B-Instruct, max_visual_tokens: 8192}
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Literal, Optional, Union

from pydantic import ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from ..engines import EngineSpec
from ..errors import UsageError
from ..evaluation.formats import FORMATS
from ..model.generation import GenerationRequest
from ..options import OPTIONS, pydantic_fields, take
from ..selection.scenes import SceneOptions
from ..selection.select import SelectionRequest
from .ask import AskRequest
from .compare_config import ConfigError, StrictModel, config_problem, read_yaml_config

# What a pipeline may set: every option of `ask` but those a label row gives itself (its times, its --find
# target, its --when query) and those of other commands.
PER_ROW = {"times", "find", "when", "query", "image_format", "quality", "max_side", "concurrency", "batch_size"}
PIPELINE_OPTIONS = tuple(name for name in OPTIONS if name not in PER_ROW)
MAX_PIPELINES = 64

PipelineOptions = create_model(
    "PipelineOptions",
    __base__=StrictModel,
    __doc__="One pipeline's options (the names of `ask`'s options, as the compare config writes them).",
    **pydantic_fields(PIPELINE_OPTIONS, with_defaults=False),
)


class LabelSource(StrictModel):
    """A public benchmark's label file, read by its format (evaluation/formats.py), its videos under `videos`."""

    format: Literal[FORMATS] = Field(description="the benchmark's format")  # type: ignore[valid-type]
    file: str = Field(min_length=1, description="its label file, relative to the config")
    videos: str = Field(min_length=1, description="the folder its videos are in, relative to the config")


class EvalConfig(StrictModel):
    """Labelled questions, the pipelines that answer them, and which one the others are compared with."""

    model_config = ConfigDict(extra="forbid")

    labels: list[Union[str, LabelSource]] = Field(
        description="label files (.jsonl or .csv) or benchmarks ({format, file, videos}), relative to the config"
    )
    pipelines: dict[str, PipelineOptions] = Field(description="name -> options of `ask`")  # type: ignore[valid-type]
    baseline: Optional[str] = Field(None, description="the pipeline the others are compared with [default: the first]")
    defaults: PipelineOptions = Field(default_factory=PipelineOptions)  # type: ignore[valid-type]
    seed: int = Field(0, ge=0, le=2**32 - 1, description="the bootstrap's seed")

    @field_validator("labels", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> list:
        """One file or a list; each entry a file name or a benchmark, read here so that a problem is named
        by its entry (a union's errors would list every alternative)."""
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list) or not entries:
            raise ValueError("name at least one label file")
        sources: list = []
        for position, entry in enumerate(entries):
            if isinstance(entry, str) and entry:
                sources.append(entry)
            elif isinstance(entry, dict):
                try:
                    sources.append(LabelSource.model_validate(entry))
                except ValidationError as exc:
                    problems = "; ".join(config_problem(error) for error in exc.errors())
                    raise ValueError(f"entry {position}: {problems}") from None
            else:
                raise ValueError(f"entry {position}: a file name, or {{format, file, videos}}")
        return sources

    @field_validator("pipelines")
    @classmethod
    def _named(cls, value: dict) -> dict:
        if not value:
            raise ValueError("name at least one pipeline")
        if len(value) > MAX_PIPELINES:
            raise ValueError(f"at most {MAX_PIPELINES} pipelines")
        for name in value:
            if not name or not all(ch.isalnum() or ch in "-_." for ch in name) or name.startswith("."):
                raise ValueError(f"pipeline name {name!r}: letters, digits, -, _ and . only (it names a file)")
        return value

    @model_validator(mode="after")
    def _baseline(self) -> EvalConfig:
        if self.baseline is not None and self.baseline not in self.pipelines:
            raise ValueError(f"baseline {self.baseline!r} is not one of the pipelines ({', '.join(self.pipelines)})")
        return self

    @property
    def baseline_name(self) -> str:
        """The pipeline the others are compared with."""
        return self.baseline or next(iter(self.pipelines))

    def label_sources(self, config_path: str) -> list[tuple[Optional[str], str, Optional[str]]]:
        """(format or None for our own rows, file, videos folder or None) of each label source, resolved
        against the config's folder."""
        base = os.path.dirname(os.path.abspath(config_path))

        def resolved(name: str) -> str:
            return name if os.path.isabs(name) else os.path.join(base, name)

        entries = list(self.labels)
        return [
            (None, resolved(e), None) if isinstance(e, str) else (e.format, resolved(e.file), resolved(e.videos))
            for e in entries
        ]


def load_eval_config(path: str) -> EvalConfig:
    """Read and validate an eval config; ConfigError lists every problem."""
    data = read_yaml_config(path, "an eval config", "list the rows in label files", "`labels` and `pipelines`")
    try:
        return EvalConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [config_problem(error) for error in exc.errors()]) from exc


def pipeline_requests(config: EvalConfig, config_path: str) -> dict[str, AskRequest]:
    """Each pipeline's request template (its defaults under it); the ones that cannot work are one
    ConfigError, each named (two ways of choosing frames, an option that goes with another)."""
    given: dict[str, Any] = dict(config.defaults)
    defaults = {key: value for key, value in given.items() if value is not None}
    templates, problems = {}, []
    for name, options in config.pipelines.items():
        values: dict[str, Any] = dict(defaults)
        chosen: dict[str, Any] = dict(options)
        values.update({key: value for key, value in chosen.items() if value is not None})
        try:
            templates[name] = _request(values)
        except UsageError as exc:
            problems.append(f"pipelines.{name}: {exc}")
    if problems:
        raise ConfigError(config_path, problems)
    return templates


def _request(values: dict[str, Any]) -> AskRequest:
    scene_options = take(SceneOptions, values)
    selection = take(SelectionRequest, values)
    selection = replace(selection, scene_options=scene_options)
    engine, generation = take(EngineSpec, values), take(GenerationRequest, values)
    return take(
        AskRequest, dict(values, video="", questions=(), selection=selection, engine=engine, generation=generation)
    )
