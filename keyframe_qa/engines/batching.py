"""Batched generation across videos: `answer` calls from several threads become one `answer_batch` call.

`batch --batch-size N` answers up to N videos at once on worker threads. Each worker runs the usual
per-video path (budgets, prompt, boxes, report), and its engine is this front: a call to `answer`
waits until N prompt rows are gathered, or until every worker is waiting on the model, and then one
thread runs them all through the engine's `answer_batch` (one `generate` call, rows left-padded). Who
is waiting is counted, not timed, so a batch never stalls on a worker that has nothing more to ask.
A batch that runs out of accelerator memory is run again one call at a time, so only a prompt that
does not fit on its own gets the error.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

from ..errors import OutOfMemory
from ..records import GenerationSettings, Reply, VisualPrompt


@dataclass
class _Call:
    """One `answer` call waiting for its batch (mutable: filled in by the thread that runs the batch)."""

    prompt: VisualPrompt  # the frames
    questions: Sequence[str]  # one row each
    settings: GenerationSettings  # rows share a batch only with rows of the same settings
    done: threading.Event = field(default_factory=threading.Event)  # set when replies or error are in
    replies: Optional[list] = None  # one Reply per question
    error: Optional[BaseException] = None  # what the batch raised, raised again in the caller's thread


class BatchingEngine:
    """An engine with `answer_batch` behind the one-call `answer` interface, gathering calls across threads."""

    def __init__(self, engine, batch_size: int):
        self.engine = engine
        self.batch_size = batch_size
        self._state = threading.Lock()  # guards the counts and the waiting list
        self._model = threading.Lock()  # one batch on the model at a time
        self._waiting: list[_Call] = []
        self._workers = 0  # workers joined and not yet left
        self._in_flight = 0  # workers whose call is in a running batch
        self.batches: list[int] = []  # rows of each batch run, in order (for the report and the tests)

    def __getattr__(self, name):
        # family, model_id, checkpoint, context_length, describe(), load_seconds: the engine's own.
        return getattr(self.engine, name)

    def join(self) -> None:
        """Count one more worker that may call `answer` (before its thread starts, so that the workers
        started together are all counted before the first of them asks)."""
        with self._state:
            self._workers += 1

    def leave(self) -> None:
        """A worker is done: what the others wait for may now be all there is."""
        with self._state:
            self._workers -= 1
            batch = self._take_ready()
        self._run(batch)

    def answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        """The replies to `questions`, generated in a batch with other workers' calls."""
        call = _Call(prompt, list(questions), settings)
        with self._state:
            self._waiting.append(call)
            batch = self._take_ready()
        self._run(batch)
        call.done.wait()
        if call.error is not None:
            raise call.error
        if call.replies is None:
            raise RuntimeError("a batched call ended with neither replies nor an error")
        return call.replies

    def _take_ready(self) -> list[_Call]:
        """Calls to run now (under the state lock): a full batch, or whatever waits when no other worker
        can add to it (every worker is waiting and none is in a running batch that will come back)."""
        if not self._waiting:
            return []
        rows = sum(len(c.questions) for c in self._waiting)
        everyone_waits = self._in_flight == 0 and len(self._waiting) >= self._workers
        if rows < self.batch_size and not everyone_waits:
            return []
        # Rows share a batch only with rows of the same settings; a call with more questions than
        # `batch_size` runs as a batch of its own.
        first = self._waiting[0].settings
        batch: list[_Call] = []
        taken = 0
        for call in list(self._waiting):
            if call.settings != first:
                continue
            if batch and taken + len(call.questions) > self.batch_size:
                break
            batch.append(call)
            taken += len(call.questions)
        for call in batch:
            self._waiting.remove(call)
        self._in_flight += len(batch)
        return batch

    def _run(self, batch: list[_Call]) -> None:
        """Run the batch on the model and wake its callers; then whatever became ready meanwhile."""
        while batch:
            with self._model:
                try:
                    self._generate(batch)
                except OutOfMemory as exc:
                    if len(batch) == 1:
                        batch[0].error = exc
                    else:
                        # Together they did not fit: one at a time, so only a prompt that does not fit on
                        # its own gets the error (and its video retries with half the budget).
                        for call in batch:
                            try:
                                self._generate([call])
                            except BaseException as exc:  # noqa: BLE001 - given to that call's thread
                                call.error = exc
                except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets the failure
                    for call in batch:
                        call.error = exc
            with self._state:
                self._in_flight -= len(batch)
                for call in batch:
                    call.done.set()
                # Calls that arrived while the model was busy may now be the only thing left to run.
                batch = self._take_ready()

    def _generate(self, calls: list[_Call]) -> None:
        """One `answer_batch` call for these calls (the model lock held); fills in their replies."""
        self.batches.append(sum(len(c.questions) for c in calls))
        replies = self.engine.answer_batch([(c.prompt, c.questions) for c in calls], calls[0].settings)
        for call, call_replies in zip(calls, replies):
            call.replies = call_replies
