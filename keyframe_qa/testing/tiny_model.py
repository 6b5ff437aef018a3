"""Build a tiny, randomly initialised Qwen-VL checkpoint on disk, for tests and benchmarks.

The checkpoint is a real one in every way that matters to the loading and prompting code: a
config of the real architecture (just very small), weights saved with `save_pretrained`, a
byte-level BPE tokenizer trained here with Qwen's special tokens, a chat template, and the
family's image and video processors. It loads through the same `from_pretrained` path as
`Qwen/Qwen2-VL-2B-Instruct`. Its answers are noise; its token counts and grids are real.
Nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import Optional

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# ChatML as the Qwen-VL checkpoints use it: each image or video is a vision_start/pad/vision_end
# run that the processor expands to the right number of pad tokens.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{%- endif -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif item['type'] == 'video' -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)

_CORPUS = [
    "Is it the same person in both frames? Yes, it is the same person.",
    "What colour is the car? The car is red. Where is it? Top left of the frame.",
    "Describe the scene. A rabbit sits in a green meadow under a blue sky.",
    "How many people are there? There are two people walking on the street.",
    "Frame 1 at 0:00:05.500 and frame 2 at 0:00:10.000 show a road with bikes.",
    "Locate every instance of the object. Report bbox coordinates in JSON format.",
    '[{"bbox_2d": [12, 34, 560, 780], "label": "car"}] (100,200),(300,400)',
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,:;!?()[]{}\"'-_/",
]

FAMILY_MODEL_TYPES = {"qwen2-vl": "qwen2_vl", "qwen2.5-vl": "qwen2_5_vl", "qwen3-vl": "qwen3_vl"}


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer with Qwen's special tokens, trained on a small corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )


def build_tiny_checkpoint(
    path: str,
    family: str = "qwen2-vl",
    seed: int = 0,
    *,
    architecture: str = "tiny",
    device: str = "cpu",
    layers: Optional[int] = None,
    end_token: bool = True,
) -> str:
    """Write a random checkpoint of `family` to `path` and return the path.

    `architecture="vllm"` (qwen2-vl and qwen2.5-vl) is the tiny one with attention heads of 32 (vLLM's CPU
    attention takes head_dim 32 and up; the tiny one's are 16) and its multimodal RoPE sections to match.
    `architecture="2b"` (qwen2-vl only) builds the real Qwen2-VL-2B architecture (its published config:
    a 1.5B language model, a 675M vision tower) in bfloat16, with the same small tokenizer: random weights
    of the real size, to measure speed and memory honestly where no weights can be downloaded. `device`
    is where the weights are drawn (a GPU draws 2B of them in seconds). `layers` overrides the language
    model's depth; without `end_token` generation never stops early (every reply is max_new_tokens long)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    if family not in FAMILY_MODEL_TYPES:
        raise ValueError(f"unknown family {family!r}")
    if (
        architecture not in ("tiny", "vllm", "2b")
        or (architecture == "2b" and family != "qwen2-vl")
        or (architecture == "vllm" and family == "qwen3-vl")
    ):
        raise ValueError(f"no {architecture!r} architecture for {family}")
    os.makedirs(path, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    kwargs = (
        _qwen2_vl_2b_kwargs(ids)
        if architecture == "2b"
        else _config_kwargs(family, tokenizer, ids, head_dim=32 if architecture == "vllm" else 16)
    )
    if layers is not None:
        kwargs["text_config"]["num_hidden_layers"] = layers
    config = AutoConfig.for_model(FAMILY_MODEL_TYPES[family], **kwargs)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            config, **({"dtype": torch.bfloat16} if architecture == "2b" else {})
        )
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]] if end_token else None
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    model.save_pretrained(path)
    _processor(family, tokenizer).save_pretrained(path)
    return path


def _config_kwargs(family: str, tokenizer, ids: dict, head_dim: int = 16) -> dict:
    heads = 2
    hidden = heads * head_dim
    # Multimodal RoPE splits head_dim/2 frequencies over (time, height, width): [2, 3, 3] of 8, [4, 6, 6] of 16.
    mrope = [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": 1,
        "max_position_embeddings": 32768,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        # Multimodal RoPE splits head_dim/2 frequencies over (time, height, width).
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
    }
    if family == "qwen2-vl":
        vision = {
            "depth": 1,
            "embed_dim": hidden,
            "hidden_size": hidden,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
    elif family == "qwen2.5-vl":
        vision = {
            "depth": 2,
            "hidden_size": hidden,
            "out_hidden_size": hidden,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        }
    else:
        text["head_dim"] = head_dim
        text["rope_parameters"]["mrope_interleaved"] = True
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "out_hidden_size": hidden,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        }
    return {
        "text_config": text,
        "vision_config": vision,
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _qwen2_vl_2b_kwargs(ids: dict) -> dict:
    """Qwen/Qwen2-VL-2B-Instruct's published architecture (its config.json), with this tokenizer's ids."""
    text = {
        "vocab_size": 151936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    }
    vision = {
        "depth": 32,
        "embed_dim": 1280,
        "hidden_size": 1536,
        "num_heads": 16,
        "mlp_ratio": 4,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    return {
        "text_config": text,
        "vision_config": vision,
        "tie_word_embeddings": True,
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _processor(family: str, tokenizer):
    if family == "qwen3-vl":
        from transformers import Qwen2VLImageProcessor as ImageProcessor
        from transformers import Qwen3VLProcessor as Processor
        from transformers import Qwen3VLVideoProcessor as VideoProcessor

        image_processor = ImageProcessor(
            patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
        )
    else:
        from transformers import Qwen2VLImageProcessor as ImageProcessor
        from transformers import Qwen2VLVideoProcessor as VideoProcessor

        if family == "qwen2.5-vl":
            from transformers import Qwen2_5_VLProcessor as Processor
        else:
            from transformers import Qwen2VLProcessor as Processor
        image_processor = ImageProcessor()
    return Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=VideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
