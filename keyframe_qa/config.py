"""`python -m keyframe_qa.config`: print the comparison config's JSON Schema (the config itself lives in
jobs/compare_config.py; this name is kept for the command and for old imports)."""

from __future__ import annotations

import json

from .jobs.compare_config import CompareConfig, ConfigError, json_schema, load_config  # noqa: F401

if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
