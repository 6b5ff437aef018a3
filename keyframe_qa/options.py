"""Every user-facing option, declared once: its name, type, default, limits and help.

The records that carry options (`AskRequest`, `SelectionRequest`, `SceneOptions`, `EngineSpec`,
`GenerationRequest`, `AnswerOptions`, `WhenRequest`) are written out as frozen dataclasses whose option
fields are `option("name")`: the type is written there, the default and help come from here. The CLI's
click options (`click_options`) and the compare config's pydantic fields (`pydantic_fields`) read the same
declarations, and `check_value` is the one range check all three use.

This module imports nothing heavy: click and pydantic are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Optional

MAX_SEED = 2**32 - 1
# Every numeric option has a largest value: the largest that can still change a result. Larger ones are
# refused before any work, naming it, instead of looping over them (a rate of 1e9 frames a second once
# looped duration x rate times before anything was printed).
MAX_RATE = 1000.0  # frames a second: past the fastest slow-motion video (960 fps); also above any video's rate
LONGEST_SECONDS = 7 * 24 * 3600.0  # a week: longer than any video, so a longer step or precision means the same
MAX_TOKENS = 2**20  # about a million tokens: past the longest context of any Qwen-VL (Qwen3-VL's 1M)
MAX_FRAMES = MAX_TOKENS  # frames in one request: each needs a visual token of the budget at least
MAX_PIXELS = 16384 * 16384  # model-input pixels of one frame: past a 16K video's frame (15360 x 8640)
MAX_SIDE = 16384  # pixels on an image's side
MAX_THRESHOLD = 255.0  # PySceneDetect's scores are 8-bit pixel differences (or fractions, below 1)
MAX_TIMEOUT = 24 * 3600.0  # a day for one reply
MAX_TEMPERATURE = 100.0  # far past the useful range (0 to 2): the distribution is flat long before
MAX_PENALTY = 100.0  # repetition penalty: past 10 no token can repeat at all
DEFAULT_MAX_VISUAL_TOKENS = 16384  # one full-size image's worth, for all frames together
FAMILY_NAMES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
DETECTOR_NAMES = ("content", "adaptive", "threshold", "hash", "histogram")
KEYFRAME_CHOICES = ("first", "middle", "sharpest")


@dataclass(frozen=True)
class Option:
    """One option as the user meets it on the command line, in the library and in a compare config."""

    name: str  # the field name in the records
    kind: type  # int, float, str or bool
    default: Any  # the default everywhere (None: decided later, from the checkpoint or the mode)
    help: str  # one line: the --help text, the field's comment, the config's description
    flag: Optional[str] = None  # the CLI flag; None: "--" and the name with dashes
    choices: tuple = ()  # the only values allowed, if any
    low: Optional[float] = None  # the smallest value allowed
    low_open: bool = False  # `low` itself is not allowed (above it)
    high: Optional[float] = None  # the largest value allowed
    metavar: Optional[str] = None  # how --help names the value
    config: Optional[str] = None  # the compare config's key: "defaults", "settings" (also per comparison) or None
    config_name: Optional[str] = None  # the key's name in the config, where it differs from `name`
    hashed: bool = True  # part of a batch line's settings hash (whether it can change an answer)

    @property
    def cli_flag(self) -> str:
        """The flag on the command line."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        """The compare config's key."""
        return self.config_name or self.name


def _count(name, help_text, *, high: float, default=None, metavar="N", **extra) -> Option:
    return Option(name, int, default, help_text, low=1, high=high, metavar=metavar, **extra)


