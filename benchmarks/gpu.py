"""Benchmark: keyframe-qa on a GPU, against the floors the hardware sets.

    python3 benchmarks/gpu.py --out DIR            # on a GPU: the Qwen2-VL-2B architecture, random bf16 weights
    uv run python benchmarks/gpu.py --tiny --out DIR   # a dry run on CPU with the tiny checkpoint

What it measures, in one process (results are written to DIR/gpu.json after each part, so a part that
fails or runs out of time keeps what came before):
1. The ceilings of this device: a 1 GiB device-to-device copy (bytes read + written per second) and an
   8192^3 bf16 matrix product (FLOP/s), each the median of 10 after warm-up.
2. Warm `ask` latency, model loaded: 2 frames of a 720p clip, one question, 32 new tokens, split into
   frame decode, preprocessing (resize + processor), vision tower, prefill (language model over the
   prompt), and per-token decode; each against its floor:
   - decode: every step reads the language model's weights once (plus the KV cache) at copy bandwidth;
   - prefill and vision: their matrix FLOPs (2 x parameters x tokens, plus attention) at the bf16 rate.
3. `batch` throughput over 64 short clips at `--batch-size` 1, 4, 16 and 32: videos/s, generated tokens/s,
   peak GPU memory, and the decode roofline at that batch size (B tokens per weight read).
4. Options, kept or dropped on the numbers: a static KV cache with torch.compile for decode (timed, with
   a time limit); flash-attention 2 is used when installed (recorded).
The checkpoint is the real Qwen2-VL-2B architecture from its published config with random weights
(keyframe_qa.testing.tiny_model, architecture "2b"): nothing can be downloaded on the GPU machine, and random
weights cost the same time and memory as trained ones. Its replies are noise; greedy decoding of random
weights rarely meets an end token, so 32 tokens are 32 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

QUESTION = "Describe what happens in these frames."
NEW_TOKENS = 32


class Results:
    """The results so far, rewritten to disk after every part."""

    def __init__(self, path: str):
        self.path, self.data = path, {}

    def put(self, key: str, value) -> None:
        self.data[key] = value
        with open(self.path, "w") as handle:
            json.dump(self.data, handle, indent=2)
        print(f"== {key}: {json.dumps(value)[:600]}", flush=True)


def timed(function, repeat: int, sync) -> float:
    """Median seconds of `function` over `repeat` runs after one warm-up, synchronising the device."""
    function()
    sync()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ceilings(torch, device: str, tiny: bool) -> dict:
    """Copy bandwidth (bytes read + written per second) and bf16 matrix FLOP/s, measured here."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    size = (1 << 30) if not tiny else (1 << 24)
    source = torch.empty(size, dtype=torch.uint8, device=device).random_()
    target = torch.empty_like(source)
    copy_s = timed(lambda: target.copy_(source), 10, sync)
    n = 8192 if not tiny else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    matmul_s = timed(lambda: a @ b, 10, sync)
    return {"copy_bytes_per_s": 2 * size / copy_s, "bf16_flop_per_s": 2 * n**3 / matmul_s}


def make_clips(folder: str, count: int, tiny: bool) -> tuple[str, list[str]]:
    """A 720p clip for `ask`, and `count` short clips for `batch` (known content, generated here)."""
    from concurrent.futures import ThreadPoolExecutor

    from keyframe_qa.testing.synthetic import SyntheticSpec, write_video

    hd = os.path.join(folder, "hd.mp4")
    write_video(hd, SyntheticSpec(width=1280, height=720, frame_count=30, fps=10, gop=10))
    clips = [os.path.join(folder, f"clip{i:03d}.mp4") for i in range(count)]
    spec = SyntheticSpec(width=640, height=360, frame_count=20, fps=10, gop=10) if not tiny else SyntheticSpec()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda path: write_video(path, spec), clips))
    return hd, clips


def parameter_counts(model) -> dict:
    """Parameters of the language model's matrices (embedding and tied head apart) and of the vision tower."""
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    embedding = model.get_input_embeddings().weight.numel()
    language = sum(p.numel() for n, p in model.named_parameters() if ".visual." not in f".{n}")
    return {"vision": vision, "language": language, "embedding": embedding, "language_matrices": language - embedding}


