"""The page of `keyframe-qa view`: every video of one or more runs in a table built in the browser from a JSON
blob (rows are drawn as they scroll into view, so 10,000 rows open in seconds), sortable, filterable by status,
by text and by any field the rows carry; a row opens to show the frames the model saw (thumbnail files beside
the page) with their boxes drawn at the frame's own pixels, the moments on a timeline, and the relevance
curve. An eval run's summary (scores and intervals) comes first, and the rows where its pipelines disagree
are marked. No network, no CDN: the script is written here. Every text is set as text (never as HTML), and
the JSON blob cannot end its script element.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from .jsontext import dumps

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e3e3e3;padding:.35rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{cursor:pointer;background:#f0f0f0;position:sticky;top:0}
tr.row{cursor:pointer}tr.row:hover{background:#f5f9ff}
.error{color:#a11}.ok{color:#176117}.note{color:#8a5a00}.disagree{background:#fff4d6}
.detail td{background:#fbfbfb}.frames{display:flex;flex-wrap:wrap;gap:.6rem}
figure{margin:0;position:relative}figure img{display:block;height:140px}
figcaption{font-size:.8rem;color:#555}
.box{position:absolute;border:2px solid #e4002b;box-sizing:border-box}
.timeline{position:relative;height:14px;background:#e8e8e8;margin:.4rem 0;max-width:640px}
.moment{position:absolute;top:0;height:14px;background:#3a7bd5}
#controls{margin:.8rem 0;display:flex;gap:.6rem;flex-wrap:wrap}
.summary td,.summary th{font-size:.85rem}
"""