def _positive(name, help_text, *, high: float, default=None, **extra) -> Option:
    return Option(name, float, default, help_text, low=0, low_open=True, high=high, **extra)


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        # --- which frames (SelectionRequest, SceneOptions) -------------------------------------------
        Option(
            "times",
            tuple,
            None,
            "Comma list of times: 5.5 | 1:05.5 | 00:01:05.500 (from the first frame).",
            flag="--at",
            metavar="TIMES",
        ),
        Option("scenes", bool, False, "One keyframe per scene found by PySceneDetect."),
        _positive("every", "A frame every SECONDS.", metavar="SECONDS", high=LONGEST_SECONDS),
        _count("num_frames", "N frames spread evenly.", high=MAX_FRAMES),
        _positive("fps", "F frames per second.", metavar="F", high=MAX_RATE),
        _count(
            "relevant",
            "N frames most relevant to the questions (or --find, or frames --query), covering the "
            "video: candidates scored by --scorer, chosen by BOLT's inverse-transform sampling.",
            high=MAX_FRAMES,
        ),
        Option(
            "candidates",
            str,
            "1",
            "Frames --relevant scores: keyframes (I-frames only), or a RATE in frames a "
            "second (exact frames from the index).",
            metavar="keyframes|RATE",
            low=0,
            low_open=True,
            high=MAX_RATE,
        ),
        Option(
            "scorer",
            str,
            "openai/clip-vit-base-patch32",
            "--relevant's image-text model: a CLIP or SigLIP hub id or checkpoint folder.",
            metavar="ID|PATH",
        ),
        Option("query", str, None, "frames --relevant: what the frames should show.", metavar="TEXT"),
        Option("detector", str, "content", "Scene detector (with --scenes).", choices=DETECTOR_NAMES),
        _positive("threshold", "Detector threshold [default: the detector's].", high=MAX_THRESHOLD),
        # Its number is frames, or seconds with an s: `high` bounds the seconds (frames: at MAX_RATE).
        Option(
            "min_scene_len",
            str,
            "15",
            "Shortest scene: frames (15) or seconds (0.6s).",
            low=0,
            low_open=True,
            high=LONGEST_SECONDS,
        ),
        Option(
            "keyframe",
            str,
            "middle",
            "Which frame stands for a scene; sharpest = highest Laplacian variance.",
            choices=KEYFRAME_CHOICES,
        ),
        _count("max_scenes", "Keep the N longest scenes.", high=MAX_FRAMES),
        Option(
            "use_cache",
            bool,
            True,
            "Detect scenes and embed --relevant's candidates again instead of using the cache.",
            flag="--no-cache",
            hashed=False,
        ),
        # --- how the frames are put to the model (AnswerOptions) --------------------------------------
        Option("per_frame", bool, False, "Ask every question about each frame on its own."),
        Option(
            "mode",
            str,
            "images",
            "Frames as several images in one turn, or as one video.",
            choices=("images", "video"),
            config="settings",
        ),
        Option("find", str, None, "Locate WHAT with the model's grounding prompt (boxes).", metavar="WHAT"),
        # --- which engine (EngineSpec) ------------------------------------------------------------------
        Option(
            "model_id",
            str,
            None,
            "Hub id or checkpoint folder [default: $KEYFRAME_QA_MODEL or "
            "Qwen/Qwen2-VL-2B-Instruct]; with --engine openai, the served model's name.",
            flag="--model",
            metavar="ID|PATH",
            config="defaults",
            config_name="model",
        ),
        Option(
            "engine",
            str,
            "transformers",
            "Load the model here, or ask an OpenAI-compatible server.",
            choices=("transformers", "openai"),
            config="defaults",
        ),
        Option(
            "base_url",
            str,
            None,
            "openai engine: the server's URL, e.g. http://localhost:8000/v1.",
            metavar="URL",
            config="defaults",
            hashed=False,
        ),
        Option(
            "api_key_env",
            str,
            "OPENAI_API_KEY",
            "openai engine: the environment variable holding the API key (never recorded).",
            metavar="NAME",
            config="defaults",
            hashed=False,
        ),
        Option(
            "family",
            str,
            None,
            "openai engine: the model's family, when its config is not on this machine.",
            choices=FAMILY_NAMES,
            config="defaults",
        ),
        _positive(
            "timeout",
            "openai engine: seconds to wait for one whole reply.",
            default=600.0,
            config="defaults",
            hashed=False,
            high=MAX_TIMEOUT,
        ),
        _count(
            "max_images",
            "openai engine: the most images the server takes in one prompt (vLLM's "
            "--limit-mm-per-prompt); when's windows fit it, more frames are refused before any work [default: "
            "learnt from the server's refusal].",
            config="defaults",
            hashed=False,
            high=MAX_FRAMES,
        ),
        Option("device", str, "auto", "auto | cpu | cuda | cuda:N", config="defaults"),
        Option(
            "dtype",
            str,
            "auto",
            "auto = bfloat16 on GPUs that have it, float32 on CPU.",
            choices=("auto", "bfloat16", "float16", "float32"),
            config="defaults",
        ),
        # --- the budget ----------------------------------------------------------------------------------
        _count(
            "min_pixels",
            "Per-frame minimum model-input pixels [default: the checkpoint's, else 4 tokens].",
            config="settings",
            high=MAX_PIXELS,
        ),
        _count(
            "max_pixels",
            "Per-frame maximum model-input pixels [default: the checkpoint's, else 16384 tokens].",
            config="settings",
            high=MAX_PIXELS,
        ),
        _count(
            "max_visual_tokens",
            "Visual tokens for all frames together (split evenly, never exceeded).",
            default=DEFAULT_MAX_VISUAL_TOKENS,
            config="settings",
            high=MAX_TOKENS,
        ),
        # --- decoding (GenerationRequest) ------------------------------------------------------------
        _count(
            "max_new_tokens",
            "Longest reply in tokens [default: 256; 1024 with --find].",
            config="settings",
            high=MAX_TOKENS,
        ),
        Option(
            "sampling",
            str,
            "greedy",
            "greedy: the same answer every time; model: the checkpoint's generation config.",
            choices=("greedy", "model"),
            config="settings",
        ),
        Option(
            "temperature",
            float,
            None,
            "Sample at this temperature (0: greedy).",
            low=0,
            high=MAX_TEMPERATURE,
            config="settings",
        ),
        Option("top_p", float, None, "Sample from this nucleus mass.", low=0, low_open=True, high=1, config="settings"),
        _count("top_k", "Sample among the K likeliest tokens.", metavar="K", config="settings", high=MAX_TOKENS),
        _positive("repetition_penalty", "Above 1 discourages repeats.", config="settings", high=MAX_PENALTY),
        Option(
            "seed",
            int,
            None,
            "Seed for sampling: the same seed gives the same sampled answer.",
            low=0,
            high=MAX_SEED,
            config="settings",
        ),
        # --- the temporal search (when) -------------------------------------------------------------
        Option(
            "when",
            str,
            None,
            "Find the moments WHAT happens first (as `keyframe-qa when`), then ask about the "
            "first, middle and last frame of each.",
            metavar="WHAT",
        ),
        Option(
            "precision",
            str,
            "frame",
            "How exact the boundaries: frame (the exact first and last frame) or SECONDS.",
            metavar="frame|SECONDS",
            low=0,
            low_open=True,
            high=LONGEST_SECONDS,
        ),
        Option("refine", bool, True, "Keep the coarse pass's boundaries (no single-frame probes).", flag="--no-refine"),
        Option("window_frames", int, 32, "Frames sampled per window of the coarse pass.", low=2, high=768, metavar="N"),
        # --- batch runs -------------------------------------------------------------------------------
        Option(
            "concurrency",
            int,
            1,
            "Videos answered at once (--engine openai, or --ray actors): keeps N requests in flight for the server.",
            low=1,
            high=1024,
            metavar="N",
        ),
        Option(
            "batch_size",
            int,
            1,
            "Prompts generated together in one left-padded batch (in-process model); greedy "
            "answers are the same as one at a time.",
            low=1,
            high=1024,
            metavar="N",
        ),
        # --- frame images (the frames command) -----------------------------------------------------------
        Option("image_format", str, "png", "Image format of the frames.", flag="--format", choices=("png", "jpg")),
        Option("quality", int, 95, "JPEG quality.", low=1, high=100),
        _count("max_side", "Shrink so the longer side is at most N.", high=MAX_SIDE),
        # --- the view command ----------------------------------------------------------------------
        Option(
            "limit",
            int,
            1000,
            "Decode the frames of the first N rows (the table lists every row).",
            low=0,
            high=MAX_FRAMES,
            metavar="N",
        ),
    )
}

