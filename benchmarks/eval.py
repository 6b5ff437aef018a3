"""Benchmark: what `eval` adds over the batch runs it makes, on 1,000 labelled rows over 50 clips.

    uv run python benchmarks/eval.py [--clips 50] [--rows 1000]

Two pipelines (`num_frames: 4` and `relevant: 4`) answered by the pixel-reading stand-in with the colour
stand-in scorer (the cost measured is eval's own: planning, reading the results, scoring, the bootstrap), in
the same process: the two batch runs alone (`run_batch` on the items eval makes) and `eval` from scratch,
interleaved, best of two, each with a cache of its own; then `eval` again with everything answered (only
scoring), then the statistics alone. Prints seconds and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from keyframe_qa.evaluation.labels import read_labels  # noqa: E402
from keyframe_qa.evaluation.stats import cluster_interval, mcnemar  # noqa: E402
from keyframe_qa.jobs.batch import run_batch  # noqa: E402
from keyframe_qa.jobs.eval import plan_items, run_eval  # noqa: E402
from keyframe_qa.jobs.eval_config import load_eval_config, pipeline_requests  # noqa: E402
from keyframe_qa.testing.oracle import ColourAnswerOracle, ColourScorer  # noqa: E402
from keyframe_qa.testing.synthetic import draw_frame, write_pictures  # noqa: E402


def make(folder: str, clips: int, rows: int) -> str:
    """`clips` clips of 10 s at 10 fps, the green square in a stretch of each; `rows` yes/no rows over them."""
    rng = np.random.default_rng(0)
    for position in range(clips):
        first = int(rng.integers(0, 80))
        pictures = []
        for number in range(100):
            image = draw_frame(number, 160, 120)
            if first <= number < first + 15:
                image[30:90, 50:110] = (0, 200, 0)
            pictures.append(image)
        write_pictures(os.path.join(folder, f"clip{position}.mp4"), pictures, fps=10, gop=20)
    with open(os.path.join(folder, "labels.jsonl"), "w") as handle:
        for row in range(rows):
            green = row % 2 == 0
            handle.write(
                json.dumps(
                    {
                        "id": str(row),
                        "video": f"clip{row % clips}.mp4",
                        "kind": "yesno",
                        "question": f"Is the {'green' if green else 'red'} square shown? ({row})",
                        "answer": "yes" if green else "no",
                        "half": str(row % 4 < 2),
                    }
                )
                + "\n"
            )
    config = os.path.join(folder, "eval.yaml")
    with open(config, "w") as handle:
        handle.write(
            "labels: labels.jsonl\npipelines:\n  uniform: {num_frames: 4}\n"
            "  relevant: {relevant: 4, scorer: colour-scorer}\n"
        )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="kfqa-eval-bench-")
    config = make(folder, args.clips, args.rows)
    oracle, scorer = ColourAnswerOracle(), ColourScorer()
    labels = read_labels([os.path.join(folder, "labels.jsonl")])
    templates = pipeline_requests(load_eval_config(config), config)
    engines = dict.fromkeys(templates, oracle)
    batch_times, eval_times = [], []
    for round_ in range(2):  # interleaved, each phase with a cache of its own (--relevant's embeddings)
        os.environ["KEYFRAME_QA_CACHE_DIR"] = os.path.join(folder, f"cache-batch-{round_}")
        started = time.perf_counter()
        for name, template in templates.items():
            items, _ = plan_items(labels, "qwen2-vl")
            run_batch(
                items,
                template,
                os.path.join(folder, f"batch-{round_}-{name}.jsonl"),
                engine=oracle,
                checkpoint=oracle.checkpoint,
                progress=False,
                scorer=scorer,
            )
        batch_times.append(time.perf_counter() - started)
        os.environ["KEYFRAME_QA_CACHE_DIR"] = os.path.join(folder, f"cache-eval-{round_}")
        started = time.perf_counter()
        run = run_eval(config, os.path.join(folder, f"run-{round_}"), engines=engines, scorer=scorer, progress=False)
        eval_times.append(time.perf_counter() - started)
    batch_s, eval_s = min(batch_times), min(eval_times)
    started = time.perf_counter()
    again = run_eval(config, os.path.join(folder, "run-1"), engines=engines, scorer=scorer, progress=False)
    rescore_s = time.perf_counter() - started
    assert again.summary["paired"] == run.summary["paired"]
    rng = np.random.default_rng(1)
    scores, other = (rng.random(args.rows) < 0.7).astype(float), (rng.random(args.rows) < 0.8).astype(float)
    videos = [str(i % args.clips) for i in range(args.rows)]
    started = time.perf_counter()
    cluster_interval(other - scores, videos)
    mcnemar(scores, other)
    stats_s = time.perf_counter() - started
    print(f"{args.rows} rows over {args.clips} clips, 2 pipelines (stand-in engine and scorer, CPU)")
    print(f"  the two batch runs alone:           {batch_s:7.2f} s")
    print(f"  eval from scratch:                  {eval_s:7.2f} s  ({eval_s / batch_s:.2f}x the batch runs)")
    print(f"  eval again, all answered (scoring): {rescore_s:7.2f} s  ({rescore_s / batch_s:.1%} of the batch runs)")
    print(f"  one interval (10,000 resamples) and McNemar on {args.rows} items: {stats_s * 1000:.0f} ms")
    print(run.table)


if __name__ == "__main__":
    main()
