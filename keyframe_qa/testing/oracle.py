"""A perfect model for the temporal search's tests: it answers from the pixels of a synthetic clip.

Synthetic clips stamp each frame's number into its pixels (synthetic.py). `PixelOracle` reads it back and
says the query is shown exactly on frames `first`..`last`; `DrawnBoxOracle` says it is shown where a
filled box of one colour was drawn into the picture (ffmpeg's drawbox). Single-frame probes get "yes" or
"no"; a pass over several frames gets "from S to E seconds" over the frames shown that show it, in the
times the prompt told (so a window told from its start gets times from its start). The search on top of
it is what is under test (allowed for that only); the real engines run the same path in their own tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np

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
        self.checkpoint = CheckpointInfo(
            model_id=self.model_id, source="local", family=self.family, context_length=None
        )
        self.seen: list = []  # every frame it was shown, in order (its number, where the clip stamps one)

    def describe(self) -> dict:
        """The JSON `model` object's engine part."""
        return {"id": self.model_id, "family": self.family.name, "device": None, "dtype": None, "engine": self.name}

    def answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        """'yes'/'no' for a single-frame probe, else the span of the frames shown that show the query."""
        shows = [self.shows(image) for image in prompt.images]
        replies = []
        for question in questions:
            shown = [t for yes, t in zip(shows, prompt.times) if yes]
            if len(shows) == 1 and question.startswith("Does this frame show"):
                text = "yes" if shown else "no"
            else:
                text = f"from {min(shown):.3f} to {max(shown):.3f} seconds" if shown else "never"
            replies.append(Reply(raw=text, text=text, prompt_tokens=len(shows), completion_tokens=1, truncated=False))
        return replies

    def yes_probability(self, prompt: VisualPrompt, question: str):
        """1.0 or 0.0, read from the pixels (a perfect model is certain)."""
        return 1.0 if self.shows(prompt.images[0]) else 0.0

    def shows(self, image) -> bool:
        """Whether this frame shows the query: its stamped number is in first..last (kept in `seen`)."""
        number = read_frame_number(image)
        self.seen.append(number)
        return self.first <= number <= self.last

    def answer_batch(self, calls, settings):
        """Not a batching engine."""
        raise NotImplementedError("the oracle answers one call at a time")


class DrawnBoxOracle(PixelOracle):
    """A perfect model of a clip with a filled box drawn in between two times: a frame shows the query
    when the box's area is that one colour, evenly (the picture under it varies)."""

    def __init__(self, box: tuple[int, int, int, int], color: tuple[int, int, int], family: str = "qwen2-vl"):
        super().__init__(-1, -1, family)
        self.box, self.color = box, np.array(color, dtype=np.float64)

    def shows(self, image) -> bool:
        """The box's inner area (a margin in from its edges, where compression blurs) is the colour."""
        x, y, w, h = self.box
        margin = max(2, min(w, h) // 8)
        area = (
            np.asarray(image)[y + margin : y + h - margin, x + margin : x + w - margin]
            .reshape(-1, 3)
            .astype(np.float64)
        )
        self.seen.append(None)
        return bool(np.abs(area.mean(axis=0) - self.color).max() < 24 and area.std(axis=0).max() < 16)


class ColourScorer:
    """A perfect relevance scorer for a clip where one stretch shows a square of one colour: an image's
    embedding says how much of it is that colour, every text's says "that colour", so a frame's score is
    the share of its pixels of the colour. For tests of the selection on top of it (allowed for that only);
    the tiny real CLIP and SigLIP run the same path in their own tests."""

    model_id = "colour-scorer"
    input_size = (64, 48)

    def __init__(self, colour: tuple[int, int, int] = (0, 200, 0)):

        self.colour = np.array(colour, dtype=np.float64)
        self.info = SimpleNamespace(identity={"id": self.model_id, "colour": list(colour)}, model_type="stand-in")
        self.images = 0  # candidate images embedded, in all

    def describe(self) -> dict:
        """The JSON record of the scorer."""
        return {"id": self.model_id, "type": "stand-in", "device": None, "dtype": None}

    def embed_images(self, images) -> np.ndarray:
        """[share, sqrt(1 - share^2)] per image: unit rows whose cosine with [1, 0] is the share."""
        self.images += len(images)
        rows = []
        for image in images:
            pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
            share = float((np.abs(pixels - self.colour).max(axis=1) < 40).mean())
            rows.append([share, (1.0 - share * share) ** 0.5])
        return np.array(rows, dtype=np.float32).reshape(-1, 2)

    def embed_texts(self, texts) -> np.ndarray:
        """[1, 0] for every text: "the colour"."""
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(texts), 1))


