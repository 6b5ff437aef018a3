"""keyframe-qa: ask a vision-language model questions about exact moments in a video.

Library use (no model needed for frames; torch is imported only when a model is loaded)::

    from keyframe_qa import extract_frames, ask, AskRequest
    frames = extract_frames("video.mp4", [5.5, 10.0])
    report = ask(AskRequest(video="video.mp4", questions=("Same person?",), times=(5.5, 10.0)))

The names below are imported when first used, so `keyframe-qa frames` loads the frame reader and not the
model's side of the package.
"""

from importlib import import_module

from .errors import KeyframeQAError, ModelError, UsageError, VideoError

# public name -> the module that holds it
_LAZY = {
    "AskRequest": "keyframe_qa.jobs.ask",
    "ask": "keyframe_qa.jobs.ask",
    "extract_frames": "keyframe_qa.jobs.ask",
    "load_model": "keyframe_qa.jobs.ask",
    "parse_boxes": "keyframe_qa.grounding",
    "parse_moments": "keyframe_qa.moments",
}

__all__ = [
    "AskRequest", "ask", "extract_frames", "load_model", "parse_boxes", "parse_moments",
    "KeyframeQAError", "ModelError", "UsageError", "VideoError",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keyframe_qa' has no attribute {name!r}")
