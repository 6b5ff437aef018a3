"""Benchmark: `keyframe-qa view` on a large run: the page's size and the time to write it, and the time a
headless Chromium takes to open it and draw its first rows (when Chromium is installed).

    uv run python benchmarks/view.py [--rows 10000]

The run is one real batch line (a tiny stand-in answered it) copied for each row, its video gone, so the
rows carry a note and no thumbnails: what is measured is the page itself, not the decoding of frames (which
`--limit` bounds: about the cost of `frames --at` a row).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keyframe_qa.jobs.view import view_job  # noqa: E402

LINE = {
    "schema_version": 1,
    "status": "ok",
    "settings": "0" * 16,
    "video": {"path": "", "duration": 60.0, "fps": 25.0, "width": 1280, "height": 720, "frame_count": 1500},
    "frames": [
        {"index": i, "timestamp": 10.0 * i, "frame_number": 250 * i, "width": 1280, "height": 720} for i in range(4)
    ],
    "answers": [
        {
            "question": "Is anyone at the door?",
            "answer": "Yes, a person in a red coat is at the door.",
            "boxes": [{"label": "person", "frame": 1, "bbox": [100.0, 80.0, 400.0, 700.0]}],
        }
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="kfqa-view-bench-")
    results = os.path.join(folder, "results.jsonl")
    with open(results, "w") as handle:
        for number in range(args.rows):
            LINE["video"]["path"] = os.path.join(folder, f"video{number:05d}.mp4")
            handle.write(json.dumps(LINE) + "\n")
    page = os.path.join(folder, "page.html")
    summary = view_job([results], page)
    print(
        f"{summary.rows} rows: page {summary.page_bytes / 1e6:.2f} MB ({summary.page_bytes / summary.rows:.0f} "
        f"bytes a row), written in {summary.seconds:.2f} s"
    )
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Chromium is not installed: the page's opening time is not measured")
        return
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
    ]

    def opened(url: str, profile: str) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run(
            [*flags, f"--user-data-dir={os.path.join(folder, profile)}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=300,
        )
        return time.perf_counter() - started, done.stdout

    blank, _ = opened("about:blank", "blank")
    seconds, dom = opened("file://" + page, "page")
    drawn = dom.count('class="row')
    print(
        f"headless Chromium: opened, parsed the blob and drew the first {drawn} rows in "
        f"{seconds:.2f} s, against {blank:.2f} s for a blank page (the browser's start): "
        f"{seconds - blank:.2f} s for the page"
    )


if __name__ == "__main__":
    main()
