"""The OpenAI engine: any OpenAI-compatible chat server (vLLM, SGLang, `transformers serve`) answers.

Frames go as PNG images already at their budgeted size, so the server's own resize is a no-op and
the visual tokens are the ones we planned. Video mode (vLLM only) sends the same frames as one video,
`data:video/jpeg;base64,<png>,<png>,...` (vLLM decodes each part with PIL, which reads the format from
the bytes: the pixels arrive exact), with the frames' true times in the request's `media_io_kwargs`
(time_positions.video_metadata, what the in-process engine tells its processor); vLLM takes those
only when started with --trust-request-mm-kwargs. That is checked on every reply: the server's
`prompt_tokens` must equal our count of the same prompt, made with the checkpoint's own tokenizer
and chat template when they are on this machine (`tokenizers` and `jinja2`, no torch), else with a
lower bound. A mismatch means the server resized the frames, and is an error.

HTTP is the standard library's http.client: one request per question, safe to call from many threads
at once (batch --concurrency). Nothing the server sends is trusted: the whole exchange must end within
--timeout (a watchdog closes the socket of a reply that drips), a reply is read up to MAX_REPLY_BYTES
and an error's body up to MAX_ERROR_BYTES, and the reply must be a chat completion with fields of the
right types. Transient failures (connection reset, 429, 502, 503, 504) are retried with backoff; a
server that cannot be reached, a model it does not serve or a refused key stop the run (ModelError);
a failure of one request is that video's error.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Optional

import numpy as np

from ..errors import ImageLimit, KeyframeQAError, ModelError, ServerRefusal, UsageError, reason
from ..model.checkpoint import CheckpointInfo, checkpoint_files
from ..model.prompt import prompt_parts
from ..model.time_positions import patch_times, video_metadata
from ..records import GenerationSettings, Reply, VisualPrompt
from .resize import resize_to_budget

RETRIES = 4  # tries of a request that failed in a passing way
BACKOFF_S = 0.5  # first wait; doubles with each retry
TRANSIENT_STATUS = {429, 502, 503, 504}
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a chat completion of thousands of tokens is kilobytes
MAX_ERROR_BYTES = 64 * 1024  # of an error's body: enough for its detail
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{1,40}\|>")
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
TRUST_FLAG = "--trust-request-mm-kwargs"


class ReplyTimeout(Exception):
    """The whole exchange with the server outlasted --timeout."""


class OpenAIEngine:
    """A model served behind an OpenAI-compatible /v1/chat/completions endpoint."""

    name = "openai"
    can_batch = False  # the server batches requests itself (batch --concurrency keeps it busy)

    @classmethod
    def build(cls, spec, checkpoint: CheckpointInfo) -> OpenAIEngine:
        """The engine for a resolved EngineSpec (the registry's entry point)."""
        return cls(spec, checkpoint)

    def __init__(self, spec, checkpoint: CheckpointInfo):
        self.model_id = spec.model_id
        self.base_url = spec.base_url.rstrip("/")
        self.checkpoint = checkpoint
        self.family = checkpoint.family
        self.context_length = checkpoint.context_length
        self.timeout = spec.timeout
        self._key = os.environ.get(spec.api_key_env) or None  # read here, sent in a header, never recorded
        self._optional = {"skip_special_tokens": False}  # asked for; dropped if the server refuses them
        self._logprobs: Optional[bool] = None  # whether the server returns first-token logprobs (unknown yet)
        self._takes_video = False  # whether the server was found to take our frames as a video (asked once)
        self.counter = PromptCounter.for_checkpoint(self.model_id)
        started = time.perf_counter()
        self._post(
            {"model": self.model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}
        )  # the server is there and serves this model, before any frame is sent
        self.load_seconds = time.perf_counter() - started

    def describe(self) -> dict:
        """The JSON `model` object's engine part (the key is never part of it)."""
        return {
            "id": self.model_id,
            "family": self.family.name,
            "device": None,
            "dtype": None,
            "engine": self.name,
            "base_url": self.base_url,
            "prompt_check": "exact" if self.counter is not None else "lower-bound",
        }

    def answer(self, prompt: VisualPrompt, questions: Sequence[str], settings: GenerationSettings) -> list[Reply]:
        """One request per question; the frames are encoded once for all of them."""
        media = self._media(prompt)
        return [self._ask(prompt, question, media, settings) for question in questions]

    def check_video(self) -> None:
        """Refuse video mode, before any frame is sent, unless the server is vLLM and takes the frames' times
        (`media_io_kwargs`, which it takes only when started with --trust-request-mm-kwargs). Asked once."""
        if self._takes_video:
            return
        owner = self._owner()
        if owner != "vllm":
            said = f"its /models says owned_by {owner!r}" if owner else "its /models does not say it is vLLM"
            raise ServerRefusal(
                f"--mode video with --engine openai needs a vLLM server, the one that takes "
                f"keyframe-qa's exact frames with their true times; {self.base_url} is not one "
                f"({said}): use --mode images"
            )
        self._post(
            {
                "model": self.model_id,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 1,
                "temperature": 0,
                "media_io_kwargs": {"video": {"num_frames": -1}},
            }
        )
        self._takes_video = True

    def yes_probability(self, prompt: VisualPrompt, question: str) -> Optional[float]:
        """P(yes) / (P(yes) + P(no)) from the first reply token's logprobs, where the server returns them
        (vLLM and SGLang do); None when it does not, and the caller reads the reply's text instead."""
        if self._logprobs is False:
            return None
        urls, extra = self._media(prompt)
        _, content = self._content(prompt, question, urls)
        body = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 10,
            **extra,
        }
        try:
            reply = self._post(body)
        except ModelError:
            raise  # the server is gone: that is not a missing feature
        except KeyframeQAError:
            self._logprobs = False  # a server that refuses logprobs: read the text from now on
            return None
        probability = _yes_from_logprobs(reply)
        self._logprobs = probability is not None
        return probability

    def _ask(
        self, prompt: VisualPrompt, question: str, media: tuple[list[str], dict], settings: GenerationSettings
    ) -> Reply:
        urls, extra = media
        parts, content = self._content(prompt, question, urls)
        body = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": settings.max_new_tokens,
            **_sampling(settings),
            **extra,
        }
        choice, text, prompt_tokens, completion_tokens = _completion(self._post(body), self.base_url)
        self._check_prompt_tokens(prompt_tokens, parts, prompt)
        return Reply(
            raw=text,
            text=_SPECIAL_TOKEN.sub("", text).strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            truncated=choice.get("finish_reason") == "length",
        )

    def _media(self, prompt: VisualPrompt) -> tuple[list[str], dict]:
        """(the data URLs the prompt's parts point at, the request's extra fields). Frames are resized as the
        in-process engine resizes them (resize.py): the server keeps them, and sees the same pixels."""
        if prompt.mode == "video":
            self.check_video()
        pngs = [
            _png_base64(resize_to_budget(image, budget, self.model_id))
            for image, budget in zip(prompt.images, prompt.budgets)
        ]
        if prompt.mode != "video":
            return ["data:image/png;base64," + png for png in pngs], {}
        # num_frames -1: every frame sent (vLLM would otherwise keep 32 and say nothing).
        told = {**video_metadata(prompt.times), "num_frames": -1}
        return ["data:video/jpeg;base64," + ",".join(pngs)], {"media_io_kwargs": {"video": told}}

    @staticmethod
    def _content(prompt: VisualPrompt, question: str, urls: list[str]) -> tuple[list, list]:
        """(the prompt's parts, the user turn's content in the chat API's shape)."""
        parts = prompt_parts(prompt, question)
        content: list[dict] = []
        for kind, value in parts:
            if kind == "text":
                content.append({"type": "text", "text": value})
            elif kind == "video":
                content.append({"type": "video_url", "video_url": {"url": urls[0]}})
            elif isinstance(value, int):  # an image: its frame's position
                content.append({"type": "image_url", "image_url": {"url": urls[value]}})
        return parts, content

    def _check_prompt_tokens(self, reported: int, parts: list, prompt: VisualPrompt) -> None:
        visual = [b.visual_tokens for b in prompt.budgets]
        if prompt.mode == "video":
            visual = [sum(visual)]  # one video: its tokens, placed per temporal patch
        if self.counter is not None:
            times = (
                patch_times(video_metadata(prompt.times), self.family.temporal_patch_size)
                if prompt.mode == "video" and self.family.prints_times
                else None
            )
            expected, how = self.counter.count(parts, visual, times), ""
            # Qwen3-VL's video markers: processors of transformers 5.10 and later expand the bare video token
            # (vLLM follows the processor it runs); earlier ones replaced it with its vision start and end
            # around it, two tokens fewer. Either is the frames we sent.
            wrong = reported not in ((expected, expected - 2) if times is not None else (expected,))
        else:
            expected, how = sum(visual) + 2 * len(visual), "at least "
            wrong = reported < expected
        if wrong:
            raise ModelError(
                f"the server counted {reported} prompt tokens where keyframe-qa planned {how}{expected} for the "
                f"same prompt: it resized the frames (its max_pixels is below the budget?). Lower --max-pixels "
                f"or --max-visual-tokens, or raise the server's image size limit"
            )

    def _post(self, body: dict) -> dict:
        """POST to /chat/completions with retries; errors mapped to what the user can do about them."""
        body = {**body, **self._optional}
        wait, retries = BACKOFF_S, 0

        def again() -> bool:  # a passing failure: wait and try again, RETRIES tries in all
            nonlocal wait, retries
            if retries >= RETRIES - 1:
                return False
            time.sleep(wait)
            wait, retries = wait * 2, retries + 1
            return True

        while True:
            try:
                status, data = self._exchange(json.dumps(body).encode())
            except ReplyTimeout as exc:
                raise KeyframeQAError(
                    f"{self.base_url} did not answer within {self.timeout:g}s (raise --timeout for long replies)"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                if again():
                    continue
                raise ModelError(
                    f"cannot reach the server at {self.base_url}: {reason(exc, lower=True)} (is it "
                    f"running, and is --base-url right?)"
                ) from exc
            if status >= 400:
                detail = _detail(data, status)
                refused = [key for key in list(body) if key in self._optional and key in detail]
                if status in (400, 422) and refused:
                    # An extension this server does not take: ask without it from now on. Not a try: each
                    # pass drops a field, so this ends.
                    for key in refused:
                        self._optional.pop(key, None)
                        body.pop(key, None)
                    continue
                if status in TRANSIENT_STATUS and again():
                    continue
                raise self._http_error(status, detail)
            return _decode_reply(data, self.base_url)

    def _owner(self) -> Optional[str]:
        """Who the server's /models says serves this model (`owned_by`: "vllm" for vLLM), or None when it does
        not say (no list, not this model, not a string)."""
        try:
            status, data = self._exchange(None, "/models")
        except (ReplyTimeout, OSError, http.client.HTTPException) as exc:
            raise ModelError(f"cannot reach the server at {self.base_url}: {reason(exc, lower=True)}") from exc
        if status >= 400:
            return None
        try:
            listed = _decode_reply(data, self.base_url).get("data")
        except KeyframeQAError:
            return None
        for entry in listed if isinstance(listed, list) else []:
            if isinstance(entry, dict) and entry.get("id") == self.model_id:
                owner = entry.get("owned_by")
                return owner[:100] if isinstance(owner, str) else None
        return None

    def _exchange(self, payload: Optional[bytes], path: str = "/chat/completions") -> tuple[int, bytes]:
        """(status, body) of one POST of `payload` to `path` (a GET without one). The whole exchange, from
        connecting to the last byte, must end within --timeout (a server that drips a byte a second is cut
        off, not waited for), and the body read is capped: MAX_REPLY_BYTES for a reply, MAX_ERROR_BYTES of
        an error's detail."""
        parts = urllib.parse.urlsplit(self.base_url)
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(parts.hostname, parts.port, timeout=self.timeout)
        expired = threading.Event()
        sockets: list[
            socket.socket
        ] = []  # the connection's socket (http.client lets go of it once the response owns it)

        def expire() -> None:  # unblocks a read that waits on the socket: the reply is over time
            expired.set()
            for sock in sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            connection.connect()
            sockets.append(connection.sock)
            if expired.is_set():
                raise ReplyTimeout()
            target = (parts.path.rstrip("/") or "") + path + (f"?{parts.query}" if parts.query else "")
            if payload is None:
                connection.request("GET", target, headers=self._headers())
            else:
                connection.request("POST", target, body=payload, headers=self._headers())
            response = connection.getresponse()
            limit = MAX_REPLY_BYTES if response.status < 400 else MAX_ERROR_BYTES
            data = response.read(limit + 1)
            if expired.is_set():
                raise ReplyTimeout()
            if len(data) > limit and response.status < 400:
                raise KeyframeQAError(
                    f"{self.base_url} sent a reply larger than {MAX_REPLY_BYTES // (1024 * 1024)} "
                    f"MiB, which no chat completion reaches; is --base-url a chat server?"
                )
            return response.status, data[:limit]
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set() or isinstance(exc, (socket.timeout, TimeoutError)):
                raise ReplyTimeout() from exc
            raise
        finally:
            timer.cancel()
            connection.close()

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _http_error(self, code: int, detail: str) -> KeyframeQAError:
        where = f"{self.base_url} answered {code}"
        if code in (401, 403):
            return ModelError(
                f"{where}: the API key was refused ({detail}); set it in the variable --api-key-env names"
            )
        if code == 404 or (code == 400 and self.model_id in detail):
            return ModelError(
                f"{where}: model {self.model_id!r} is not served there, or the URL is not its /v1 endpoint ({detail})"
            )
        if code == 400 and "media_io_kwargs" in detail:
            return ServerRefusal(
                f"{where}: it refuses the frames' times in media_io_kwargs ({detail}); start vLLM "
                f"with {TRUST_FLAG} for --mode video (it then takes keyframe-qa's exact frames with "
                f"their true times), or use --mode images"
            )
        limit = image_limit(detail) if code == 400 else None
        if limit is not None:
            return ImageLimit(
                f"{self.base_url} takes at most {limit} images in one prompt ({detail}): pick {limit} "
                f"frames or fewer, give --max-images {limit} (when then fits its windows to it), or "
                f"raise the server's limit (vLLM: --limit-mm-per-prompt '{{\"image\": N}}')",
                limit,
            )
        return KeyframeQAError(f"{where}: {detail}")


_IMAGE_LIMIT = re.compile(r"at most (\d{1,9}) image\(?s?\)? (?:may|can) be provided", re.IGNORECASE)


def image_limit(detail: str) -> Optional[int]:
    """The per-prompt image limit a server's refusal states (vLLM: "At most 16 image(s) may be provided in one
    prompt"), or None."""
    found = _IMAGE_LIMIT.search(detail or "")
    return int(found.group(1)) if found else None


def check_images(count: int, max_images: Optional[int], base_url: Optional[str]) -> None:
    """Refuse, before any work, a prompt of more images than the server takes (--max-images)."""
    if max_images is not None and count > max_images:
        raise ImageLimit(
            f"{count} frames in one prompt, but {base_url} takes at most {max_images} images in one "
            f"prompt (--max-images {max_images}): pick {max_images} or fewer, use --per-frame, or raise "
            f"the server's limit (vLLM: --limit-mm-per-prompt '{{\"image\": N}}')",
            max_images,
        )


def _sampling(settings: GenerationSettings) -> dict:
    """OpenAI sampling fields; top_k and repetition_penalty are vLLM/SGLang extensions, sent only if set."""
    fields: dict = {"temperature": settings.temperature if settings.do_sample else 0}
    if settings.do_sample and settings.top_p is not None:
        fields["top_p"] = settings.top_p
    if settings.do_sample and settings.top_k is not None:
        fields["top_k"] = settings.top_k
    if settings.repetition_penalty is not None:
        fields["repetition_penalty"] = settings.repetition_penalty
    if settings.seed is not None:
        fields["seed"] = settings.seed
    return fields


def _png_base64(image: np.ndarray) -> str:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise KeyframeQAError("could not encode a frame as PNG")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


def _decode_reply(data: bytes, base_url: str) -> dict:
    try:
        reply = json.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise KeyframeQAError(f"{base_url} sent a reply nested too deeply to be a chat completion") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyframeQAError(f"{base_url} sent a reply that is not JSON") from exc
    if not isinstance(reply, dict):
        raise KeyframeQAError(
            f"{base_url} sent a reply that is not a chat completion (a JSON {type(reply).__name__}, not an object)"
        )
    return reply


def _completion(reply: dict, base_url: str) -> tuple[dict, str, int, int]:
    """(choice, text, prompt tokens, completion tokens) of a chat completion, each of the right type."""

    def wrong(what: str) -> KeyframeQAError:
        return KeyframeQAError(f"{base_url} sent a reply that is not a chat completion ({what})")

    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise wrong("no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise wrong("its choice has no message")
    content = message.get("content")
    if isinstance(content, list):  # content parts, as some servers send them
        if not all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
            raise wrong("its content parts are not text")
        content = "".join(p.get("text", "") for p in content)
    if content is not None and not isinstance(content, str):
        raise wrong(f"its content is a JSON {_json_kind(content)}, not text")
    usage = reply.get("usage")
    if not isinstance(usage, dict):
        raise wrong("no usage counts")
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise wrong(f"usage.{name} is not a count")
        counts.append(value)
    return choice, content or "", counts[0], counts[1]


def _yes_from_logprobs(reply) -> Optional[float]:
    """P(yes) / (P(yes) + P(no)) from a chat completion's first-token top logprobs, or None."""

    try:
        top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(top, list):
        return None
    totals = {"yes": 0.0, "no": 0.0}
    for entry in top[:50]:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            continue
        logprob = entry.get("logprob")
        if isinstance(logprob, bool) or not isinstance(logprob, (int, float)) or not math.isfinite(logprob):
            continue
        word = entry["token"].strip().lower()
        if word in totals:
            totals[word] += math.exp(min(0.0, logprob))
    both = totals["yes"] + totals["no"]
    return totals["yes"] / both if both > 0 else None


def _json_kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {int: "number", float: "number", dict: "object", list: "array"}.get(type(value), type(value).__name__)


def _detail(data: bytes, status: int) -> str:
    text = data.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            error = parsed.get("error")
            found = (
                parsed.get("detail")
                or parsed.get("message")
                or (error.get("message") if isinstance(error, dict) else error)
            )
            text = found if isinstance(found, str) and found else text
    except (ValueError, RecursionError):
        pass
    return " ".join(str(text).split())[:300] or f"status {status}, no detail"


class PromptCounter:
    """Counts a prompt's tokens as the model's processor does: the chat template rendered, each image
    placeholder expanded to its visual tokens, the text tokenised with the checkpoint's tokenizer."""

    def __init__(self, tokenizer_path: str, template: str):
        # `jinja2.ext` is a submodule: a bare `import jinja2` does not load it, and only a process where
        # something else had (transformers) found `jinja2.ext.loopcontrols`.
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        environment.filters["tojson"] = lambda value, **kwargs: json.dumps(value, **kwargs)
        environment.globals["raise_exception"] = _raise_template_error
        self.template = environment.from_string(template)
        self.tokenizer = Tokenizer.from_file(tokenizer_path)

    @classmethod
    def for_checkpoint(cls, model_id: str) -> Optional[PromptCounter]:
        """A counter from the checkpoint's files on this machine, or None when they are not here or cannot be
        read (a damaged tokenizer or template costs the exact check, nothing else)."""
        import jinja2

        files = checkpoint_files(
            model_id, ("tokenizer.json", "chat_template.jinja", "chat_template.json", "tokenizer_config.json")
        )
        template = None
        try:
            if "chat_template.jinja" in files:
                with open(files["chat_template.jinja"], encoding="utf-8") as handle:
                    template = handle.read()
            else:
                for name in ("chat_template.json", "tokenizer_config.json"):
                    if name in files:
                        with open(files[name], encoding="utf-8") as handle:
                            template = json.load(handle).get("chat_template")
                        if isinstance(template, str):
                            break
            if "tokenizer.json" not in files or not isinstance(template, str):
                return None
            return cls(files["tokenizer.json"], template)
        except (OSError, ValueError, jinja2.TemplateError):
            return None
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for a file it cannot parse
            if type(exc) is not Exception:
                raise
            return None

    def count(self, parts: list, visual: list[int], patch_times: Optional[Sequence[float]] = None) -> int:
        """Tokens of the prompt made of `parts` (see model/prompt.py): `visual` tokens per image, or the one
        video's tokens; with `patch_times` (Qwen3-VL), each temporal patch printed at its time before it."""
        content = [{"type": "text", "text": value} if kind == "text" else {"type": kind} for kind, value in parts]
        text = self.template.render(messages=[{"role": "user", "content": content}], add_generation_prompt=True)
        if any(kind == "video" for kind, _ in parts):
            if patch_times:
                each = visual[0] // len(patch_times)
                video = "".join(
                    f"<{t:.1f} seconds><|vision_start|>{VIDEO_PAD * each}<|vision_end|>" for t in patch_times
                )
            else:
                video = VIDEO_PAD * visual[0]
            text = text.replace(VIDEO_PAD, video, 1)
        pieces = text.split(IMAGE_PAD)
        expanded = pieces[0] + "".join(IMAGE_PAD * tokens + piece for tokens, piece in zip(visual, pieces[1:]))
        return len(self.tokenizer.encode(expanded, add_special_tokens=False).ids)


def _raise_template_error(message: str):
    raise ValueError(message)


def check_server_limits(
    checkpoint: CheckpointInfo, mode: str, min_pixels: Optional[int], max_pixels: Optional[int]
) -> None:
    """Refuse, before any work, per-frame limits outside what the served checkpoint's processor takes:
    the server would resize the frames (and its prompt would not be the one planned). In process the
    same options are honoured: the engine tells the processor the size it was given."""
    low_stated, high_stated = checkpoint.limits.pixels(mode)
    where = "processor config"
    how = (
        f"raise the server's limit (vLLM: --mm-processor-kwargs '{{\"max_pixels\": {max_pixels}}}'; "
        f"or size.longest_edge in the checkpoint's {where})"
    )
    if max_pixels is not None and high_stated is not None and max_pixels > high_stated:
        raise UsageError(
            f"--max-pixels {max_pixels} is above the {high_stated} pixels per frame that "
            f"{checkpoint.model_id}'s processor takes (size.longest_edge in its {where}): the server "
            f"would shrink the frames. Lower --max-pixels, or {how}"
        )
    if min_pixels is not None and low_stated is not None and min_pixels < low_stated:
        raise UsageError(
            f"--min-pixels {min_pixels} is below the {low_stated} pixels per frame that "
            f"{checkpoint.model_id}'s processor enlarges smaller frames to (size.shortest_edge in its "
            f"{where}): the server would enlarge them. Raise --min-pixels, or lower the server's "
            f"(vLLM: --mm-processor-kwargs '{{\"min_pixels\": {min_pixels}}}')"
        )
