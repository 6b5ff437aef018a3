"""Parsing and formatting of user-facing times: `5.5`, `1:05.5`, `00:01:05.500`."""

from __future__ import annotations

import math
import re

from .errors import UsageError

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_SECONDS = re.compile(rf"^(?:{_NUMBER})$")
_CLOCK = re.compile(rf"^(?:(\d+):)?(\d+):((?:{_NUMBER}))$")
# Longer than any time a video can have (a year in seconds with nanoseconds is 17 characters): reading
# thousands of digits would overflow a float or hit Python's int-string limit.
MAX_TIME_CHARS = 32


def parse_time(text: str) -> float:
    """Parse one time in seconds, `m:ss(.fff)` or `h:mm:ss(.fff)` into seconds.

    Minutes and seconds after a colon must be below 60, so `1:75` is an error rather than a
    silent 2:15. Raises UsageError for anything else, including negative times.
    """
    raw = text.strip()
    if not raw:
        raise UsageError("empty time in --at (use seconds like 5.5, or m:ss / h:mm:ss)")
    if raw.startswith("-"):
        raise UsageError(f"negative time {_shown(raw)} in --at: times count from the first frame (0)")
    if len(raw) > MAX_TIME_CHARS:
        raise UsageError(f"cannot read time {_shown(raw)}: {len(raw)} characters is longer than any video's time")
    if _SECONDS.match(raw):
        value = float(raw)
    else:
        match = _CLOCK.match(raw)
        if not match:
            raise UsageError(f"cannot read time {raw!r}: use seconds (5.5), m:ss(.fff) or h:mm:ss(.fff)")
        hours_text, minutes_text, seconds_text = match.groups()
        minutes, seconds = int(minutes_text), float(seconds_text)
        if seconds >= 60 or (hours_text is not None and minutes >= 60):
            raise UsageError(f"cannot read time {raw!r}: minutes and seconds must be below 60")
        value = float((int(hours_text or 0) * 60 + minutes) * 60) + seconds
    if not math.isfinite(value):
        raise UsageError(f"cannot read time {raw!r}")
    return value


def _shown(raw: str) -> str:
    return repr(raw) if len(raw) <= 40 else repr(raw[:20] + "..." + raw[-8:])


def parse_time_list(text: str) -> list[float]:
    """Parse a comma-separated list of times (see `parse_time`), keeping the user's order."""
    parts = text.split(",")
    if not any(part.strip() for part in parts):
        raise UsageError("--at needs at least one time, e.g. --at 5.5,1:10")
    return [parse_time(part) for part in parts]


def format_time(seconds: float) -> str:
    """Format seconds as `h:mm:ss.fff` (for messages and labels)."""
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours}:{minutes:02d}:{secs:02d}.{millis:03d}"
