"""A real OpenAI-compatible server for tests and benchmarks: `transformers serve` on a checkpoint.

A tool, like synthetic.py and tiny_model.py: the product never imports it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str, workdir: str, *extra: str):
    """`transformers serve` on `model` (CPU) on a free loopback port; returns (process, base URL).

    Its log goes to `workdir`; the hub is never asked (HF_HUB_OFFLINE), and an empty cache folder
    keeps the server's /v1/models from failing on a machine without one.
    """
    port = free_port()
    command = [
        os.path.join(os.path.dirname(sys.executable), "transformers"),
        "serve",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        *extra,
    ]
    cache = os.path.join(workdir, "hf-cache")
    os.makedirs(cache, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=cache)
    log = open(os.path.join(workdir, f"serve-{port}.log"), "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if not wait_until_up(process, f"http://127.0.0.1:{port}/health", 180, "transformers serve", log.name):
        process.kill()
        raise RuntimeError("transformers serve did not start in 180 s")
    return process, f"http://127.0.0.1:{port}/v1"


def wait_until_up(process, url: str, seconds: float, name: str, log: str, pause: float = 0.3) -> bool:
    """Whether `url` answered within `seconds` (a RuntimeError naming `log` when the server exits first)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}): see {log}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return True
        except OSError:
            time.sleep(pause)
    return False


def stop_server(process) -> None:
    """Stop a server started by `start_server`."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except Exception:  # noqa: BLE001 - a server that will not stop is killed
        process.kill()
        process.wait()
