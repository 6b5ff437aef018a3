"""--relevant's scorer, brought by the job that runs a selection (the selection stage never loads a model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ..selection.select import SelectionRequest


def scorer_loader(request: SelectionRequest) -> Optional[Callable[[], Any]]:
    """What loads the request's --relevant scorer when the selection asks for it (once per process:
    engines/scorer.py keeps it), or None when the request does not choose frames by relevance."""
    if request.relevant is None:
        return None

    def load() -> Any:
        from ..engines.scorer import load_scorer

        return load_scorer(request.scorer, request.device, request.dtype)

    return load
