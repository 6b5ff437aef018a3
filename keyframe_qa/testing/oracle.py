"""A perfect model for the temporal search's tests: it answers from the pixels of a synthetic clip.

Synthetic clips stamp each frame's number into its pixels (synthetic.py). This engine reads it back and
says the query is shown exactly on frames `first`..`last`: single-frame probes get "yes" or "no", a pass
over several labelled frames gets "from S to E seconds" over the frames it was shown that show it. The
search on top of it is what is under test (allowed for that only); the real engines run the same path in
their own tests.
"""

from __future__ import annotations

from typing import Sequence

from ..model.checkpoint import CheckpointInfo
from ..model.families import family_by_name
from ..records import GenerationSettings, Reply, VisualPrompt
from .synthetic import read_frame_number


class PixelOracle:
    """An Engine that knows which frames show the query, and reads every frame it is given."""

    name = "oracle"
    can_batch = False
    load_seconds = 0.0
    context_length = None

    def __init__(self, first: int, last: int, family: str = "qwen2-vl"):
        self.first, self.last = first, last
        self.family = family_by_name(family)
        self.model_id = "pixel-oracle"
        self.checkpoint = CheckpointInfo(model_id=self.model_id, source="local", family=self.family,
                                         context_length=None)
        self.seen: list[int] = []  # every frame number it was shown, in order

    def describe(self) -> dict:
        """The JSON `model` object's engine part."""
        return {"id": self.model_id, "family": self.family.name, "device": None, "dtype": None, "engine": self.name}

    def answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        """'yes'/'no' for a single-frame probe, else the span of the frames shown that show the query."""
        numbers = [read_frame_number(image) for image in prompt.images]
        self.seen.extend(numbers)
        replies = []
        for question in questions:
            shown = [t for n, t in zip(numbers, prompt.times) if self.first <= n <= self.last]
            if len(numbers) == 1 and question.startswith("Does this frame show"):
                text = "yes" if shown else "no"
            else:
                text = f"from {min(shown):.3f} to {max(shown):.3f} seconds" if shown else "never"
            replies.append(Reply(raw=text, text=text, prompt_tokens=len(numbers), completion_tokens=1,
                                 truncated=False))
        return replies

    def yes_probability(self, prompt: VisualPrompt, question: str):
        """1.0 or 0.0, read from the pixels (a perfect model is certain)."""
        number = read_frame_number(prompt.images[0])
        self.seen.append(number)
        return 1.0 if self.first <= number <= self.last else 0.0

    def answer_batch(self, calls, settings):
        """Not a batching engine."""
        raise NotImplementedError("the oracle answers one call at a time")
