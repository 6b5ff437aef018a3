"""keyframe-qa: ask a vision-language model questions about exact moments in a video.

Library use (no model needed for frames; torch is imported only when a model is loaded)::

    from keyframe_qa import extract_frames, ask, AskRequest
    frames = extract_frames("video.mp4", [5.5, 10.0])
    report = ask(AskRequest(video="video.mp4", questions=("Same person?",), times=(5.5, 10.0)))
"""

from .errors import KeyframeQAError, ModelError, UsageError, VideoError
from .grounding import parse_boxes
from .jobs.ask import AskRequest, ask, extract_frames, load_model

__all__ = [
    "AskRequest", "ask", "extract_frames", "load_model", "parse_boxes",
    "KeyframeQAError", "ModelError", "UsageError", "VideoError",
]
__version__ = "0.1.0"
