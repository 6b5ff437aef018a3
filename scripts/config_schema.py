"""Print the compare config's JSON Schema, for editors (`configs/before_after.schema.json`).

    uv run python scripts/config_schema.py > configs/before_after.schema.json

A test fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import json

from keyframe_qa.jobs.compare_config import json_schema

if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
