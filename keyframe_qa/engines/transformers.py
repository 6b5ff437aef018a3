"""The transformers engine: a Qwen-VL checkpoint loaded in this process, answering about frames.

This is the only module that imports torch and transformers. Frames arrive already resized to
the display frames and resizes each to the size `budget.plan_budget` chose, with the processor's own
resize (torchvision, its `resample` filter, antialiased), so the pixels equal what the processor would
make itself. The processor is then told not to resize again (`do_resize=False`), so the grid the model
sees is exactly the one reported; the processor's `*_grid_thw` is checked against it for every call.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import importlib.util
import json
import os
import struct
import sys
import time
from collections.abc import Sequence
from typing import Optional

import numpy as np

from ..console import counted, is_terminal
from ..errors import ModelError, OutOfMemory, UsageError
from ..model.budget import check_context
from ..model.checkpoint import CheckpointInfo, checkpoint_files, inspect_checkpoint, missing_model_message
from ..model.families import Family
from ..model.prompt import prompt_parts
from ..model.time_positions import video_metadata
from ..records import GenerationSettings, Reply, VisualPrompt
from .resize import resize_like_processor


def resolve_device(device: str) -> str:
    """'auto' picks CUDA when torch sees a GPU, else CPU; explicit choices are checked."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device} asked for, but torch sees no CUDA GPU (use --device cpu)")
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: only {counted(torch.cuda.device_count(), 'CUDA device')} present")
        return device if ":" in device else "cuda:0"
    if device == "cpu":
        return "cpu"
    raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def resolve_dtype(dtype: str, device: str):
    """'auto' picks bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU."""
    import torch

    names = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in names:
        raise UsageError(f"unknown dtype {dtype!r}: use auto, bfloat16, float16 or float32")
    return names[dtype]


def attention_implementation(device: str, torch_dtype) -> str:
    """flash-attention 2 when it is installed and can run here, else PyTorch SDPA."""
    import torch

    half = torch_dtype in (torch.float16, torch.bfloat16)
    if device.startswith("cuda") and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


