"""`--relevant N`: the N frames that matter for the question, still covering the video.

1. Candidates (`--candidates`): the keyframes (I-frames, one decode each) or a rate in frames a second
   (exact frames from the index, BOLT's 1 fps by default). Each is shrunk to the scorer's input size as
   it is decoded and embedded in batches, so memory stays flat in the video's length.
2. The embeddings are cached per video (path, size, modification time), scorer (its config and weight
   files) and candidate set, in the user cache folder, through files/cache.py (safe on a shared machine).
   A second question about the same video costs one text embedding and the selection.
3. Each candidate's score is its cosine similarity to the nearest query (the questions and the --find
   target, or `frames --query`); relevance.py chooses N (BOLT's inverse-transform sampling with a share
   of coverage).
The scorer is loaded only here (engines/scorer.py), never for the other ways of choosing frames.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from dataclasses import replace
from typing import Optional

import numpy as np

from ..errors import ModelError, UsageError, VideoError
from ..files import cache
from ..options import word_or_positive
from ..video.frames import iter_frames
from ..video.probe import ProbedVideo
from .relevance import COVERAGE, POWER, normalized, select_relevant

CURVE_POINTS = 600  # the relevance curve in the JSON (and the HTML page): at most this many points
KEYFRAMES = "keyframes"


# Candidates decoded before they are embedded together: bounds the pictures held (the scorer's own batch).
EMBED_BATCH = 32


def check_candidates(text: str) -> Optional[float]:
    """None for keyframes, else the rate in frames a second (a usage error for anything else)."""
    return word_or_positive("candidates", text, KEYFRAMES, "a rate in frames a second")


def candidate_numbers(video: ProbedVideo, text: str) -> list[int]:
    """The frame numbers `--candidates` names: every keyframe, or the frames on screen at a fixed rate."""
    rate = check_candidates(text)
    index = video.index
    count = video.frame_count
    if rate is None:
        keys = np.sort(index.pts[index.keyframe])
        numbers = np.searchsorted(index.display_pts, keys)
        return sorted({int(n) for n in numbers if 0 <= n < count})
    fps = video.info.fps
    if fps and rate > fps * (1 + 1e-9):
        # As --fps: a rate above the video's is no more frames, only more work (once duration x rate steps).
        raise UsageError(
            f"--candidates {text} is above the frame rate of {video.info.path} ({fps:.6g} fps): use "
            f"--candidates {fps:.6g} or less (every frame)"
        )
    last = video.frame_time(count - 1)
    steps = int(math.floor(last * rate + 1e-9))
    return sorted({min(count - 1, index.frame_number_at(k / rate)) for k in range(steps + 1)})


def relevant_candidates(video: ProbedVideo, request) -> list[int]:
    """The candidates' frame numbers, refusing (before the scorer loads or a frame is decoded) more frames
    than there are candidates."""
    numbers = candidate_numbers(video, request.candidates)
    if request.relevant > len(numbers):
        raise UsageError(
            f"--relevant {request.relevant} is more than the {len(numbers)} candidate frames of "
            f"{video.info.path} (--candidates {request.candidates}): choose {len(numbers)} or fewer, "
            f"or more candidates (a higher rate)"
        )
    return numbers


def relevant_selection(video: ProbedVideo, request, numbers: list[int], scorer) -> tuple[list[int], list[float], dict]:
    """(chosen frame numbers, their relevance in [0, 1], the JSON `selection` record) for a SelectionRequest
    with `relevant` set: the candidates `numbers` scored by `scorer` (engines/scorer.py)."""
    wanted = request.relevant
    embeddings, state = _embeddings(video, numbers, scorer, request)
    queries = scorer.embed_texts(list(request.queries))
    _check_finite(embeddings, "candidate frames", scorer)
    _check_finite(queries, "questions", scorer)
    similarity = (embeddings @ queries.T).max(axis=1)
    chosen = select_relevant(similarity, wanted)
    relevance = normalized(similarity)
    record = {
        "method": "relevant",
        "relevant": wanted,
        "scorer": scorer.describe(),
        "candidates": request.candidates,
        "scored": len(numbers),
        "cache": state,
        "queries": list(request.queries),
        "sampling": "BOLT inverse-transform sampling",
        "power": POWER,
        "coverage": round(COVERAGE, 6),
        "similarity": [round(float(similarity.min()), 6), round(float(similarity.max()), 6)],
        "curve": _curve(video, numbers, relevance),
    }
    return [numbers[i] for i in chosen], [round(float(relevance[i]), 6) for i in chosen], record


def _check_finite(rows: np.ndarray, what: str, scorer) -> None:
    """A scorer whose embeddings are NaN or infinite ranks nothing: every frame would get relevance 1.0 (and
    NaN would reach the JSON). Said here, with what to do."""
    bad = int((~np.isfinite(rows).all(axis=1)).sum()) if rows.size else 0
    if bad:
        raise ModelError(
            f"the scorer {scorer.model_id} gave embeddings that are not numbers (NaN or infinite) for "
            f"{bad} of {len(rows)} {what}: its weights are damaged or overflow in this dtype; try "
            f"--device cpu (float32) or another --scorer"
        )


def _curve(video: ProbedVideo, numbers: list[int], relevance: np.ndarray) -> list[list[float]]:
    """[[time, relevance], ...], at most CURVE_POINTS: each point the highest relevance of its stretch (a peak
    is never averaged away)."""
    groups = np.array_split(np.arange(len(numbers)), min(CURVE_POINTS, len(numbers)))
    points = []
    for group in groups:
        best = int(group[np.argmax(relevance[group])])
        points.append([video.frame_time(numbers[best]), round(float(relevance[best]), 4)])
    return points


def _embeddings(video: ProbedVideo, numbers: list[int], scorer, request) -> tuple[np.ndarray, str]:
    """The candidates' embeddings and where they came from: "hit", "miss" (computed and stored) or "off"."""
    key = _cache_key(video.info.path, scorer, request.candidates)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40] + ".json"
    if request.use_cache:
        found = cache.read_entry("relevance", name, key, lambda payload: _checked(payload, numbers))
        if found is not None:
            return found, "hit"
    embeddings = _embed(video, numbers, scorer)
    if request.use_cache:
        half = embeddings.astype(np.float16)
        cache.write_entry(
            "relevance",
            name,
            key,
            {
                "numbers": numbers,
                "dim": int(embeddings.shape[1]),
                "embeddings": base64.b64encode(half.tobytes()).decode("ascii"),
            },
        )
        return half.astype(np.float32), "miss"  # what a hit will give: the same choice either way
    return embeddings, "off"