def ask_split(torch, engine, hd: str, device: str, ceiling: dict, results: Results) -> None:
    """Warm `ask` latency and its parts, each against its floor."""
    from keyframe_qa import AskRequest, EngineSpec, SelectionRequest, ask, extract_frames
    from keyframe_qa.answering import AnswerOptions, plan
    from keyframe_qa.model.generation import GenerationRequest, resolve_generation
    from keyframe_qa.model.prompt import build_prompt

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    settings = resolve_generation(GenerationRequest(max_new_tokens=NEW_TOKENS), None)
    decode_s = timed(lambda: extract_frames(hd, [1.0, 2.0]), 5, lambda: None)
    frames = extract_frames(hd, [1.0, 2.0])
    options = AnswerOptions(generation=settings)
    budgets = plan(
        options,
        engine.checkpoint,
        [(f.width, f.height) for f in frames],
        questions=[QUESTION],
        times=[f.timestamp for f in frames],
    )
    prompt = build_prompt(frames, budgets, "images")

    def preprocess():
        return engine._encode_rows([(prompt, QUESTION, engine.model_inputs(prompt))])

    preprocess_s = timed(preprocess, 5, sync)
    inputs = preprocess()
    model = engine.model
    prompt_tokens = int(inputs["input_ids"].shape[1])
    visual = sum(b.visual_tokens for b in budgets)
    patches = int(inputs["image_grid_thw"].prod(dim=1).sum())
    with torch.inference_mode():
        vision_s = timed(lambda: model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]), 5, sync)
        forward_s = timed(lambda: model(**inputs, use_cache=True, logits_to_keep=1), 5, sync)

        def generate(tokens: int):
            config = engine._generation_config(settings)
            config.max_new_tokens = config.min_new_tokens = tokens
            return model.generate(**inputs, generation_config=config)

        one_s = timed(lambda: generate(1), 3, sync)
        many_s = timed(lambda: generate(NEW_TOKENS + 1), 3, sync)
    per_token_s = (many_s - one_s) / NEW_TOKENS
    answer_s = timed(lambda: engine.answer(prompt, [QUESTION], settings), 3, sync)
    request = AskRequest(
        video=hd,
        questions=(QUESTION,),
        selection=SelectionRequest(times=(1.0, 2.0)),
        generation=GenerationRequest(max_new_tokens=NEW_TOKENS),
        engine=EngineSpec(model_id=engine.model_id),
    )
    ask_s = timed(lambda: ask(request, engine=engine), 3, sync)

    counts = parameter_counts(model)
    config = model.config.text_config
    layers, hidden = config.num_hidden_layers, config.hidden_size
    kv_width = config.num_key_value_heads * (hidden // config.num_attention_heads)
    element = 2 if model.dtype in (torch.bfloat16, torch.float16) else 4
    # Decode: the language model's weights once per step (the tied head reads the embedding), plus the cache.
    kv_bytes = 2 * layers * kv_width * (prompt_tokens + NEW_TOKENS // 2) * element
    decode_floor = (counts["language"] * element + kv_bytes) / ceiling["copy_bytes_per_s"]
    # Prefill: matrices over every prompt token, causal attention, the head for one position.
    prefill_flops = (
        2 * counts["language_matrices"] * prompt_tokens
        + 2 * layers * prompt_tokens**2 * hidden
        + 2 * counts["embedding"]
    )
    vision_config = model.config.vision_config
    per_image = patches // len(frames)
    vision_flops = (
        2 * counts["vision"] * patches + 4 * vision_config.depth * len(frames) * per_image**2 * vision_config.embed_dim
    )
    prefill_s = max(forward_s - vision_s, 1e-9)
    split = {
        "frames": "2 x 720p",
        "prompt_tokens": prompt_tokens,
        "visual_tokens": visual,
        "vision_patches": patches,
        "new_tokens": NEW_TOKENS,
        "attention": model.config._attn_implementation,
        "decode_frames_s": decode_s,
        "preprocess_s": preprocess_s,
        "vision_s": vision_s,
        "prefill_s": prefill_s,
        "per_token_s": per_token_s,
        "engine_answer_s": answer_s,
        "warm_ask_s": ask_s,
        "floors": {
            "vision_s": vision_flops / ceiling["bf16_flop_per_s"],
            "prefill_s": prefill_flops / ceiling["bf16_flop_per_s"],
            "per_token_s": decode_floor,
        },
    }
    floor_total = split["floors"]["vision_s"] + split["floors"]["prefill_s"] + NEW_TOKENS * decode_floor
    split["floors"]["model_total_s"] = floor_total
    split["ratios"] = {
        "vision": vision_s / split["floors"]["vision_s"],
        "prefill": prefill_s / split["floors"]["prefill_s"],
        "per_token": per_token_s / decode_floor,
        "warm_ask_over_model_floor": ask_s / floor_total,
        "engine_answer_over_model_floor": answer_s / floor_total,
    }
    results.put("ask", split)


def batch_throughput(
    torch, engine, clips: list[str], sizes: list[int], device: str, ceiling: dict, results: Results, folder: str
) -> None:
    """batch over the clips at each batch size: videos/s, generated tokens/s, peak memory, roofline."""
    from keyframe_qa import AskRequest, EngineSpec, GenerationRequest, SelectionRequest
    from keyframe_qa.jobs.batch import run_batch
    from keyframe_qa.jobs.batch_inputs import BatchItem

    cuda = device.startswith("cuda")
    counts = parameter_counts(engine.model)
    element = 2 if engine.model.dtype in (torch.bfloat16, torch.float16) else 4
    step_floor = counts["language"] * element / ceiling["copy_bytes_per_s"]
    rows = []
    items = [BatchItem(video=clip) for clip in clips]
    template = AskRequest(
        video="",
        questions=(QUESTION,),
        generation=GenerationRequest(max_new_tokens=NEW_TOKENS),
        engine=EngineSpec(model_id=engine.model_id),
        selection=SelectionRequest(num_frames=2),
    )
    engine.batches = []
    for size in sizes:
        output = os.path.join(folder, f"batch{size}.jsonl")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        summary = run_batch(items, template, output, engine=engine, progress=False, batch_size=size)
        wall = time.perf_counter() - started
        with open(output) as handle:
            lines = [json.loads(line) for line in handle]
        generated = sum(r["usage"]["completion_tokens"] for r in lines if r["status"] == "ok")
        row = {
            "batch_size": size,
            "videos": summary.done,
            "failed": summary.failed,
            "wall_s": wall,
            "videos_per_s": summary.done / wall,
            "generated_tokens_per_s": generated / wall,
            "decode_roofline_tokens_per_s": size / step_floor,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "generate_calls": len(summary.batches) or summary.done,
        }
        row["tokens_per_s_over_roofline"] = row["generated_tokens_per_s"] / row["decode_roofline_tokens_per_s"]
        rows.append(row)
        results.put("batch", rows)


def static_cache_compile(torch, engine, hd: str, device: str, results: Results, limit_s: int) -> None:
    """Per-token decode with a static KV cache and torch.compile, against the dynamic cache (time-limited)."""
    from keyframe_qa import extract_frames
    from keyframe_qa.answering import AnswerOptions, plan
    from keyframe_qa.model.generation import GenerationRequest, resolve_generation
    from keyframe_qa.model.prompt import build_prompt

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    settings = resolve_generation(GenerationRequest(max_new_tokens=NEW_TOKENS), None)
    frames = extract_frames(hd, [1.0, 2.0])
    budgets = plan(AnswerOptions(generation=settings), engine.checkpoint, [(f.width, f.height) for f in frames])
    prompt = build_prompt(frames, budgets, "images")
    inputs = engine._encode_rows([(prompt, QUESTION, engine.model_inputs(prompt))])

    def per_token(**extra) -> float:
        def generate(tokens):
            config = engine._generation_config(settings)
            config.max_new_tokens = config.min_new_tokens = tokens
            for key, value in extra.items():
                setattr(config, key, value)
            return engine.model.generate(**inputs, generation_config=config)

        with torch.inference_mode():
            return (timed(lambda: generate(NEW_TOKENS + 1), 3, sync) - timed(lambda: generate(1), 3, sync)) / NEW_TOKENS

    record = {"dynamic_per_token_s": per_token()}
    results.put("static_cache_compile", record)

    def expire(*_):
        raise TimeoutError(f"over {limit_s}s")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit_s)
    started = time.perf_counter()
    try:
        record["static_compiled_per_token_s"] = per_token(cache_implementation="static")
        record["static_compiled_setup_s"] = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - an option that fails is recorded, not fatal
        record["static_compiled_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        signal.alarm(0)
    results.put("static_cache_compile", record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="kfqa-gpu-"))
    parser.add_argument("--tiny", action="store_true", help="CPU dry run: the tiny checkpoint, few clips")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,4,16,32")
    parser.add_argument("--model", default=None, help="a checkpoint folder (default: build one)")
    parser.add_argument("--compile-limit", type=int, default=150, help="seconds for the static-cache option")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: ask,batch,compile")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    import transformers

    from keyframe_qa import load_model
    from keyframe_qa.testing.tiny_model import build_tiny_checkpoint

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    results = Results(os.path.join(args.out, "gpu.json"))
    results.put(
        "environment",
        {
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cpus": os.cpu_count(),
        },
    )
    ceiling = ceilings(torch, device, args.tiny)
    results.put("ceilings", ceiling)
    work = tempfile.mkdtemp(prefix="kfqa-gpu-work-")
    started = time.perf_counter()
    model_path = args.model or os.path.join(work, "model")
    if not args.model:
        build_tiny_checkpoint(model_path, "qwen2-vl", architecture="tiny" if args.tiny else "2b", device=device)
    built_s = time.perf_counter() - started
    hd, clips = make_clips(work, args.clips, args.tiny)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    engine = load_model(model_path, device=device, dtype="bfloat16" if device == "cuda" else "float32")
    loaded = {
        "build_s": built_s,
        "load_s": time.perf_counter() - started,
        "parameters": parameter_counts(engine.model),
        "attention": engine.attention,
        "memory_after_load_gib": torch.cuda.memory_allocated() / 2**30 if device == "cuda" else None,
    }
    results.put("model", loaded)
    skip = set(filter(None, args.skip.split(",")))
    if "ask" not in skip:
        ask_split(torch, engine, hd, device, ceiling, results)
    if "batch" not in skip:
        sizes = [int(s) for s in args.batch_sizes.split(",")]
        batch_throughput(torch, engine, clips, sizes, device, ceiling, results, work)
    if "compile" not in skip:
        static_cache_compile(torch, engine, hd, device, results, args.compile_limit)
    print(f"results in {results.path}")


if __name__ == "__main__":
    main()