SELECTION = ("times", "scenes", "every", "num_frames", "fps", "relevant")
RELEVANCE = ("candidates", "scorer")
SCENE = ("detector", "threshold", "min_scene_len", "keyframe", "max_scenes")
ENGINE = ("engine", "model_id", "device", "dtype", "base_url", "api_key_env", "family", "timeout", "max_images")
GENERATION = ("sampling", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed")
BUDGET = ("min_pixels", "max_pixels", "max_visual_tokens")
# The order `ask --help` lists them in (and AskRequest's fields).
ANSWER = (
    "per_frame",
    "find",
    "mode",
    "model_id",
    "engine",
    "base_url",
    "api_key_env",
    "family",
    "timeout",
    "max_images",
    "device",
    "dtype",
    *BUDGET,
    *GENERATION,
)


def default(name: str) -> Any:
    """An option's declared default."""
    return OPTIONS[name].default


def limits_text(option: Option) -> str:
    """What values an option takes, as a user reads it ("above 0 and at most 1")."""
    if option.choices:
        return "one of " + ", ".join(option.choices)
    parts = []
    if option.low is not None:
        low = int(option.low) if option.kind is int else option.low
        parts.append(
            f"above {low:g}" if option.low_open else f"at least {low:g}" if option.kind is int or low else "0 or more"
        )
    if option.high is not None:
        high = int(option.high) if option.kind is int else option.high
        parts.append(f"at most {high}" if option.kind is int else f"at most {high:g}")
    text = " and ".join(parts) if parts else "a finite number"
    return text + " (a whole number)" if option.kind is int else text


def _help_limits(option: Option) -> str:
    """The limits as --help shows them, short: "1 to 1048576", "above 0, at most 1000"."""
    if option.name == "min_scene_len":
        high = option.high or 0.0
        return f"at most {high:g} s or {high * MAX_RATE:.0f} frames"
    if option.kind is int:
        return f"{int(option.low or 0)} to {int(option.high or 0)}"
    low = f"above {option.low:g}, " if option.low_open else f"{option.low:g} to " if option.low is not None else ""
    return f"{low}at most {option.high:g}" if low.startswith("above") or not low else f"{low}{option.high:g}"


def word_or_positive(name: str, text: str, word: str, what: str) -> Optional[float]:
    """None for `word`, else a finite number within option `name`'s limits, as it takes it (--precision
    frame|SECONDS, --candidates keyframes|RATE); a UsageError naming the limits for anything else."""
    from .errors import UsageError

    if text == word:
        return None
    try:
        number = float(text)
    except (TypeError, ValueError):
        number = math.nan
    if not _within(OPTIONS[name], number):
        raise UsageError(
            f"{OPTIONS[name].cli_flag} must be {word} or {what} {limits_text(OPTIONS[name])}, not {text!r}"
        )
    return number


def _within(option: Option, number: float) -> bool:
    """Whether a finite `number` lies within the option's declared limits."""
    if not math.isfinite(number):
        return False
    if option.low is not None and (number <= option.low if option.low_open else number < option.low):
        return False
    return option.high is None or number <= option.high


def check_value(name: str, value: Any) -> Any:
    """The one check of an option's value against its declaration; returns it, or raises UsageError
    ("--top-p must be above 0 and at most 1"). None (not given) always passes."""
    from .errors import UsageError

    option = OPTIONS[name]
    if value is None:
        return value
    wrong = False
    if option.choices:
        wrong = value not in option.choices
    elif option.kind in (int, float):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (option.kind is int and not isinstance(value, int))
        ):
            wrong = True
        else:  # Python compares a whole number of any size with these limits exactly
            wrong = (
                not _within(option, value)
                if isinstance(value, float)
                else (option.low is not None and (value <= option.low if option.low_open else value < option.low))
                or (option.high is not None and value > option.high)
            )
    if wrong and option.choices:
        raise UsageError(
            f"unknown {option.name.replace('_', ' ')} {value!r} ({option.cli_flag}): use one of "
            f"{', '.join(option.choices)}"
        )
    if wrong:
        raise UsageError(f"{option.cli_flag} must be {limits_text(option)}")
    return value


