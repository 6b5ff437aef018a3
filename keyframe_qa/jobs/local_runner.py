"""The batch runner in this process: decoding runs ahead on a thread pool while the engine answers, one
video at a time, `concurrency` at once (a server), or in generate batches (`batch_size`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ..engines import build_engine
from ..engines.batching import BatchingEngine
from ..model.checkpoint import CheckpointInfo
from ..video.frames import cpu_count
from .ask import PreparedVideo
from .batch_inputs import BatchItem
from .batch_work import answer_item, prepare_item

PREFETCH = 2  # videos decoded ahead of the model


def run_here(
    todo: list,
    spec,
    checkpoint: CheckpointInfo,
    engine,
    concurrency: int,
    finish: Callable,
    batch_size: int = 1,
    scorer=None,
) -> list[int]:
    """This process decodes ahead on a thread pool and answers (up to `concurrency` at once, or with
    `batch_size` above 1, that many videos on worker threads whose prompts are generated together).

    Returns the rows of each batch generated (empty unless `batch_size` is above 1)."""
    if batch_size > 1:
        concurrency = batch_size
    state = {"stop": False, "engine": engine, "batch_size": batch_size}

    def done(item, settings, record, error) -> None:
        state["stop"] = finish(item, settings, record, error)  # finish's answer stays True once it is

    prepare_pool = ThreadPoolExecutor(max_workers=1 if concurrency == 1 else min(concurrency, cpu_count()))
    answer_pool = ThreadPoolExecutor(max_workers=concurrency) if concurrency > 1 else None
    pending: deque[Future] = deque()  # prepared videos, in input order
    running: set[Future] = set()  # answers in flight (concurrency above 1)
    upcoming = iter(todo)

    def top_up() -> None:
        while len(pending) < PREFETCH + concurrency:
            entry = next(upcoming, None)
            if entry is None:
                return
            pending.append(prepare_pool.submit(prepare_item, entry, checkpoint, scorer))

    def collect(block: bool) -> None:
        if not running:
            return
        finished, _ = wait(running, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in finished:
            running.discard(future)
            done(*future.result())  # a ModelError stops the batch here

    try:
        top_up()
        while pending and not state["stop"]:
            if answer_pool is not None:
                while len(running) >= concurrency:
                    collect(block=True)
            # Batching: every free worker's video is started together (decoding runs ahead, so they are
            # usually ready), so their prompts meet in one batch instead of the first running alone.
            slots = concurrency - len(running) if batch_size > 1 else 1
            group: list = []
            while pending and len(group) < slots:
                group.append(pending.popleft().result())
            top_up()  # the next videos decode while these are answered
            ready = []
            for item, settings, prepared, error in group:
                if error is not None:
                    done(item, settings, None, error)
                else:
                    ready.append((item, settings, prepared))
            if state["stop"] or not ready:
                continue
            engine_now = _engine(state, spec, checkpoint)
            if answer_pool is None:
                for entry in ready:
                    done(*answer_item(*entry, engine_now))
                continue
            if batch_size > 1:
                for _ in ready:
                    engine_now.join()  # all counted before the first of them asks
            answer = _answer_as_worker if batch_size > 1 else answer_item
            for entry in ready:
                running.add(answer_pool.submit(answer, *entry, engine_now))
            collect(block=False)
        while running:  # what is in flight is finished and written, fail-fast or not
            collect(block=True)
    finally:
        for future in list(pending) + list(running):
            future.cancel()
        prepare_pool.shutdown(wait=False, cancel_futures=True)
        if answer_pool is not None:
            answer_pool.shutdown(wait=False, cancel_futures=True)
    return list(state["engine"].batches) if isinstance(state["engine"], BatchingEngine) else []


def _engine(state: dict, spec, checkpoint: CheckpointInfo):
    # Built on the first video that needs answering; the next videos keep decoding meanwhile.
    if state["engine"] is None:
        state["engine"] = build_engine(spec, checkpoint)
    if state["batch_size"] > 1:
        if not isinstance(state["engine"], BatchingEngine):
            state["engine"] = BatchingEngine(state["engine"], state["batch_size"])
    return state["engine"]


def _answer_as_worker(item: BatchItem, settings: str, prepared: PreparedVideo, engine) -> tuple:
    """`answer_item` on a worker thread joined to a BatchingEngine; it leaves when done, so batches never
    wait for it in vain."""
    try:
        return answer_item(item, settings, prepared, engine)
    finally:
        engine.leave()
