"""An evaluation's numbers: each pipeline's score with its interval (overall, per kind, per group) and cost,
and each pipeline against the baseline, paired item by item. Pure: scored items in, the summary out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .labels import Label
from .scoring import BINARY_KINDS, Scored
from .stats import RESAMPLES, cluster_interval, finite, mcnemar

SCHEMA_VERSION = 1
RECALL_AT = (0.3, 0.5, 0.7)  # temporal grounding's usual thresholds (R@IoU)
IOP_AT = (0.3, 0.5)  # NExT-GQA's IoP thresholds
HIT_AT = 0.5  # a box is a hit at this IoU
STATS_NOTE = (
    "intervals are 95% percentile intervals of a bootstrap over videos (questions about one video are not "
    "independent); McNemar's exact test assumes independent items, the bootstrap does not"
)


@dataclass(frozen=True)
class ItemResult:
    """One labelled item as one pipeline answered it."""

    label: Label  # the item
    scored: Scored  # its score, prediction and reason
    ran: bool  # the pipeline produced a result for it (False: its video failed, recorded with the reason)


def _scored(results: Sequence[ItemResult], resamples: int, seed: int) -> dict:
    scores = [r.scored.score for r in results]
    mean, interval = cluster_interval(scores, [r.label.video for r in results], resamples=resamples, seed=seed)
    return {
        "score": finite(mean),
        "interval": [finite(v) for v in interval] if interval else None,
        "items": len(results),
    }


def pipeline_summary(results: Sequence[ItemResult], cost: dict, *, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """The summary of one pipeline: overall, by kind, by each grouping field, its cost."""
    summary = _scored(results, resamples, seed)
    summary["videos"] = len({r.label.video for r in results})
    summary["unanswered"] = sum(1 for r in results if not r.scored.answered)
    summary["failed"] = sum(1 for r in results if not r.ran)
    kinds: dict[str, dict] = {}
    for kind in sorted({r.label.kind for r in results}):
        chosen = [r for r in results if r.label.kind == kind]
        record = _scored(chosen, resamples, seed)
        ious = np.asarray([r.scored.iou or 0.0 for r in chosen])
        if kind == "span":
            record["miou"] = finite(float(ious.mean()))
            record["recall"] = {f"{k:g}": finite(float((ious >= k).mean())) for k in RECALL_AT}
            iops = np.asarray([r.scored.iop or 0.0 for r in chosen])
            record["miop"] = finite(float(iops.mean()))
            record["iop_recall"] = {f"{k:g}": finite(float((iops >= k).mean())) for k in IOP_AT}
            by_id = {r.label.id: r for r in results}
            grounded = [
                by_id[r.label.pair].scored.score >= 0.5 and (r.scored.iop or 0.0) >= 0.5
                for r in chosen
                if r.label.pair is not None and r.label.pair in by_id
            ]
            if grounded:  # NExT-GQA's Acc@GQA: the right answer, grounded with IoP 0.5 or more
                record["grounded_accuracy"] = finite(float(np.mean(grounded)))
            errors = [r.scored.boundary_frames for r in chosen if r.scored.boundary_frames is not None]
            if errors:
                record["boundary_error_frames"] = {
                    "start_median": finite(float(np.median([e[0] for e in errors]))),
                    "end_median": finite(float(np.median([e[1] for e in errors]))),
                }
        if kind == "box":
            record["hit"] = finite(float((ious >= HIT_AT).mean()))
        kinds[kind] = record
    summary["kinds"] = kinds
    groups: dict[str, dict[str, list[ItemResult]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        for field, value in result.label.groups:
            groups[field][value].append(result)
    summary["groups"] = {
        field: {value: _scored(members, resamples, seed) for value, members in sorted(values.items())}
        for field, values in sorted(groups.items())
    }
    summary["cost"] = cost
    return summary


def paired_summary(
    before: Sequence[ItemResult],
    after: Sequence[ItemResult],
    baseline: str,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict:
    """`after` against `before` over the items both ran: the mean paired difference with its interval
    (bootstrap over videos), and for the 0/1 items the discordant counts and McNemar's exact p-value."""
    first = {r.label.id: r for r in before if r.ran}
    pairs = [(first[r.label.id], r) for r in after if r.ran and r.label.id in first]
    differences = [b.scored.score - a.scored.score for a, b in pairs]
    mean, interval = cluster_interval(differences, [a.label.video for a, _ in pairs], resamples=resamples, seed=seed)
    binary = [(a, b) for a, b in pairs if a.label.kind in BINARY_KINDS]
    discordant, p_value = mcnemar([a.scored.score for a, _ in binary], [b.scored.score for _, b in binary])
    record: dict = {
        "baseline": baseline,
        "items": len(pairs),
        "videos": len({a.label.video for a, _ in pairs}),
        "difference": finite(mean) if pairs else None,
        "interval": [finite(v) for v in interval] if interval else None,
        "binary_items": len(binary),
        "discordant": discordant,
        "mcnemar_p": float(f"{p_value:.6g}") if binary else None,  # significant digits: p can be tiny
    }
    return record


def summary_table(summary: dict) -> str:
    """The short table `eval` prints: each pipeline's score and interval, then each paired difference."""
    rows = [f"{'pipeline':<20} {'score':>7} {'95% interval':>17} {'items':>6} {'videos':>6} {'unanswered':>10}"]
    for name, record in summary["pipelines"].items():
        interval = record["interval"]
        shown = f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "-"
        score = f"{record['score']:.3f}" if record["score"] is not None else "-"
        rows.append(
            f"{name:<20} {score:>7} {shown:>17} {record['items']:>6} {record['videos']:>6} {record['unanswered']:>10}"
        )
    for name, record in summary["paired"].items():
        interval = record["interval"]
        shown = f"[{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "-"
        difference = f"{record['difference']:+.3f}" if record["difference"] is not None else "-"
        p_value = f", McNemar p {record['mcnemar_p']:.3g}" if record["mcnemar_p"] is not None else ""
        b, c = record["discordant"]
        rows.append(
            f"{name} - {record['baseline']}: {difference} {shown} over {record['items']} items "
            f"({b} only {record['baseline']} right, {c} only {name} right{p_value})"
        )
    return "\n".join(rows)


def summary_record(pipelines: dict, paired: dict, baseline: str, resamples: int, seed: Optional[int]) -> dict:
    """The whole summary.json."""
    return {
        "schema_version": SCHEMA_VERSION,
        "baseline": baseline,
        "pipelines": pipelines,
        "paired": paired,
        "statistics": {"note": STATS_NOTE, "resamples": resamples, "seed": seed, "confidence": 0.95},
    }
