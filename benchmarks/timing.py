"""Timing whole processes for the benchmarks: wall time and the CPU time the child used."""

from __future__ import annotations

import resource
import subprocess
import time
from typing import Optional


def run_process(command: list[str], *, cwd: str, env: Optional[dict] = None) -> tuple[float, float, str]:
    """Run `command` to completion: (wall seconds, CPU seconds of the child, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True, cwd=cwd, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result.stdout
