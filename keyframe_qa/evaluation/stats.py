"""The statistics of an evaluation: a mean score with a cluster-bootstrap interval, a paired difference, and
McNemar's exact test, with numpy and scipy.stats.

Questions about one video are not independent (the same frames, the same hard scene), so intervals come
from a bootstrap over videos: `scipy.stats.bootstrap` resamples the videos (each carries the sum of its
items' scores and their count, resampled together) and the statistic is the item mean of the resample.
McNemar's test (`scipy.stats.binomtest` on the discordant pairs) assumes independent items; the bootstrap
does not. Every interval is seeded, so a rerun gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

RESAMPLES = 10_000  # bootstrap resamples: the interval's ends move by well under a point between seeds
CONFIDENCE = 0.95
SEED = 0


def _ratio(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    """The item mean of a resample of videos: their scores summed over their items counted."""
    total = counts.sum(axis=axis)
    return sums.sum(axis=axis) / np.where(total > 0, total, 1)


def cluster_interval(
    scores: Sequence[float], clusters: Sequence[str], *, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, Optional[list[float]]]:
    """(the mean of `scores`, its 95% interval from a bootstrap over `clusters`); the interval is None with
    fewer than two clusters (nothing to resample) and a single point when every cluster agrees."""
    from scipy import stats

    values = np.asarray(scores, dtype=float)
    if not len(values):
        return math.nan, None
    mean = float(values.mean())
    names, index = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    if len(names) < 2:
        return mean, None
    sums = np.bincount(index, weights=values, minlength=len(names))
    counts = np.bincount(index, minlength=len(names)).astype(float)
    if np.allclose(sums / counts, sums[0] / counts[0]):
        return mean, [mean, mean]  # every video scores the same: every resample does too
    result = stats.bootstrap(
        (sums, counts),
        _ratio,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return mean, [low, high]


def mcnemar(before: Sequence[float], after: Sequence[float]) -> tuple[list[int], float]:
    """([b, c], the exact two-sided McNemar p-value) for paired 0/1 scores: b items right before and wrong
    after, c wrong before and right after; p is the binomial test of b against b + c at one half."""
    from scipy import stats

    first, second = np.asarray(before) >= 0.5, np.asarray(after) >= 0.5
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    if b + c == 0:
        return [b, c], 1.0
    return [b, c], float(stats.binomtest(b, b + c, 0.5).pvalue)


def finite(value: float, places: int = 4) -> Optional[float]:
    """A number for JSON: rounded, or None where it is not finite (no NaN is ever written)."""
    return round(float(value), places) if math.isfinite(value) else None