def check_record(record) -> None:
    """Check every declared option a record carries (the library's own callers get the CLI's checks)."""
    for item in dataclasses.fields(record):
        if "option" in item.metadata:  # a field made by `option(...)`
            check_value(item.metadata["option"], getattr(record, item.name))


def option(name: str) -> Any:
    """The dataclass field of declared option `name` in a record: its default from OPTIONS, its help kept
    in the field's metadata (a record's field and its option share the name, which a test checks)."""
    declared = OPTIONS[name]
    return dataclasses.field(default=declared.default, metadata={"help": declared.help, "option": name})


def take(record: type, values: dict) -> Any:
    """A `record` built from the entries of `values` (parsed options, or a compare config's keys, which may
    be the options' config names) that it has fields for; those entries are removed from `values`."""
    given = {}
    for item in dataclasses.fields(record):
        key = OPTIONS[item.name].key if item.name in OPTIONS else item.name
        for name in (item.name, key):
            if name in values:
                given[item.name] = values.pop(name)
    return record(**given)


def click_options(names: tuple, *, parsers: Optional[dict[str, Callable]] = None) -> Callable:
    """A decorator adding the click options `names`, in order, typed and checked by their declarations.

    `parsers` turn a flag's text into its value (`--at` into times)."""
    import click

    parsers = parsers or {}

    def decorate(command):
        for name in reversed(names):
            option = OPTIONS[name]
            # The limits are said where the option is described, not only when a value breaks them.
            shown = option.help if option.high is None or option.choices else f"{option.help} [{_help_limits(option)}]"
            kwargs: dict = {"help": shown, "metavar": option.metavar}
            if option.kind is bool:
                flag = option.cli_flag
                # A flag that turns a True default off (--no-cache) is stored under the option's name.
                command = click.option(
                    flag, name, is_flag=True, flag_value=not option.default, default=option.default, help=option.help
                )(command)
                continue
            if name in parsers:
                kwargs["callback"] = _parsed(parsers[name])
            elif option.choices:
                kwargs.update(type=click.Choice(list(option.choices)), metavar=None)
            elif option.kind in (int, float):
                kwargs["type"] = _Checked(name)
            kwargs["default"] = option.default
            kwargs["show_default"] = option.default is not None
            command = click.option(option.cli_flag, name, **kwargs)(command)
        return command

    return decorate


