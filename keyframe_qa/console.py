"""Status and warning lines for people, on stderr (stdout carries only results), and progress."""

from __future__ import annotations

import sys
import time
from typing import Optional

# When stderr is a file or a pipe (a log, CI), a progress line at most this often instead of a bar.
LOG_INTERVAL_S = 30.0


_bars: list = []  # tqdm bars drawn now: a line is printed above them, not glued onto one


def status(message: str) -> None:
    """One line saying what is happening (a wait, a file written)."""
    line(f"keyframe-qa: {message}")


def warn(message: str) -> None:
    """One warning line: something the user should know about a result that still came back."""
    line(f"warning: {message}")


def line(text: str) -> None:
    """One whole line on stderr; with a progress bar on the terminal, above the bar (the bar is redrawn).

    A file name that is not UTF-8 shows U+FFFD for its odd bytes: a strict UTF-8 stderr must not fail."""
    from .texts import readable

    text = readable(text)
    if _bars:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


class Progress:
    """A tqdm bar on a terminal; on a file or pipe, a plain line every LOG_INTERVAL_S seconds.

    A bar redrawn into a log file is thousands of carriage-return updates; a log wants a few lines.
    """

    def __init__(
        self,
        total: Optional[int],
        *,
        desc: str,
        unit: str,
        initial: int = 0,
        enabled: bool = True,
        interval: Optional[float] = None,
    ):
        self.total, self.desc, self.unit, self.count = total, desc, unit, initial
        self._postfix: dict = {}
        self._bar = None
        self._interval = LOG_INTERVAL_S if interval is None else interval
        self._enabled = enabled
        self._started = self._last = time.monotonic()
        if enabled and is_terminal(sys.stderr):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, file=sys.stderr, dynamic_ncols=True, desc=desc)
            _bars.append(self._bar)

    def update(self, amount: int = 1) -> None:
        """Count `amount` more done."""
        self.count += amount
        if self._bar is not None:
            self._bar.update(amount)
        elif self._enabled and time.monotonic() - self._last >= self._interval:
            self._line()

    def set_postfix(self, **values) -> None:
        """Figures shown after the count (failures, say)."""
        self._postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix(refresh=False, **values)

    def close(self) -> None:
        """End the bar (a log gets no more lines)."""
        if self._bar is not None:
            self._bar.close()
            if self._bar in _bars:
                _bars.remove(self._bar)
            self._bar = None

    def _line(self) -> None:
        self._last = time.monotonic()
        elapsed = self._last - self._started
        of = f"/{self.total}" if self.total is not None else ""
        extra = "".join(f", {key} {value}" for key, value in self._postfix.items())
        left = ""
        if self.total and 0 < self.count < self.total:
            left = f", about {duration_text(elapsed / self.count * (self.total - self.count))} left"
        print(
            f"{self.desc}: {self.count}{of} {self.unit}s{extra} after {elapsed:.0f}s{left}", file=sys.stderr, flush=True
        )


def counted(count: int, word: str, many: str = "") -> str:
    """ "1 reply", "3 replies": a count with its noun in the right number (`many`: the plural, when it is not
    the word with an s)."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def duration_text(seconds: float) -> str:
    """A duration as a person says it: 0.4 s, 12 s, 3.5 min, 2.1 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def is_terminal(stream) -> bool:
    """Whether `stream` is an interactive terminal (not a file or a pipe)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
