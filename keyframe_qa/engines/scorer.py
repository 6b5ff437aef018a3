"""The relevance scorer: a CLIP or SigLIP checkpoint through transformers' own classes (AutoModel,
AutoProcessor), never the VLM. It embeds images and texts into one space; `--relevant` compares them.

One interface, small: `input_size` (what each candidate frame is shrunk to as it is decoded, so memory
stays flat), `embed_images`, `embed_texts` (L2-normalised float32 rows) and `describe`. A loaded scorer is
kept for the process, so a batch loads it once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import numpy as np

from ..errors import ModelError
from ..model.scorer_checkpoint import ScorerInfo, inspect_scorer
from .transformers import loading, resolve_device, resolve_dtype

BATCH = 32  # candidate images embedded per forward pass
_LOADED: dict = {}  # (model_id, device, dtype) -> ImageTextScorer: one load per process
_LOCK = threading.Lock()


class ImageTextScorer:
    """A loaded image-text embedding model and its processor."""

    def __init__(self, info: ScorerInfo, device: str = "auto", dtype: str = "auto"):
        started = time.perf_counter()
        self.info = info
        self.model_id = info.model_id
        self.device = resolve_device(device)
        # Half precision changes embeddings in the third decimal, enough to reorder close candidates; the
        # scorer is small, so it runs in float32 unless asked otherwise.
        self.torch_dtype = resolve_dtype("float32" if dtype == "auto" else dtype, self.device)
        self.processor, self.model = _load(info, self.torch_dtype, self.device)
        self.load_seconds = time.perf_counter() - started

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the processor feeds the vision tower: candidates are shrunk to it as they are decoded."""
        processor = self.processor.image_processor
        for size in (getattr(processor, "crop_size", None), getattr(processor, "size", None)):
            if isinstance(size, dict):
                if "height" in size and "width" in size:
                    return int(size["width"]), int(size["height"])
                if "shortest_edge" in size:
                    edge = int(size["shortest_edge"])
                    return edge, edge
        edge = int(self.model.config.vision_config.image_size)
        return edge, edge

    def describe(self) -> dict:
        """The JSON record of the scorer."""
        return {
            "id": self.model_id,
            "type": self.info.model_type,
            "device": self.device,
            "dtype": str(self.torch_dtype).replace("torch.", ""),
        }

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(len(images), dim) float32, each row of unit length."""
        import torch

        rows = []
        for start in range(0, len(images), BATCH):
            inputs = self.processor(images=list(images[start : start + BATCH]), return_tensors="pt")
            inputs = {
                key: value.to(self.device, self.torch_dtype) if value.is_floating_point() else value.to(self.device)
                for key, value in inputs.items()
            }
            with torch.inference_mode():
                rows.append(_features(self.model.get_image_features(**inputs)))
        return _unit(np.concatenate(rows) if rows else np.zeros((0, 0), np.float32))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length; texts longer than the text tower's window are cut."""
        import torch

        # SigLIP was trained on texts padded to its full length; CLIP pools at the end token, so padding is moot.
        padding = "max_length" if self.info.model_type == "siglip" else True
        inputs = self.processor(
            text=list(texts), return_tensors="pt", padding=padding, truncation=True, max_length=self._text_length()
        )
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        with torch.inference_mode():
            return _unit(_features(self.model.get_text_features(**inputs)))

    def _text_length(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)


def load_scorer(model_id: str, device: str = "auto", dtype: str = "auto") -> ImageTextScorer:
    """The scorer `model_id` on `device`, loaded once per process (a batch scores every video with one load)."""
    info = inspect_scorer(model_id)
    key = (model_id, device, dtype)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = ImageTextScorer(info, device, dtype)
        return _LOADED[key]


def _load(info: ScorerInfo, torch_dtype, device: str):
    from transformers import AutoModel, AutoProcessor

    path = os.path.expanduser(info.model_id) if info.source == "local" else info.model_id
    with loading(info.model_id, path, info.source, "--scorer"):
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
        model = AutoModel.from_pretrained(path, dtype=torch_dtype, trust_remote_code=False)
    if (
        not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features"))
        or getattr(processor, "image_processor", None) is None
        or getattr(processor, "tokenizer", None) is None
    ):
        raise ModelError(f"{info.model_id} has no image and text towers with a processor for both")
    return processor, model.to(device).eval()


def _features(output) -> np.ndarray:
    """The projected embeddings: transformers 5 returns them as the output's pooler_output."""
    tensor = getattr(output, "pooler_output", output)
    return tensor.float().cpu().numpy()


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    if rows.size == 0:
        return rows
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)
