"""One batch video's work, wherever it runs (this process's threads or a Ray worker): prepare it, then
answer it; a failure of the video becomes its error line, a failure of the model stops the batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ..errors import KeyframeQAError, ModelError, OutOfMemory
from ..model.checkpoint import CheckpointInfo
from ..video.container import check_path
from .ask import PreparedVideo, answer_prepared, ask_when, check_when, prepare
from .batch_inputs import BatchItem


@dataclass(frozen=True)
class WhenPending:
    """A --when video: nothing to decode ahead, since the frames are chosen by the search (with the engine)."""

    request: object  # the video's AskRequest


def answer_item(item: BatchItem, settings: str, prepared: Union[PreparedVideo, WhenPending], engine) -> tuple:
    """(item, settings, record, error) for one prepared video; a ModelError is raised, not recorded."""
    try:
        if isinstance(prepared, WhenPending):  # --when: the search needs the engine, so it runs here
            report = ask_when(prepared.request, engine, warn_cut=False)
        else:
            report = answer_prepared(prepared, engine, warn_cut=False)
        cut = sum(1 for answer in report["answers"] if answer.get("truncated"))
        return item, settings, dict(report, status="ok", settings=settings, truncated_replies=cut), None
    except OutOfMemory as exc:
        return item, settings, None, str(exc)  # this video's frames, even at half the budget: the rest may fit
    except ModelError:
        raise  # the model or server is broken for every video: stop the batch
    except KeyframeQAError as exc:
        return item, settings, None, str(exc)


def prepare_item(
    entry, checkpoint: CheckpointInfo, scorer=None
) -> tuple[BatchItem, str, Union[PreparedVideo, WhenPending, None], Optional[str]]:
    """(item, settings, prepared video or None, error or None) for one batch entry; never raises for a video.
    `scorer`: --relevant's scorer, already loaded (else the request's is loaded when needed)."""
    item, request, settings = entry
    if item.error:
        return item, settings, None, item.error
    try:
        if request.when is not None:
            check_when(request)  # a manifest row's `at` beside --when, say
            check_path(request.video)
            return item, settings, WhenPending(request), None
        return item, settings, prepare(request, checkpoint, quiet=True, scorer=scorer), None
    except KeyframeQAError as exc:
        return item, settings, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad video must not end the batch
        return item, settings, None, f"unexpected {type(exc).__name__}: {exc}"