class ColourAnswerOracle:
    """A perfect answerer for a clip where one stretch shows a square of one colour: asked whether it is
    shown, it says yes exactly when one of the frames it is given shows it, and no to anything else. For
    the tests of `eval`, whose scoring and statistics sit on top of it (allowed for that only); the tiny real
    checkpoints run the same path in their own tests."""

    name = "colour-oracle"
    can_batch = False
    load_seconds = 0.0
    context_length = None

    def __init__(self, colour: tuple[int, int, int] = (0, 200, 0), word: str = "green", family: str = "qwen2-vl"):
        self.colour = np.array(colour, dtype=np.float64)
        self.word = word  # a question names the colour with this word
        self.family = family_by_name(family)
        self.model_id = "colour-oracle"
        self.checkpoint = CheckpointInfo(
            model_id=self.model_id, source="local", family=self.family, context_length=None
        )
        self.calls = 0  # prompts answered, in all

    def describe(self) -> dict:
        """The JSON `model` object's engine part."""
        return {"id": self.model_id, "family": self.family.name, "device": None, "dtype": None, "engine": self.name}

    def shows(self, image) -> bool:
        """Whether at least 1% of the picture is the colour."""
        pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
        return bool((np.abs(pixels - self.colour).max(axis=1) < 40).mean() >= 0.01)

    def answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        """ "yes" to a question naming the colour when a frame shows it, "no" otherwise."""
        self.calls += 1
        seen = any(self.shows(image) for image in prompt.images)
        replies = []
        for question in questions:
            text = "Yes." if seen and self.word in question.lower() else "No."
            replies.append(Reply(raw=text, text=text, prompt_tokens=len(prompt.images), completion_tokens=1))
        return replies

    def yes_probability(self, prompt: VisualPrompt, question: str):
        """1.0 or 0.0 from the pixels (a perfect model is certain)."""
        return 1.0 if any(self.shows(image) for image in prompt.images) else 0.0


class BoxOracle(DrawnBoxOracle):
    """A DrawnBoxOracle that also locates the box: asked "Where ...", "Locate ..." (the grounding prompt) or
    "Formula ..." (a reply a spreadsheet would run), it answers with the drawn box as Qwen2-VL writes one (a
    0-1000 grid), when a frame shows it; the temporal search's prompts it answers as DrawnBoxOracle. For the
    tests of the exports and the viewer, whose reading of the results is under test."""

    def __init__(
        self,
        box: tuple[int, int, int, int],
        color: tuple[int, int, int],
        size: tuple[int, int] = (160, 120),
        family: str = "qwen2-vl",
    ):
        super().__init__(box, color, family)
        self.size = size  # the frames' displayed size, to put the box on the grid
        self.reply_text: dict[str, str] = {}  # question prefix -> a fixed reply (hostile text, say)

    def answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        """The box where a frame shows it (see the class); the search's prompts as DrawnBoxOracle."""
        if not any(q.startswith(("Where", "Formula", "Locate", "Say")) for q in questions):
            return super().answer(prompt, questions, settings)
        seen = [self.shows(image) for image in prompt.images]
        x, y, w, h = self.box
        width, height = self.size
        grid = [round(1000 * v) for v in (x / width, y / height, (x + w) / width, (y + h) / height)]
        replies = []
        for question in questions:
            fixed = [text for prefix, text in self.reply_text.items() if question.startswith(prefix)]
            if fixed:
                text = fixed[0]
            elif question.startswith("Formula"):
                text = "=HYPERLINK(1)"
            elif any(seen):
                text = (
                    f"In frame {seen.index(True) + 1}: <|object_ref_start|>the box<|object_ref_end|>"
                    f"<|box_start|>({grid[0]},{grid[1]}),({grid[2]},{grid[3]})<|box_end|>"
                )
            else:
                text = "No box."
            replies.append(Reply(raw=text, text=text, prompt_tokens=1, completion_tokens=1))
        return replies