class QwenVLModel:
    """A loaded Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint with its processor."""

    def __init__(
        self,
        model_id: Optional[str] = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        checkpoint: Optional[CheckpointInfo] = None,
    ):
        started = time.perf_counter()
        checkpoint = checkpoint or inspect_checkpoint(model_id)
        self.model_id = checkpoint.model_id
        self.family: Family = checkpoint.family
        self.checkpoint = checkpoint
        self.context_length = checkpoint.context_length
        self.device = resolve_device(device)
        self.torch_dtype = resolve_dtype(dtype, self.device)
        self.attention = attention_implementation(self.device, self.torch_dtype)
        self.processor, self.model = _load(
            self.model_id, checkpoint.source, self.torch_dtype, self.attention, self.device
        )
        self.tokenizer = self.processor.tokenizer
        self.load_seconds = time.perf_counter() - started

    name = "transformers"
    can_batch = True

    @classmethod
    def build(cls, spec, checkpoint: CheckpointInfo) -> QwenVLModel:
        """The engine for a resolved EngineSpec (the registry's entry point)."""
        return cls(spec.model_id, device=spec.device, dtype=spec.dtype, checkpoint=checkpoint)

    def describe(self) -> dict:
        """The JSON `model` object's engine part."""
        return {
            "id": self.model_id,
            "family": self.family.name,
            "device": self.device,
            "dtype": self.dtype_name,
            "engine": self.name,
        }

    @property
    def dtype_name(self) -> str:
        return str(self.torch_dtype).replace("torch.", "")

    def answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        """Answer each question about the same frames; the visual part is encoded once.

        The frames come first in the user turn and each question after them, so every prompt
        shares one prefix. That prefix (vision encoder and the language model over the visual
        tokens) is computed once and its key/value cache reused for each question.
        """
        with self._out_of_memory_as_error():
            return self._answer(prompt, questions, settings)

    def _answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        import torch

        max_new_tokens = settings.max_new_tokens
        if max_new_tokens <= 0:
            raise UsageError("--max-new-tokens must be positive")
        pixels = self.model_inputs(prompt)
        encoded = [self._encode(prompt, pixels, question) for question in questions]
        for inputs in encoded:
            # Exact, from the tokenised prompt; the pipeline's earlier check is a lower bound.
            check_context(int(inputs["input_ids"].shape[1]), max_new_tokens, self.context_length, exact=True)
        prefix_length = _shared_prefix_length(encoded, self.model.config.vision_end_token_id)
        cache = None
        if len(encoded) > 1 and prefix_length:
            cache = self._prefill(encoded[0], prefix_length)
        replies = []
        with torch.inference_mode():
            for inputs in encoded:
                if cache is None:
                    replies.append(self._generate(inputs, settings))
                    continue
                # Each question extends its own copy of the prefix cache.
                prefix_cache, rope_deltas = cache
                self._set_rope_deltas(rope_deltas)
                replies.append(self._generate(inputs, settings, copy.deepcopy(prefix_cache)))
        return replies

    def yes_probability(self, prompt: VisualPrompt, question: str) -> Optional[float]:
        """P(yes) / (P(yes) + P(no)) from the first reply token's logits: one forward pass, no generation."""
        with self._out_of_memory_as_error():
            import torch

            yes, no = self._answer_tokens()
            if not yes or not no:
                return None
            inputs = self._encode(prompt, self.model_inputs(prompt), question)
            check_context(int(inputs["input_ids"].shape[1]), 1, self.context_length, exact=True)
            with torch.inference_mode():
                logits = self.model(**inputs, logits_to_keep=1).logits[0, -1].float()
            probabilities = logits.softmax(-1)
            p_yes, p_no = float(probabilities[yes].sum()), float(probabilities[no].sum())
            return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else None

    def _answer_tokens(self) -> tuple[list[int], list[int]]:
        """The first token ids of the ways a reply starts "yes" and "no" (each kept only if the other lacks it)."""
        if getattr(self, "_yes_no", None) is None:
            firsts = {}
            for word in ("yes", "no"):
                ids = set()
                for variant in (word, word.capitalize(), word.upper(), " " + word, " " + word.capitalize()):
                    encoded = self.tokenizer.encode(variant, add_special_tokens=False)
                    if encoded:
                        ids.add(encoded[0])
                firsts[word] = ids
            shared = firsts["yes"] & firsts["no"]
            self._yes_no = (sorted(firsts["yes"] - shared), sorted(firsts["no"] - shared))
        return self._yes_no

    def answer_batch(
        self, calls: Sequence[tuple[VisualPrompt, Sequence[str]]], settings: GenerationSettings
    ) -> list[list[Reply]]:
        """Every question of every call as one row of one `generate` call; the replies per call.

        Rows are left-padded to the longest, with frames of any size (each image keeps its own grid).
        Greedy rows give the replies `answer` gives one at a time. Each row carries its frames itself:
        the shared-prefix cache of `answer` is for one call's questions at a time, not for a batch.
        """
        with self._out_of_memory_as_error():
            return self._answer_batch(calls, settings)

    def _answer_batch(self, calls, settings: GenerationSettings) -> list[list[Reply]]:
        import torch

        if settings.max_new_tokens <= 0:
            raise UsageError("--max-new-tokens must be positive")
        modes = {prompt.mode for prompt, _ in calls}
        if len(modes) != 1:
            raise ModelError("one batch cannot mix images and video prompts")
        rows = [
            (prompt, question, pixels)
            for prompt, questions in calls
            for pixels in [self.model_inputs(prompt)]
            for question in questions
        ]
        inputs = self._encode_rows(rows)
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        for length in lengths:
            check_context(int(length), settings.max_new_tokens, self.context_length, exact=True)
        config = self._generation_config(settings)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=config)
        width = inputs["input_ids"].shape[1]
        eos = _eos_ids(config)
        replies = []
        for row, length in zip(output[:, width:].tolist(), lengths):
            # A row that ended early is padded after its end-of-sequence token: cut there, keeping it.
            end = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
            replies.append(self._reply(row[:end], int(length), settings, eos))
        grouped, start = [], 0
        for _, questions in calls:
            grouped.append(replies[start : start + len(questions)])
            start += len(questions)
        return grouped

    def _encode_rows(self, rows: list):
        """One processor call for (prompt, question, pixels) rows, left-padded; grids checked per row."""
        texts, images, videos, metadata = [], [], [], []
        for prompt, question, pixels in rows:
            messages = [{"role": "user", "content": _content(prompt, question)}]
            texts.append(self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            if prompt.mode == "video":
                videos.append(np.stack(pixels))
                metadata.append(_video_metadata(prompt, pixels))
            else:
                images.extend(pixels)
        # Left padding (a single row has none): every row's last prompt token sits at the end, where
        # generation continues.
        kwargs = {
            "text": texts,
            "return_tensors": "pt",
            "do_resize": False,
            "padding": True,
            "padding_side": "left",
            "size": self._size_for(
                [budget for prompt, _, _ in rows for budget in prompt.budgets], "video" if videos else "images"
            ),
        }
        if videos:
            kwargs.update(videos=videos, video_metadata=metadata, do_sample_frames=False)
        else:
            kwargs["images"] = images
        try:
            inputs = self.processor(**kwargs)
        except (ValueError, TypeError) as exc:
            raise ModelError(f"the processor of {self.model_id} rejected the frames: {exc}") from exc
        key = "video_grid_thw" if videos else "image_grid_thw"
        grids = inputs[key].tolist()
        start = 0
        for prompt, _, _ in rows:
            count = 1 if prompt.mode == "video" else len(prompt.images)
            _check_grid(grids[start : start + count], prompt, self.family)
            start += count
        return inputs.to(self.model.device)

    def _size_for(self, budgets, mode: str) -> dict:
        """The processor's `size` for these frames: its own limits, widened to take every planned frame, so
        a --max-pixels above the checkpoint's limit is honoured, and said to the processor, in process."""
        low, high = self.checkpoint.limits.pixels(mode)
        areas = [b.input_width * b.input_height for b in budgets]
        low = min([low] + areas) if low is not None else min(areas)
        high = max([high] + areas) if high is not None else max(areas)
        return {"shortest_edge": low, "longest_edge": high}

    @contextlib.contextmanager
    def _out_of_memory_as_error(self):
        """The accelerator's out-of-memory error as our OutOfMemory, with the allocator's cache emptied so
        a smaller retry starts from a clean slate."""
        import torch

        try:
            yield
        except torch.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            first_line = (str(exc).strip().splitlines() or ["out of memory"])[0]
            raise OutOfMemory(
                f"the GPU ran out of memory ({first_line[:160]}): lower --max-visual-tokens or --max-pixels"
            ) from exc

    def model_inputs(self, prompt: VisualPrompt) -> list:
        """Each frame resized to its budget the way this model's processor resizes (uint8 RGB arrays).

        The processor resizes with torchvision on uint8 tensors, antialiased, with its `resample`
        filter (bicubic for the Qwen-VL families); doing the same here makes `pixel_values` equal to
        the processor's own path, while the size stays the one the budget chose.
        """
        source = getattr(self.processor, "video_processor", None) if prompt.mode == "video" else None
        resample = getattr(source or self.processor.image_processor, "resample", None)
        return [
            resize_like_processor(image, budget.input_width, budget.input_height, resample)
            for image, budget in zip(prompt.images, prompt.budgets)
        ]

    def _encode(self, prompt: VisualPrompt, pixels: list, question: str):
        return self._encode_rows([(prompt, question, pixels)])

    def _prefill(self, inputs, prefix_length: int):
        """Run the shared prefix (all frames) once; returns its key/value cache."""
        import torch

        prefix = dict(inputs)
        prefix["input_ids"] = inputs["input_ids"][:, :prefix_length]
        prefix["attention_mask"] = inputs["attention_mask"][:, :prefix_length]
        if "mm_token_type_ids" in prefix:
            prefix["mm_token_type_ids"] = inputs["mm_token_type_ids"][:, :prefix_length]
        with torch.inference_mode():
            # Only the cache is wanted: skip the vocabulary projection of every prefix position.
            output = self.model(**prefix, use_cache=True, logits_to_keep=1)
        # The multimodal RoPE offset of the prefix: text after the frames continues from it.
        return output.past_key_values, getattr(self.model.model, "rope_deltas", None)

    def _set_rope_deltas(self, rope_deltas) -> None:
        if rope_deltas is not None and hasattr(self.model.model, "rope_deltas"):
            self.model.model.rope_deltas = rope_deltas

    def _generation_config(self, settings: GenerationSettings):
        """The checkpoint's generation config (its token ids) with our decoding settings on top."""
        config = copy.deepcopy(self.model.generation_config)
        config.max_new_tokens = settings.max_new_tokens
        config.do_sample = settings.do_sample
        # Greedy ignores these; clearing them keeps the checkpoint's sampling values from being applied
        # or warned about.
        config.temperature = settings.temperature if settings.do_sample else None
        config.top_p = settings.top_p if settings.do_sample else None
        config.top_k = settings.top_k if settings.do_sample else None
        config.repetition_penalty = settings.repetition_penalty
        return config

    def _generate(self, inputs, settings: GenerationSettings, past=None) -> Reply:
        import torch

        generate_kwargs = dict(inputs)
        if past is not None:
            generate_kwargs["past_key_values"] = past
            # The pixels are already in the cache; the grids stay for the position computation.
            generate_kwargs.pop("pixel_values", None)
            generate_kwargs.pop("pixel_values_videos", None)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)  # per question: its sampled answer does not depend on the others
        config = self._generation_config(settings)
        output = self.model.generate(**generate_kwargs, generation_config=config)
        prompt_length = inputs["input_ids"].shape[1]
        return self._reply(output[0, prompt_length:].tolist(), int(prompt_length), settings, _eos_ids(config))

    def _reply(self, new_ids: list, prompt_length: int, settings: GenerationSettings, eos: set) -> Reply:
        """A reply from the tokens generated after a prompt of `prompt_length` tokens."""
        raw = self.tokenizer.decode(new_ids, skip_special_tokens=False)
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        ended = bool(new_ids) and new_ids[-1] in eos
        truncated = len(new_ids) >= settings.max_new_tokens and not ended
        return Reply(
            raw=raw, text=text, prompt_tokens=prompt_length, completion_tokens=len(new_ids), truncated=truncated
        )


