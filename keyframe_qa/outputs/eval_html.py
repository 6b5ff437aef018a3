"""The page of an `eval` run: each pipeline's score with its interval (overall and by group) as a chart, the
paired differences, and the items where the pipelines disagree, with the frames each pipeline saw and what
it answered. One self-contained file; every piece of text from a label or a model is escaped."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Optional

from ..timecodes import format_time
from .html import PAGE_STYLE

MAX_DISAGREEMENTS = 100  # items shown where the pipelines disagree (the rest are counted)
CHART_WIDTH = 480
THUMBNAIL_SIDE = 128  # a disagreement's frames: hundreds fit in one page

_EVAL_STYLE = """
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
.item{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.75rem 1rem;margin:1rem 0}
.pipe{margin:.5rem 0 .5rem 1rem}.pipe img{height:72px;margin-right:.3rem;vertical-align:middle}
.right{color:#176117}.wrong{color:#a11}
"""


def _chart(rows: Sequence[tuple[str, Optional[float], Optional[list]]], title: str) -> str:
    """An SVG of horizontal bars (scores from 0 to 1) with each interval drawn across its bar."""
    esc = html.escape
    height = 22 * len(rows) + 24
    parts = [f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{CHART_WIDTH + 160}" height="{height}">']
    for position, (name, score, interval) in enumerate(rows):
        y = 20 + 22 * position
        parts.append(f'<text x="0" y="{y + 12}" font-size="12">{esc(name)}</text>')
        if score is not None:
            width = CHART_WIDTH * max(0.0, min(1.0, score))
            parts.append(
                f'<rect class="score" x="150" y="{y}" width="{width:.1f}" height="14" fill="#7aa6d8">'
                f"<title>{esc(name)}: {score:.3f}</title></rect>"
            )
        if interval:
            low, high = (150 + CHART_WIDTH * max(0.0, min(1.0, v)) for v in interval)
            parts.append(
                f'<line class="interval" x1="{low:.1f}" x2="{high:.1f}" y1="{y + 7}" y2="{y + 7}" '
                f'stroke="#222" stroke-width="2"><title>95% interval {interval[0]:.3f} to '
                f"{interval[1]:.3f}</title></line>"
            )
    parts.append(
        f'<text x="150" y="12" font-size="11">0</text><text x="{150 + CHART_WIDTH - 8}" y="12" '
        f'font-size="11">1</text></svg>'
    )
    return "".join(parts)


def render_eval(
    config_path: str,
    summary: dict,
    items: Mapping[str, Sequence[dict]],
    thumbnails: Mapping[tuple[str, float], str],
) -> str:
    """The whole page. `items`: each pipeline's item records (NAME.items.jsonl); `thumbnails`: a data URI for
    each (video, time) a disagreement shows."""
    esc = html.escape
    pipelines = summary["pipelines"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>eval: {esc(config_path)}</title>"
        f"<style>{PAGE_STYLE}{_EVAL_STYLE}</style></head><body>",
        f"<h1>eval: {esc(config_path)}</h1>",
        f"<p class='meta'>baseline {esc(summary['baseline'])}; {esc(summary['statistics']['note'])}</p>",
        "<h2>Scores</h2>",
        _chart([(name, p["score"], p["interval"]) for name, p in pipelines.items()], "score by pipeline"),
    ]
    fields = sorted({field for p in pipelines.values() for field in p["groups"]})
    for field in fields:
        rows = [
            (f"{name}: {value}", record["score"], record["interval"])
            for name, p in pipelines.items()
            for value, record in p["groups"].get(field, {}).items()
        ]
        parts += [f"<h3>By {esc(field)}</h3>", _chart(rows, f"score by {field}")]
    parts.append(
        "<h2>Paired with the baseline</h2><table><tr><th>pipeline</th><th>items</th><th>difference</th>"
        "<th>95% interval</th><th>discordant [b, c]</th><th>McNemar p</th></tr>"
    )
    for name, record in summary["paired"].items():
        interval = record["interval"]
        shown = f"[{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "-"
        difference = f"{record['difference']:+.3f}" if record["difference"] is not None else "-"
        p_value = f"{record['mcnemar_p']:.3g}" if record["mcnemar_p"] is not None else "-"
        parts.append(
            f"<tr class='paired'><td>{esc(name)} - {esc(record['baseline'])}</td><td>{record['items']}</td>"
            f"<td>{difference}</td><td>{shown}</td><td>{record['discordant']}</td><td>{p_value}</td></tr>"
        )
    parts.append("</table>")
    disagreeing = disagreements(items)
    parts.append(f"<h2>Where the pipelines disagree ({len(disagreeing)} items)</h2>")
    for item_id, found in disagreeing[:MAX_DISAGREEMENTS]:
        first = next(iter(found.values()))
        groups = ", ".join(f"{key} {value}" for key, value in first["groups"].items())
        parts.append(
            f"<div class='item'><b>{esc(item_id)}</b> <span class='meta'>{esc(first['kind'])}; "
            f"{esc(first['video'])}{'; ' + esc(groups) if groups else ''}</span>"
        )
        for name, record in found.items():
            pictures = "".join(
                f"<img alt='{esc(format_time(f['timestamp']))}' title='{esc(format_time(f['timestamp']))}' "
                f"src='{thumbnails[(record['video'], f['timestamp'])]}'>"
                for f in record["frames"]
                if (record["video"], f["timestamp"]) in thumbnails
            )
            times = ", ".join(format_time(f["timestamp"]) for f in record["frames"])
            verdict = "right" if record["score"] >= 0.5 else "wrong"
            parts.append(
                f"<div class='pipe'><b>{esc(name)}</b> <span class='{verdict}'>score "
                f"{record['score']:.3f}</span>: {esc(str(record['prediction']))} "
                f"<span class='meta'>({esc(record['reason'])}; frames at {esc(times) or '-'})</span><br>"
                f"{pictures}</div>"
            )
        parts.append("</div>")
    if len(disagreeing) > MAX_DISAGREEMENTS:
        parts.append(f"<p class='meta'>... and {len(disagreeing) - MAX_DISAGREEMENTS} more in the item files.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def disagreements(items: Mapping[str, Sequence[dict]]) -> list[tuple[str, dict[str, dict]]]:
    """(id, pipeline -> item record) of the items whose scores differ between pipelines, in label order."""
    by_id: dict[str, dict[str, dict]] = {}
    for name, records in items.items():
        for record in records:
            by_id.setdefault(record["id"], {})[name] = record
    return [
        (item_id, found) for item_id, found in by_id.items() if len({round(r["score"], 6) for r in found.values()}) > 1
    ]