def _embed(video: ProbedVideo, numbers: list[int], scorer) -> np.ndarray:
    """Decode the candidates, each shrunk to the scorer's input as it comes, and embed them in batches."""
    width, height = scorer.input_size
    edge = max(width, height)
    times = [video.frame_time(n) for n in numbers]
    rows: list[Optional[np.ndarray]] = [None] * len(numbers)
    waiting: list = []

    def flush() -> None:
        for (position, _), row in zip(waiting, scorer.embed_images([image for _, image in waiting])):
            rows[position] = row
        waiting.clear()

    for frame in iter_frames(video, times, convert=lambda frame: replace(frame, image=_shrink(frame.image, edge))):
        waiting.append((frame.index, frame.image))
        if len(waiting) >= EMBED_BATCH:
            flush()
    flush()
    read = [row for row in rows if row is not None]
    if len(read) != len(rows):  # each embedding must stay beside its frame number
        raise VideoError(f"{video.info.path}: {len(rows) - len(read)} candidate frames could not be read")
    return np.stack(read).astype(np.float32)


def _shrink(image: np.ndarray, edge: int) -> np.ndarray:
    """The picture with its shorter side `edge` (never enlarged): the scorer's processor resizes and crops
    from there as it would from the full frame."""
    import cv2

    height, width = image.shape[:2]
    scale = edge / min(height, width)
    if scale >= 1:
        return image
    size = (max(edge, round(width * scale)), max(edge, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _cache_key(path: str, scorer, candidates: str) -> dict:
    status = os.stat(path)
    return {
        "path": os.path.abspath(path),
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
        "scorer": scorer.info.identity,
        "candidates": candidates,
        "input": list(scorer.input_size),
    }


def _checked(payload, numbers: list[int]) -> np.ndarray:
    """A cached entry's embeddings, when they are for exactly these candidates and whole."""
    if not isinstance(payload, dict) or payload.get("numbers") != numbers:
        raise cache.CacheEntryError("not the embeddings of this video's candidates")
    dim = payload.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= 65536:
        raise cache.CacheEntryError("no embedding size")
    data = base64.b64decode(payload.get("embeddings", ""), validate=True)
    if len(data) != len(numbers) * dim * 2:
        raise cache.CacheEntryError(f"{len(data)} bytes of embeddings for {len(numbers)} x {dim}")
    rows = np.frombuffer(data, dtype=np.float16).reshape(len(numbers), dim).astype(np.float32)
    if not np.isfinite(rows).all():
        raise cache.CacheEntryError("embeddings that are not finite numbers")
    return rows
