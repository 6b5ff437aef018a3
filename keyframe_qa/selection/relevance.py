"""Choosing N of the scored candidates: BOLT's inverse-transform sampling (Liu et al., CVPR 2025), with a
share of coverage. Pure numpy, deterministic.

BOLT, as its authors' code does it:
1. the scores are min-max normalised to [0, 1];
2. sharpened by a power (3 in their Video-MME and MLVU runs, 2.5 for LongVideoBench);
3. made a distribution over the candidates, whose CDF is
4. read at N evenly spaced quantiles, 1/N ... 1 - 1/N: the candidate where the CDF first reaches each one.
Flat scores give a linear CDF, so evenly spaced quantiles are uniform sampling; a peak takes quantiles in
proportion to its weight.

Two additions, both said in the JSON (`power`, `coverage`):
- **Coverage.** After min-max scaling the least relevant candidates weigh 0, so a video with one relevant
  stretch would get all N frames there and none elsewhere; the question may still need the rest. A share
  `coverage` of the distribution is uniform over time (a third by default): a stretch of the timeline
  where nothing scores still gets a frame once it holds a quantile, that is once coverage x its share of
  the timeline reaches 1/N (for N = 8, any stretch of 3/8 of the video). Flat scores stay uniform.
- **Unique frames.** BOLT may pick one candidate for two quantiles; each repeat moves to the nearest
  candidate not yet taken (the later one on a tie), so N different frames come back, in time order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POWER = 3.0  # BOLT's sharpening exponent for Video-MME and MLVU
COVERAGE = 1 / 3  # the share of the distribution spread evenly over time


def normalized(scores: Sequence[float]) -> np.ndarray:
    """Scores min-max scaled to [0, 1]; all equal (flat) gives all ones."""
    values = np.asarray(scores, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.ones_like(values)
    return (values - low) / (high - low)


def select_relevant(
    scores: Sequence[float], count: int, *, power: float = POWER, coverage: float = COVERAGE
) -> list[int]:
    """The positions of `count` different candidates (sorted) chosen by inverse-transform sampling of the
    sharpened, normalised scores mixed with `coverage` of a uniform distribution."""
    total = len(scores)
    if not 0 < count <= total:
        raise ValueError(f"cannot choose {count} of {total} candidates")
    weights = normalized(scores) ** power
    relevance = weights / weights.sum() if weights.sum() > 0 else np.full(total, 1.0 / total)
    probabilities = (1.0 - coverage) * relevance + coverage / total
    cdf = np.cumsum(probabilities)
    cdf /= cdf[-1]
    if count == 1:
        quantiles = np.array([0.5])
    else:
        quantiles = np.linspace(1.0 / count, 1.0 - 1.0 / count, count)
    # A tiny tolerance: a quantile that equals a CDF step up to rounding takes that step's candidate.
    picked = np.minimum(np.searchsorted(cdf, quantiles - 1e-12), total - 1)
    return _distinct(picked.tolist(), total)


def _distinct(picked: list[int], total: int) -> list[int]:
    """Each repeat moved to the nearest candidate not yet taken (the later one on a tie)."""
    taken: set[int] = set()
    for position in picked:
        if position in taken:
            for distance in range(1, total):
                later, earlier = position + distance, position - distance
                if later < total and later not in taken:
                    position = later
                    break
                if earlier >= 0 and earlier not in taken:
                    position = earlier
                    break
        taken.add(position)
    return sorted(taken)
