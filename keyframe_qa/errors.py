"""Domain errors. The library raises these; the CLI turns them into one `Error: ...` line."""


class KeyframeQAError(Exception):
    """A run-time failure the user can act on (exit code 1)."""

    exit_code = 1


class UsageError(KeyframeQAError):
    """Bad options or arguments: a bad timestamp, an impossible budget (exit code 2)."""

    exit_code = 2


class VideoError(KeyframeQAError):
    """The video cannot be opened, has no video stream, or cannot be decoded."""


class ModelError(KeyframeQAError):
    """The model cannot be found, loaded or run."""


class ServerRefusal(ModelError):
    """The server cannot serve what was asked, for any video: video mode from a server that is not vLLM, or
    from a vLLM that does not take the frames' times. A usage error (exit code 2), and, as a ModelError, it
    stops a batch at once instead of failing every video alike."""

    exit_code = 2


class ImageLimit(UsageError):
    """The server takes fewer images in one prompt than the request sends (vLLM's --limit-mm-per-prompt)."""

    def __init__(self, message: str, limit: int):
        super().__init__(message)
        self.limit = limit  # the most images the server takes in one prompt


class OutOfMemory(ModelError):
    """The accelerator ran out of memory on one prompt; a smaller visual budget may fit (`ask` retries once,
    with half)."""


def reason(exc: BaseException, *, lower: bool = False) -> str:
    """A library or system error as a short phrase for a message ("permission denied")."""
    text = str(getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc).strip().rstrip(".")
    text = text or type(exc).__name__
    return text.lower() if lower else text
