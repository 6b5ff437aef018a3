"""keyframe-qa: ask a vision-language model questions about exact moments in a video.

Library use (no model needed for frames; torch is imported only when a model is loaded)::

    from keyframe_qa import AskRequest, SelectionRequest, ask, extract_frames
    frames = extract_frames("video.mp4", [5.5, 10.0])
    report = ask(AskRequest(video="video.mp4", questions=("Same person?",),
                            selection=SelectionRequest(times=(5.5, 10.0))))

The names below are imported when first used, so `extract_frames` loads the frame reader and not the
model's side of the package (docs/library.md).
"""

from importlib import import_module
from typing import Any

from .errors import KeyframeQAError, ModelError, ServerRefusal, UsageError, VideoError

# public name -> the module that holds it
_LAZY = {
    "AskRequest": "keyframe_qa.jobs.ask",
    "ask": "keyframe_qa.jobs.ask",
    "load_model": "keyframe_qa.jobs.ask",
    "extract_frames": "keyframe_qa.jobs.frames",
    "SelectionRequest": "keyframe_qa.selection.select",
    "SceneOptions": "keyframe_qa.selection.scenes",
    "EngineSpec": "keyframe_qa.engines",
    "build_engine": "keyframe_qa.engines",
    "GenerationRequest": "keyframe_qa.model.generation",
    "WhenRequest": "keyframe_qa.jobs.when",
    "find_moments": "keyframe_qa.jobs.when",
    "parse_boxes": "keyframe_qa.replies.boxes",
    "parse_moments": "keyframe_qa.replies.moments",
    "run_eval": "keyframe_qa.jobs.eval",
}

__all__ = [
    "AskRequest",
    "EngineSpec",
    "GenerationRequest",
    "KeyframeQAError",
    "ModelError",
    "SceneOptions",
    "SelectionRequest",
    "ServerRefusal",
    "UsageError",
    "VideoError",
    "WhenRequest",
    "ask",
    "build_engine",
    "extract_frames",
    "find_moments",
    "load_model",
    "parse_boxes",
    "parse_moments",
    "run_eval",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keyframe_qa' has no attribute {name!r}")