def _parsed(parse: Callable) -> Callable:
    def callback(ctx, param, value):
        import click

        from .errors import UsageError

        if value is None:
            return None
        try:
            return parse(value)
        except UsageError as exc:
            raise click.BadParameter(str(exc)) from exc

    return callback


def _Checked(name: str):  # noqa: N802 - a click ParamType, made lazily (click is imported only here)
    import click

    option = OPTIONS[name]

    class Checked(click.ParamType):
        """A number read and checked against its declaration."""

        def __init__(self):
            self.name = "integer" if option.kind is int else "number"

        def convert(self, value, param, ctx):
            from .errors import UsageError

            if isinstance(value, (int, float)) and not isinstance(value, bool):
                number = value
            else:
                try:
                    number = int(value) if option.kind is int else float(value)
                except (TypeError, ValueError):
                    self.fail(f"{value!r} is not {'a whole number' if option.kind is int else 'a number'}", param, ctx)
            try:
                return check_value(name, number)
            except UsageError as exc:
                self.fail(str(exc), param, ctx)

    return Checked()


def pydantic_fields(names: tuple, *, with_defaults: bool) -> dict:
    """pydantic field definitions (for `create_model`) of the declared options `names`, keyed by their
    config names: typed and bounded by the declarations (pydantic's own messages), described by their
    help. Without defaults every field is optional (an override layer)."""

    from pydantic import Field

    fields = {}
    for name in names:
        option = OPTIONS[name]
        if option.choices:
            kind: Any = Literal[option.choices]
        else:
            kind = option.kind
        bounds: dict = {}
        if option.kind not in (int, float):
            pass  # a text option's limits bound the number inside it (--candidates RATE): read by its parser
        elif option.low is not None:
            bounds["gt" if option.low_open else "ge"] = option.low if option.kind is float else int(option.low)
        if option.high is not None and option.kind in (int, float):
            bounds["le"] = option.high if option.kind is float else int(option.high)
        if option.kind is float:
            bounds["allow_inf_nan"] = False
        value_default = option.default if with_defaults else None
        annotation = kind if (with_defaults and option.default is not None) else Optional[kind]
        fields[option.key] = (annotation, Field(value_default, description=option.help, **bounds))
    return fields
