"""Random CLIP and SigLIP checkpoints built locally, for the relevance scorer's tests and benchmarks.

They are saved and loaded like a downloaded one (`from_pretrained` through AutoModel and AutoProcessor), so
the real embedding path runs: both towers, the processor, the cache, the device. `architecture="base"`
builds the published base sizes (CLIP ViT-B/32: 12 layers of 768 at 224 px in 32 px patches; SigLIP
base-patch16-224: 12 layers of 768 in 16 px patches) with random weights, to measure speed honestly where
nothing can be downloaded. The tokenizer is the tiny Qwen one (tiny_model.py): only the text table's size
differs from the real checkpoints.
"""

from __future__ import annotations

import os

from .tiny_model import build_tokenizer

SCORER_KINDS = ("clip", "siglip")


def build_tiny_scorer(path: str, kind: str = "siglip", seed: int = 0, *, architecture: str = "tiny") -> str:
    """Write a random `kind` checkpoint (with its processor) to `path` and return the path."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        SiglipProcessor,
    )

    if kind not in SCORER_KINDS or architecture not in ("tiny", "base"):
        raise ValueError(f"no {architecture!r} {kind!r} scorer")
    os.makedirs(path, exist_ok=True)
    tokenizer = build_tokenizer()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    tiny = architecture == "tiny"
    text = {"vocab_size": len(tokenizer), "bos_token_id": pad, "eos_token_id": end, "pad_token_id": pad}
    vision = {}
    if tiny:
        text.update(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64
        )
        vision.update(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    if kind == "clip":
        projection = 16 if tiny else 512
        config = CLIPConfig(
            text_config={**text, "projection_dim": projection},
            vision_config={**vision, "projection_dim": projection},
            projection_dim=projection,
        )
        edge = config.vision_config.image_size
        image_processor = CLIPImageProcessor(size={"shortest_edge": edge}, crop_size={"height": edge, "width": edge})
        model_class, processor_class = CLIPModel, CLIPProcessor
    else:
        config = SiglipConfig(text_config=text, vision_config=vision)
        edge = config.vision_config.image_size
        image_processor = SiglipImageProcessor(size={"height": edge, "width": edge})
        model_class, processor_class = SiglipModel, SiglipProcessor
    torch.manual_seed(seed)
    model = model_class(config)
    model.save_pretrained(path)
    processor_class(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path
