"""One self-contained HTML page per run: thumbnails with boxes drawn, times, questions, answers.

Model text is untrusted: every piece of it is escaped, so a reply holding `<script>` shows as text.
Images are inlined as data URIs, so the page is one file that opens anywhere.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import replace
from typing import Optional

from ..records import Answer, Frame, VideoInfo
from ..timecodes import format_time
from .annotate import draw_boxes

THUMBNAIL_SIDE = 640

PAGE_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;background:#fafafa;color:#222}
.frames{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;background:#fff;padding:.5rem;border:1px solid #ddd;border-radius:6px}
figure img{display:block;max-width:100%}
figcaption{font-size:.85rem;color:#555;margin-top:.3rem}
.answer{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.75rem 1rem;margin:1rem 0}
.answer pre{white-space:pre-wrap;word-break:break-word;margin:.3rem 0 0}
.meta{color:#666;font-size:.85rem}
"""


def frame_caption(frame: Frame, name: str) -> str:
    """ "Frame 1 at 0:00:05.500 (asked for 0:00:05.550; frame 55)": the time asked beside the one shown."""
    details = []
    if frame.requested is not None:
        details.append(f"asked for {format_time(frame.requested)}")
    details.append(f"frame {frame.frame_number}")
    if frame.scene is not None:
        details.append(f"scene {frame.scene}")
    if frame.relevance is not None:
        details.append(f"relevance {frame.relevance:.2f}")
    return f"{name} at {format_time(frame.timestamp)} ({'; '.join(details)})"


def render_html(
    info: VideoInfo, frames: Sequence[Frame], answers: Sequence[Answer], model_id: str, selection: Optional[dict] = None
) -> str:
    """The page of one `ask` run; with --relevant, the relevance curve over the timeline first."""
    captions = [frame_caption(frame, f"Frame {frame.index + 1}") for frame in frames]
    meta = f"{info.width}x{info.height}, {info.duration:.3f} s, {info.fps:g} fps; model {model_id}"
    before = relevance_curve(info, selection, frames) if selection and selection.get("curve") else ""
    return render_page(info.path, meta, [(None, frames, answers, captions)], before=before)


def relevance_curve(info: VideoInfo, selection: dict, frames: Sequence[Frame]) -> str:
    """An SVG of --relevant's curve (each candidate's relevance over the video's timeline) with the chosen
    frames marked on it, its axes (relevance 0 to 1; the video's time, ticked) and what was scored against
    what."""
    esc = html.escape
    width, height = 1000, 200
    left, right, top, bottom = 48, 12, 10, 34  # room for the axes' labels
    duration = info.duration or 1.0

    def x(seconds: float) -> float:
        return left + (width - left - right) * min(max(seconds / duration, 0.0), 1.0)

    def y(relevance: float) -> float:
        return height - bottom - (height - top - bottom) * min(max(relevance, 0.0), 1.0)

    line = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, r in selection["curve"])
    marks = "".join(
        f'<line x1="{x(f.timestamp):.1f}" y1="{top}" x2="{x(f.timestamp):.1f}" y2="{height - bottom}" class="pick"/>'
        f'<circle cx="{x(f.timestamp):.1f}" cy="{y(f.relevance or 0.0):.1f}" r="4" class="pick">'
        f"<title>frame {f.index + 1} at {format_time(f.timestamp)}: relevance {f.relevance or 0.0:.2f}</title>"
        f"</circle>"
        for f in frames
    )
    axes = [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" class="axis"/>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" class="axis"/>',
    ]
    for value in (0.0, 0.5, 1.0):
        axes.append(
            f'<line x1="{left - 4}" y1="{y(value):.1f}" x2="{left}" y2="{y(value):.1f}" class="axis"/>'
            f'<text x="{left - 7}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>'
        )
    for tick in time_ticks(duration):
        axes.append(
            f'<line x1="{x(tick):.1f}" y1="{height - bottom}" x2="{x(tick):.1f}" y2="{height - bottom + 4}" '
            f'class="axis"/><text x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{tick_label(tick, duration)}</text>"
        )
    axes.append(
        f'<text x="12" y="{(top + height - bottom) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})">relevance</text>'
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 3}" text-anchor="middle">time in the '
        f"video</text>"
    )
    scorer = selection.get("scorer") or {}
    queries = "; ".join(selection.get("queries") or [])
    return (
        f"<h2>Relevance</h2>"
        f'<svg class="relevance" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="relevance to the question over the video, chosen frames marked">'
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        f'class="ground"/>{"".join(axes)}<polyline points="{line}" class="curve"/>{marks}</svg>'
        f'<p class="meta"><span class="key curve"></span> relevance of each candidate '
        f'<span class="key pick"></span> a chosen frame. {selection.get("scored")} candidate frames '
        f"({esc(_candidates(selection))}) scored by {esc(str(scorer.get('id')))} against: {esc(queries)}; "
        f"{len(frames)} chosen ({esc(str(selection.get('sampling')))}); 0:00:00.000 to "
        f"{format_time(info.duration)}</p>"
    )