def _content(prompt: VisualPrompt, question: str) -> list:
    """The user turn in the processor's message format (see model/prompt.py)."""
    return [
        {"type": "text", "text": value} if kind == "text" else {"type": kind}
        for kind, value in prompt_parts(prompt, question)
    ]


def _eos_ids(config) -> set:
    ids = config.eos_token_id
    if ids is None:
        return set()
    return set(ids) if isinstance(ids, (list, tuple)) else {ids}


def _video_metadata(prompt: VisualPrompt, pixels: list):
    """Tell the processor when the frames we pass were taken (time_positions.video_metadata: the same
    values the server engine sends vLLM). Without it Qwen2.5-VL assumes 24 fps for its seconds per
    temporal patch, and Qwen3-VL prints times that are not the frames' own."""
    from transformers.video_utils import VideoMetadata

    height, width = pixels[0].shape[:2]
    return VideoMetadata(width=width, height=height, **video_metadata(prompt.times))


def _check_grid(grids: list, prompt: VisualPrompt, family: Family) -> None:
    """The processor's grids for this prompt must be the sizes we chose: what we report is what the model saw."""
    merge = family.merge_size * family.merge_size
    if prompt.mode == "video":
        t, h, w = grids[0]
        budget = prompt.budgets[0]
        expected = (budget.input_height // family.patch_size, budget.input_width // family.patch_size)
        tokens = t * h * w // merge
        if (h, w) != expected or tokens != sum(b.visual_tokens for b in prompt.budgets):
            raise ModelError(f"processor grid {grids[0]} differs from the planned {expected} ({tokens} tokens)")
        return
    for (t, h, w), budget in zip(grids, prompt.budgets):
        expected = (budget.input_height // family.patch_size, budget.input_width // family.patch_size)
        if (t, h, w) != (1, *expected) or h * w // merge != budget.visual_tokens:
            raise ModelError(f"processor grid {(t, h, w)} differs from the planned (1, {expected[0]}, {expected[1]})")


def _shared_prefix_length(encoded: list, vision_end_id: Optional[int]) -> int:
    """Tokens every prompt shares, ending right after the last frame's vision_end token."""
    first = encoded[0]["input_ids"][0].tolist()
    ends = [i for i, token in enumerate(first) if token == vision_end_id]
    if not ends:
        return 0
    length = ends[-1] + 1
    for other in encoded[1:]:
        if other["input_ids"][0, :length].tolist() != first[:length]:
            return 0
    # The question itself must remain to be generated from: keep at least one token uncached.
    return length if length < min(e["input_ids"].shape[1] for e in encoded) else 0


@contextlib.contextmanager
def _bars_on_terminals_only():
    """transformers' "Loading weights" bar only when stderr is a terminal: redrawn into a log file or a
    pipe it is noise (the project's rule for every bar). Its setting is put back afterwards."""

    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    if enabled and not is_terminal(sys.stderr):
        transformers_logging.disable_progress_bar()
        try:
            yield
        finally:
            transformers_logging.enable_progress_bar()
    else:
        yield


def damaged_weights(path: str, source: str) -> Optional[str]:
    """A message naming the checkpoint's first truncated or damaged .safetensors file, or None.

    A safetensors file is an 8-byte header length, a JSON header giving each tensor's byte range, then
    the data: a file shorter than its header says was cut off (an interrupted download or copy)."""

    if source == "local":
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    else:
        index = checkpoint_files(path, ("model.safetensors.index.json", "model.safetensors"))
        files = [index["model.safetensors"]] if "model.safetensors" in index else []
        if "model.safetensors.index.json" in index:
            folder = os.path.dirname(index["model.safetensors.index.json"])
            files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    for name in files:
        try:
            size = os.path.getsize(name)
            with open(name, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > min(size, 100 * 1024 * 1024):
                    raise ValueError("its header is longer than the file")
                header = json.loads(handle.read(length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
            if 8 + length + end > size:
                raise ValueError(f"it has {size} bytes where its header needs {8 + length + end}")
        except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
            return f"the weights file {name} is damaged or truncated ({exc}); download or copy the checkpoint again"
    return None


@contextlib.contextmanager
def loading(model_id: str, path: str, source: str, flag: str = "--model"):
    """Loading a checkpoint with `from_pretrained` (progress bars on terminals only); what it raises becomes
    one ModelError: damaged weights, a hub id not to be had (the missing-model error for `flag`), or why the
    folder would not load."""
    try:
        with _bars_on_terminals_only():
            yield
    except (OSError, ValueError) as exc:
        damaged = damaged_weights(path, source)
        if damaged:
            raise ModelError(damaged) from exc
        if source == "hub":
            raise ModelError(missing_model_message(model_id, flag)) from exc
        raise ModelError(f"cannot load the checkpoint in {model_id}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own type for a damaged file
        reason = damaged_weights(path, source) or f"cannot load the weights of {model_id}: {type(exc).__name__}: {exc}"
        raise ModelError(reason) from exc


def _load(model_id: str, source: str, torch_dtype, attention: str, device: str):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = os.path.expanduser(model_id) if source == "local" else model_id
    with loading(model_id, path, source):
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=torch_dtype, attn_implementation=attention, trust_remote_code=False
        )
    if getattr(processor, "tokenizer", None) is None or getattr(processor, "chat_template", None) is None:
        raise ModelError(f"{model_id} has no processor with a chat template: use an -Instruct checkpoint")
    return processor, model.to(device).eval()  # type: ignore[arg-type]  # to() is typed through a decorator