# The script, written for this page. It reads the rows from the JSON blob, keeps the filter in the address
# (#status=error&text=door&field=category:red), and draws only the rows that scroll into view.
_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById("kfqa-data").textContent);
  const rows = data.rows;
  const body = document.getElementById("rows");
  const statusBox = document.getElementById("status");
  const textBox = document.getElementById("text");
  const fieldBox = document.getElementById("field");
  const shown = document.getElementById("shown");
  const STEP = 200;
  let order = rows.slice(), limit = STEP, sortKey = null, sortUp = true;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function fields(row) {
    return Object.keys(row.fields || {}).map(function (k) { return k + ":" + row.fields[k]; });
  }
  function matches(row) {
    const status = statusBox.value, text = textBox.value.toLowerCase(), field = fieldBox.value;
    if (status && row.status !== status && !(status === "disagree" && row.disagree)) return false;
    if (field && fields(row).indexOf(field) < 0) return false;
    if (text) {
      const hay = [row.name, row.video, row.error || "", row.note || ""].concat(
        row.answers.map(function (a) { return a.q + " " + a.a; })).join(" ").toLowerCase();
      if (hay.indexOf(text) < 0) return false;
    }
    return true;
  }
  function detail(row) {
    const cell = el("td");
    cell.colSpan = 6;
    if (row.note) cell.appendChild(el("p", "note", row.note));
    if (row.moments.length && row.duration) {
      const line = el("div", "timeline");
      row.moments.forEach(function (m) {
        const bar = el("div", "moment");
        bar.style.left = (100 * m[0] / row.duration) + "%";
        bar.style.width = Math.max(0.5, 100 * (m[1] - m[0]) / row.duration) + "%";
        bar.title = m[0].toFixed(3) + " s to " + m[1].toFixed(3) + " s";
        line.appendChild(bar);
      });
      cell.appendChild(line);
    }
    if (row.curve && row.curve.length && row.duration) {
      const ns = "http://www.w3.org/2000/svg";
      const svg = document.createElementNS(ns, "svg");
      svg.setAttribute("width", "640"); svg.setAttribute("height", "60"); svg.setAttribute("class", "curve");
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("fill", "none"); line.setAttribute("stroke", "#3a7bd5");
      line.setAttribute("points", row.curve.map(function (p) {
        return (640 * p[0] / row.duration).toFixed(1) + "," + (58 - 56 * p[1]).toFixed(1); }).join(" "));
      svg.appendChild(line);
      cell.appendChild(svg);
    }
    const strip = el("div", "frames");
    row.frames.forEach(function (f, i) {
      const fig = el("figure");
      if (f.thumb) {
        const img = el("img");
        img.src = f.thumb; img.alt = "frame " + f.n + " at " + f.t + " s"; img.loading = "lazy";
        fig.appendChild(img);
        (f.boxes || []).forEach(function (b) {
          const box = el("div", "box");
          box.style.left = (100 * b.bbox[0] / f.w) + "%"; box.style.top = (100 * b.bbox[1] / f.h) + "%";
          box.style.width = (100 * (b.bbox[2] - b.bbox[0]) / f.w) + "%";
          box.style.height = (100 * (b.bbox[3] - b.bbox[1]) / f.h) + "%";
          box.title = b.label || "";
          fig.appendChild(box);
        });
      }
      fig.appendChild(el("figcaption", null, "frame " + f.n + " at " + f.t + " s"));
      strip.appendChild(fig);
    });
    cell.appendChild(strip);
    row.answers.forEach(function (a) {
      const p = el("p");
      p.appendChild(el("b", null, a.q + " "));
      p.appendChild(el("span", null, a.a));
      cell.appendChild(p);
    });
    const tr = el("tr", "detail");
    tr.appendChild(cell);
    return tr;
  }
  function line(row) {
    const tr = el("tr", "row" + (row.disagree ? " disagree" : ""));
    tr.dataset.status = row.status;
    tr.appendChild(el("td", null, row.name));
    tr.appendChild(el("td", null, row.pipeline || ""));
    tr.appendChild(el("td", row.status, row.status));
    tr.appendChild(el("td", row.error ? "error" : "note", row.error || row.note || ""));
    tr.appendChild(el("td", null, row.answers.map(function (a) { return a.a; }).join(" | ").slice(0, 300)));
    tr.appendChild(el("td", null, row.moments.map(function (m) {
      return m[0].toFixed(2) + "-" + m[1].toFixed(2); }).join(" ")));
    let open = null;
    tr.addEventListener("click", function () {
      if (open) { open.remove(); open = null; return; }
      open = detail(row);
      tr.after(open);
    });
    return tr;
  }
  function render() {
    body.textContent = "";
    const chosen = order.filter(matches);
    chosen.slice(0, limit).forEach(function (row) { body.appendChild(line(row)); });
    shown.textContent = Math.min(limit, chosen.length) + " of " + chosen.length + " rows shown (" +
      rows.length + " in all)";
  }
  function fromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    statusBox.value = params.get("status") || "";
    textBox.value = params.get("text") || "";
    fieldBox.value = params.get("field") || "";
  }
  function toHash() {
    const params = new URLSearchParams();
    if (statusBox.value) params.set("status", statusBox.value);
    if (textBox.value) params.set("text", textBox.value);
    if (fieldBox.value) params.set("field", fieldBox.value);
    history.replaceState(null, "", "#" + params.toString());
  }
  const all = {};
  rows.forEach(function (row) { fields(row).forEach(function (f) { all[f] = true; }); });
  Object.keys(all).sort().forEach(function (f) { fieldBox.appendChild(el("option", null, f)); });
  [statusBox, fieldBox].forEach(function (box) {
    box.addEventListener("change", function () { limit = STEP; toHash(); render(); });
  });
  textBox.addEventListener("input", function () { limit = STEP; toHash(); render(); });
  document.querySelectorAll("th[data-key]").forEach(function (th) {
    th.addEventListener("click", function () {
      const key = th.dataset.key;
      sortUp = sortKey === key ? !sortUp : true; sortKey = key;
      order.sort(function (a, b) {
        const x = String(a[key] || ""), y = String(b[key] || "");
        return (x < y ? -1 : x > y ? 1 : 0) * (sortUp ? 1 : -1);
      });
      render();
    });
  });
  window.addEventListener("scroll", function () {
    if (window.innerHeight + window.scrollY >= document.body.offsetHeight - 400) { limit += STEP; render(); }
  });
  fromHash();
  render();
})();
"""


def _summary(summaries: Sequence[tuple[str, dict]]) -> str:
    esc = html.escape
    parts = []
    for folder, summary in summaries:
        parts.append(f"<h2>eval: {esc(folder)}</h2><table class='summary'><tr><th>pipeline</th><th>score</th>"
                     "<th>95% interval</th><th>items</th><th>videos</th><th>unanswered</th></tr>")  # fmt: skip
        for name, record in summary.get("pipelines", {}).items():
            interval = record.get("interval")
            shown = f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "-"
            score = f"{record['score']:.3f}" if record.get("score") is not None else "-"
            parts.append(f"<tr><td>{esc(name)}</td><td>{score}</td><td>{shown}</td><td>{record.get('items')}</td>"
                         f"<td>{record.get('videos')}</td><td>{record.get('unanswered')}</td></tr>")  # fmt: skip
        for name, record in summary.get("paired", {}).items():
            interval = record.get("interval")
            shown = f"[{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "-"
            difference = f"{record['difference']:+.3f}" if record.get("difference") is not None else "-"
            parts.append(f"<tr><td colspan='6'>{esc(name)} - {esc(str(record.get('baseline')))}: {difference} "
                         f"{shown}, discordant {esc(str(record.get('discordant')))}</td></tr>")  # fmt: skip
        parts.append("</table>")
    return "".join(parts)


def render_viewer(title: str, rows: Sequence[dict], summaries: Sequence[tuple[str, dict]]) -> str:
    """The whole page. `rows`: one dict a video and pipeline (view.py builds them)."""
    blob = dumps({"rows": list(rows)})  # jsontext's: valid Unicode, and no NaN (a hand-edited file may hold one)
    # <, > and & as JSON escapes: the blob can never close its script element, nor open a comment or a tag.
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    esc = html.escape
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1>{_summary(summaries)}"
        "<div id='controls'><label>status <select id='status'><option value=''>all</option>"
        "<option value='ok'>ok</option><option value='error'>error</option>"
        "<option value='disagree'>pipelines disagree</option></select></label>"
        "<label>text <input id='text' type='search' placeholder='answers, paths, errors'></label>"
        "<label>field <select id='field'><option value=''>any</option></select></label>"
        "<span id='shown'></span></div>"
        "<table><thead><tr><th data-key='name'>video</th><th data-key='pipeline'>pipeline</th>"
        "<th data-key='status'>status</th><th data-key='error'>error / note</th><th>answers</th>"
        "<th>moments</th></tr></thead><tbody id='rows'></tbody></table>"
        f"<script type='application/json' id='kfqa-data'>{blob}</script>"
        f"<script>{_SCRIPT}</script></body></html>"
    )