def time_ticks(duration: float, most: int = 10) -> list[float]:
    """Round times for a timeline's ticks (every 1, 2 or 5 times a power of ten seconds, or minutes, hours),
    at most `most` of them, from 0 to `duration`."""
    if not duration or duration <= 0:
        return [0.0]
    steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
    step = next((s for s in steps if duration / s <= most), duration / most)
    count = int(duration / step + 1e-9)
    return [round(i * step, 6) for i in range(count + 1)]


def tick_label(seconds: float, duration: float) -> str:
    """A tick's time, as short as the timeline's length allows: 12.5s, 1:05, 1:02:03."""
    if duration < 60:
        return f"{seconds:g}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if duration >= 3600 else f"{minutes}:{secs:02d}"


def render_compare(config_path: str, model_id: str, views: Sequence[tuple]) -> str:
    """The page of a compare run: one section per comparison, its frames captioned BEFORE and AFTER."""
    sections = [
        (
            comparison.name,
            frames,
            answers,
            [frame_caption(frame, role) for role, frame in zip(("BEFORE", "AFTER"), frames)],
        )
        for comparison, frames, answers in views
    ]
    return render_page(config_path, f"model {model_id}", sections)


def render_when(
    info: VideoInfo, query: str, moments: Sequence[dict], frames: Sequence[tuple[Frame, Frame]], model_id: str
) -> str:
    """The page of a `when` run: the video's timeline with each moment on it (the coarse span behind the
    refined one), then each moment's first and last frame."""
    esc = html.escape
    duration = info.duration or 1.0

    def bar(start: float, end: float, kind: str, title: str) -> str:
        left = max(0.0, min(100.0, 100 * start / duration))
        width = max(0.3, min(100.0 - left, 100 * (end - start) / duration))
        return f'<div class="{kind}" style="left:{left:.3f}%;width:{width:.3f}%" title="{esc(title)}"></div>'

    spans = []
    for number, moment in enumerate(moments, start=1):
        coarse = moment["coarse"]
        spans.append(bar(coarse[0], coarse[1], "coarse", f"moment {number}, as the model said"))
        spans.append(
            bar(
                moment["start"],
                moment["end"],
                "moment",
                f"moment {number}: {format_time(moment['start'])} to {format_time(moment['end'])}",
            )
        )
    ticks = "".join(
        f'<span class="tick" style="left:{100 * t / duration:.3f}%">{tick_label(t, duration)}</span>'
        for t in time_ticks(duration)
    )
    found = f"{len(moments)} moment{'s' if len(moments) != 1 else ''}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>keyframe-qa when: {esc(query)}</title><style>{PAGE_STYLE}{_TIMELINE_STYLE}</style></head><body>",
        f"<h1>When: {esc(query)}</h1>",
        f'<p class="meta">{esc(info.path)}; {info.duration:.3f} s, {info.fps:g} fps; model {esc(model_id)}</p>',
        f'<div class="timeline">{"".join(spans)}</div><div class="ticks">{ticks}</div>',
        f'<p class="meta legend"><span class="key coarse"></span> the span the model named (coarse pass) '
        f'<span class="key moment"></span> the moment, to its first and last frame; '
        f"0:00:00.000 to {format_time(info.duration)}; {found}</p>",
    ]
    if not moments:
        parts.append("<p>Not found in this video.</p>")
    for number, (moment, (first, last)) in enumerate(zip(moments, frames), start=1):
        state = "exact frames" if moment["refined"] else f"coarse ({moment.get('reason') or 'not refined'})"
        label = f": {moment['label']}" if moment.get("label") else ""
        parts.append(f"<h2>Moment {number}{esc(label)}</h2>")
        probes = f"{moment['probes']} probe{'s' if moment['probes'] != 1 else ''}"
        parts.append(
            f'<p class="meta">{format_time(moment["start"])} to {format_time(moment["end"])}, '
            f"{esc(state)}, {probes}</p>"
        )
        parts.append('<div class="frames">')
        for name, frame in (("First", first), ("Last", last)):
            caption = frame_caption(frame, f"{name} frame")
            parts.append(
                f'<figure><img alt="{esc(caption)}" src="{thumbnail(frame.image)}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _candidates(selection: dict) -> str:
    spec = str(selection.get("candidates"))
    return "keyframes" if spec == "keyframes" else f"{spec} a second"


_RELEVANCE_STYLE = """
svg.relevance{width:100%;max-width:1000px;height:auto;display:block}
svg.relevance .ground{fill:#fff;stroke:#ddd}
svg.relevance .curve{fill:none;stroke:#337ab7;stroke-width:2}
svg.relevance line.pick{stroke:#d9534f;stroke-width:1;stroke-dasharray:3 3}
svg.relevance circle.pick{fill:#d9534f}
svg.relevance .axis{stroke:#888;stroke-width:1}
svg.relevance text{font-size:12px;fill:#555}
.key{display:inline-block;width:1.2em;height:.7em;vertical-align:middle;margin:0 .2em 0 .6em;border-radius:2px}
.key.curve{background:#337ab7}.key.pick{background:#d9534f}
"""

_TIMELINE_STYLE = """
.timeline{position:relative;height:2rem;background:#e6e6e6;border-radius:4px;margin:1rem 0}
.timeline .coarse{position:absolute;top:0;height:100%;background:#f3c98b;opacity:.7}
.timeline .moment{position:absolute;top:.5rem;height:1rem;background:#d9534f;border-radius:2px}
.ticks{position:relative;height:1.2rem;margin:-.6rem 0 .4rem;font-size:.75rem;color:#666}
.ticks .tick{position:absolute;transform:translateX(-50%);border-left:1px solid #999;padding-top:.15rem}
.ticks .tick:first-child{transform:none}
.key{display:inline-block;width:1.2em;height:.7em;vertical-align:middle;margin:0 .2em 0 .6em;border-radius:2px}
.key.coarse{background:#f3c98b}.key.moment{background:#d9534f}
"""


def render_page(title: str, meta: str, sections: Sequence[tuple], before: str = "") -> str:
    """A page of sections, each (heading or None, frames, answers, one caption per frame); `before` is
    markup of ours placed above them."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>keyframe-qa: {esc(title)}</title><style>{PAGE_STYLE}{_RELEVANCE_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{esc(meta)}</p>',
        before,
    ]
    for heading, frames, answers, captions in sections:
        if heading:
            parts.append(f"<h2>{esc(heading)}</h2>")
        parts.append('<div class="frames">')
        for frame, caption in zip(frames, captions):
            drawn = [b for a in answers for b in a.boxes if b.frame == frame.index]
            parts.append(
                f'<figure><img alt="{esc(caption)}" src="{thumbnail(frame.image, drawn)}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        parts.append("</div><h3>Answers</h3>")
        for answer in answers:
            about = f" (frame {answer.frame + 1})" if answer.frame is not None else ""
            # For --find, what the user asked for; the grounding prompt we built is ours, not theirs.
            asked = f"Find: {answer.find}" if answer.find is not None else answer.question
            cut = ' <span class="meta">(stopped at the token limit)</span>' if answer.truncated else ""
            boxes = "".join(
                f"<li>{esc(b.label or '(no label)')}: frame {'?' if b.frame is None else b.frame + 1}, "
                f"[{', '.join(f'{v:g}' for v in b.bbox)}]</li>"
                for b in answer.boxes
            )
            parts.append(
                f'<div class="answer"><strong>{esc(asked)}</strong>{esc(about)}{cut}'
                f"<pre>{esc(answer.answer)}</pre>" + (f"<ul>{boxes}</ul>" if boxes else "") + "</div>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def thumbnail(image, boxes: Sequence = (), side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG data URI of the frame at most `side` wide and high, with `boxes` drawn on it.

    The boxes are drawn after shrinking, at the thumbnail's own scale, so labels keep a readable
    size; drawn on the full frame first, a 4K frame's labels would shrink to a few pixels.
    """
    import cv2

    height, width = image.shape[:2]
    scale = 1.0
    if max(height, width) > side:
        scale = side / max(height, width)
        image = cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    shown = [replace(b, bbox=tuple(v * scale for v in b.bbox)) for b in boxes]
    image = draw_boxes(image, shown)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
