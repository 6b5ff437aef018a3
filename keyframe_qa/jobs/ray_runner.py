"""Batch on a Ray cluster (`batch --ray`): Ray Data prepares, an actor pool answers, this process writes.

- Connecting follows Ray's own convention: `RAY_ADDRESS` if set, else a cluster started with
  `ray start` on this machine, else a new local one (whose workers run this very Python).
- Preparing a video (probe, exact frames, shrink each frame to its budget with the engine's own
  resize) runs as Ray Data CPU tasks near the data; frames travel budget-sized, so the object store
  holds a few hundred kilobytes a video rather than full frames.
- Answering runs in an actor pool: each actor holds one engine, the transformers model (one GPU an
  actor when the cluster has GPUs) or an OpenAI-compatible client. Ray restarts an actor that dies and
  retries what it held.
- This process receives the results as they finish and writes each as one line through the same
  results file, resume and summary as a plain batch (batch.py), so no video is written twice.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
from collections.abc import Callable
from typing import Any

from ..engines import build_engine
from ..errors import ModelError, UsageError, reason
from ..model.checkpoint import CheckpointInfo
from .batch_work import answer_item, prepare_item

INSTALL_HINT = "pip install 'keyframe-qa[ray]' (from a clone: uv sync --extra ray)"
PREPARE_CALLS = 100


def check_ray() -> None:
    """A usage error, before any work, when Ray (with Ray Data) is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--ray needs Ray with Ray Data: {INSTALL_HINT}") from exc


def connect() -> str:
    """Join the cluster Ray's convention names, or start a local one; returns which."""
    import ray

    if ray.is_initialized():
        return "connected"
    _quiet()
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if os.environ.get("RAY_ADDRESS"):
        _check_reachable(os.environ["RAY_ADDRESS"])
        try:
            ray.init(**quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ModelError(
                f"cannot join the Ray cluster at RAY_ADDRESS={os.environ['RAY_ADDRESS']}: "
                f"{' '.join(str(exc).split())[:200]}"
            ) from exc
        return f"cluster at {os.environ['RAY_ADDRESS']}"
    try:
        ray.init(address="auto", **quiet)
        return "the cluster started on this machine with `ray start`"
    except (ConnectionError, RuntimeError):
        pass
    # A local cluster: its workers must run this interpreter, not one Ray builds with `uv run`.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(include_dashboard=False, **quiet)
    return "a new local cluster"


def _check_reachable(address: str) -> None:
    """Refuse at once an address nothing listens on: Ray itself retries for minutes before it gives up."""

    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local" and other forms Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return
    except OSError as exc:
        raise ModelError(
            f"cannot join the Ray cluster at RAY_ADDRESS={address}: "
            f"{reason(exc, lower=True)} (is its head node running?)"
        ) from exc


def run_on_ray(todo: list, spec, checkpoint: CheckpointInfo, finish: Callable, *, actors: int = 1) -> None:
    """Prepare and answer `todo` (batch entries) on the cluster, handing each result to `finish`.

    `finish(item, settings, record, error)` writes the line and returns True to stop (fail-fast).
    """
    if not todo:
        return
    import ray
    import ray.data

    connect()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # our own progress line is on stderr already
    gpus = spec.engine == "transformers" and spec.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
    rows = [{"entry": pickle.dumps(entry)} for entry in todo]
    dataset = (
        ray.data.from_items(rows)
        # CPU tasks (Ray retries one whose worker dies). A fresh worker process every PREPARE_CALLS videos
        # bounds whatever a decoder leaks; that argument also keeps Ray Data from fusing this stage into
        # the engine actors, which must not decode.
        # (Ray's types know map() over a one-argument function or a class without constructor arguments.)
        .map(_prepare_row, fn_kwargs={"checkpoint": checkpoint}, num_cpus=1, max_calls=PREPARE_CALLS)  # type: ignore[arg-type]
        # The engine actors. Ray Data restarts one that dies (max_restarts -1) and retries the row it
        # held; this process writes each result once, when it arrives.
        .map(
            _AnswerActor,  # type: ignore[arg-type]
            fn_constructor_kwargs={"spec": spec, "checkpoint": checkpoint},
            concurrency=actors,
            num_cpus=0 if gpus else 1,
            num_gpus=1 if gpus else 0,
        )
    )
    for row in dataset.iter_rows():
        result = pickle.loads(row["result"])
        if result[0] == "fatal":  # the engine is broken for every video: stop, as a plain batch does
            raise ModelError(result[1])
        if finish(*result[1]):
            break


def _prepare_row(row: dict, checkpoint: CheckpointInfo) -> dict:
    """A Ray Data task: probe and read the exact frames, shrunk to their budgets for the trip."""

    # prepare() already shrank the frames to their budgets as they were decoded (batch writes no
    # full-size pictures), so they travel small.
    item, settings, prepared, error = prepare_item(pickle.loads(row["entry"]), checkpoint)
    return {"entry": pickle.dumps((item, settings, prepared, error))}


class _AnswerActor:
    """A Ray Data actor holding one engine for its whole life."""

    def __init__(self, spec, checkpoint: CheckpointInfo):

        self.engine = None
        self.fatal = None
        try:
            self.engine = build_engine(spec, checkpoint)
        except ModelError as exc:
            self.fatal = str(exc)

    def __call__(self, row: dict) -> dict:

        item, settings, prepared, error = pickle.loads(row["entry"])
        if self.fatal is not None:
            return {"result": pickle.dumps(("fatal", self.fatal))}
        if error is not None:
            return {"result": pickle.dumps(("line", (item, settings, None, error)))}
        try:
            return {"result": pickle.dumps(("line", answer_item(item, settings, prepared, self.engine)))}
        except ModelError as exc:
            return {"result": pickle.dumps(("fatal", str(exc)))}


def _quiet() -> None:
    # Ray Data logs every stage to stderr; the batch's own progress and summary say what matters.
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Ray Data keeps an actor's constructor in the object store, and the core worker logs an error-level
    # note about that for every restartable actor; only its fatal messages concern the user.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
