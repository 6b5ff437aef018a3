"""The before/after comparison config (YAML), validated with pydantic.

Every problem in a config is reported at once as `loc: message` lines (unknown keys, bad times,
missing videos, ...), so a user fixes the file in one go. Video paths are relative to the config.
`scripts/config_schema.py` prints the JSON Schema for editors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from ..errors import UsageError
from ..options import OPTIONS, pydantic_fields
from ..timecodes import parse_time


class ConfigError(UsageError):
    """An invalid config: one line per problem in `problems`."""

    def __init__(self, path: str, problems: list[str]):
        self.path, self.problems = path, problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid config {path} ({count}):")


class StrictModel(BaseModel):
    """A config section that refuses keys it does not know."""

    model_config = ConfigDict(extra="forbid")


# Model and budget settings: the config's `defaults`, overridable per comparison. Both are made from the
# option declarations (options.py): the same types, limits and help as the CLI's.
SETTINGS = tuple(name for name, option in OPTIONS.items() if option.config == "settings")
DEFAULTS = tuple(name for name, option in OPTIONS.items() if option.config == "defaults")
Settings = create_model(
    "Settings",
    __base__=StrictModel,
    __doc__="Model and budget settings; the config's `defaults`, overridable per comparison.",
    **pydantic_fields(SETTINGS, with_defaults=False),
)
Defaults = create_model(
    "Defaults",
    __base__=Settings,
    __doc__="Settings for every comparison, plus which model runs them.",
    **pydantic_fields(DEFAULTS, with_defaults=True),
)


Time = Union[float, str]


class Comparison(StrictModel):
    """One before/after pair of frames and the questions about them."""

    name: str = Field(min_length=1)
    video: Optional[str] = Field(None, description="one video holding both moments")
    before_video: Optional[str] = Field(None, description="the video of the BEFORE frame")
    after_video: Optional[str] = Field(None, description="the video of the AFTER frame")
    before: Time = Field(description="time of the BEFORE frame: 5.5, 1:05.5 or 00:01:05.500")
    after: Time = Field(description="time of the AFTER frame")
    questions: list[str] = Field(default_factory=list, description="asked about both frames together")
    find: Optional[str] = Field(None, description="an object to locate in both frames (boxes)")
    overrides: Optional[Settings] = None  # type: ignore[valid-type]  # made by create_model from OPTIONS

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
    def _one_way_to_give_videos(self) -> Comparison:
        if self.video and (self.before_video or self.after_video):
            raise ValueError("give `video`, or `before_video` and `after_video`, not both")
        if not self.video and not (self.before_video and self.after_video):
            if (
                "video" in self.model_fields_set
                or "before_video" in self.model_fields_set
                or "after_video" in self.model_fields_set
            ):
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


class CompareConfig(StrictModel):
    """A list of before/after comparisons with shared defaults."""

    defaults: Defaults = Field(default_factory=Defaults)  # type: ignore[valid-type]  # made from OPTIONS
    comparisons: list[Comparison] = Field(min_length=1)

    def settings_for(self, comparison: Comparison) -> dict:
        """Budget, token and decoding settings for one comparison: its overrides over the defaults."""
        merged = {name: OPTIONS[name].default for name in SETTINGS}
        for layer in (self.defaults, comparison.overrides):
            if layer is not None:
                merged.update(
                    {key: value for key, value in layer.model_dump(exclude_none=True).items() if key in merged}
                )
        return merged


MAX_CONFIG_BYTES = 1 << 20  # a config lists comparisons by hand: 1 MiB is thousands of them (10 MB took minutes)


def load_config(path: str) -> CompareConfig:
    """Read and validate a comparison config; ConfigError lists every problem (a key given twice in one
    mapping is one: YAML would keep the last silently)."""
    data = read_yaml_config(
        path, "a compare config", "for thousands of videos, use `keyframe-qa batch` with a manifest", "`comparisons`"
    )
    try:
        return CompareConfig.model_validate(data, context={"base": os.path.dirname(os.path.abspath(path))})
    except ValidationError as exc:
        raise ConfigError(path, [config_problem(error) for error in exc.errors()]) from exc


def read_yaml_config(path: str, what: str, larger: str, needs: str) -> dict:
    """The mapping a YAML config holds: at most MAX_CONFIG_BYTES, each key once per mapping (YAML would keep
    the last silently). `what` names the config, `larger` says what to use instead of a huge one, `needs`
    the keys a mapping must have, for the messages."""
    import yaml

    if not os.path.isfile(path):
        raise UsageError(f"config not found: {path}")
    size = os.path.getsize(path)
    if size > MAX_CONFIG_BYTES:
        raise UsageError(f"config {path} is {size / (1 << 20):.1f} MiB: {what} is at most 1 MiB ({larger})")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle.read(MAX_CONFIG_BYTES + 1), Loader=_unique_key_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "yaml"
        raise ConfigError(path, [f"{where}: {getattr(exc, 'problem', None) or exc}"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(path, [f"(top): the config must be a mapping with {needs}"])
    return data


def _unique_key_loader():
    """yaml.SafeLoader that refuses a key given twice in one mapping (a ConfigError at its line)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                    seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: the base class says so
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"{key!r} is given twice (first on line {first}): YAML would keep only the last",
                        key_node.start_mark,
                    )
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def config_problem(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top)"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{location}: {message}"


def json_schema() -> dict:
    """The config's JSON Schema (for editors: yaml-language-server, VS Code)."""
    schema = CompareConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "keyframe-qa comparison config"
    return schema
