"""Every JSON we write is valid UTF-8, whatever names the files have, and holds only finite numbers.

Linux allows any bytes but `/` and NUL in a file name, and old archives hold latin-1 names
(`caf\\xe9.mp4`). Python gives such a name as a string with lone surrogates (PEP 383), which UTF-8
cannot encode. NaN and Infinity are not JSON (`JSON.parse` and strict readers reject them): the one writer,
`dumps`, refuses them, and a record that holds one gets null in its place with one warning naming where it
was (the cause is refused earlier, where it is known: a scorer's NaN embeddings, say). Before a record
is written, each such string becomes readable text with U+FFFD where the bytes were not UTF-8, and a
dictionary entry `KEY` gets a sibling `KEY_bytes`: the name's exact bytes in base64, so the path stays
recoverable (`os.fsdecode(base64.b64decode(record["path_bytes"]))`).
"""

from __future__ import annotations

import base64
import json
import math
import os
from typing import Any, Optional

from ..texts import is_valid, name_bytes, readable

BYTES_SUFFIX = "_bytes"


def valid_unicode(value: Any) -> Any:
    """`value` (dicts, lists, strings, numbers) with every string valid Unicode (see the module doc)."""
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            name = readable(key) if isinstance(key, str) else key
            cleaned[name] = valid_unicode(item)
            if isinstance(item, str) and not is_valid(item):
                raw = name_bytes(item)
                if raw is not None:
                    cleaned[f"{name}{BYTES_SUFFIX}"] = base64.b64encode(raw).decode("ascii")
        return cleaned
    if isinstance(value, (list, tuple)):
        return [valid_unicode(item) for item in value]
    return value


def dumps(value: Any, **options) -> str:
    """json.dumps of `value` made valid Unicode first, with only finite numbers (each walked only when it needs
    to be)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, **options)
    except ValueError:  # a NaN or an infinity: null in its place, said once
        places: list[str] = []
        value = finite(value, "", places)
        from ..console import warn

        shown = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
        warn(
            f"{len(places)} number{'s' if len(places) != 1 else ''} that JSON cannot hold (NaN or infinite) "
            f"written as null: {shown}"
        )
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, **options)
    if is_valid(text):
        return text
    return json.dumps(valid_unicode(value), ensure_ascii=False, allow_nan=False, **options)


def finite(value: Any, where: str = "", places: Optional[list] = None) -> Any:
    """`value` with every NaN or infinite float replaced by None; `places` collects where they were."""
    if isinstance(value, float) and not math.isfinite(value):
        if places is not None:
            places.append(where or "the value")
        return None
    if isinstance(value, dict):
        return {key: finite(item, f"{where}.{key}" if where else str(key), places) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item, f"{where}[{i}]", places) for i, item in enumerate(value)]
    return value


def path_of(record: dict, key: str = "path") -> Optional[str]:
    """A path written by `valid_unicode`, as Python names the file (its exact bytes when it had to be
    escaped)."""
    encoded = record.get(f"{key}{BYTES_SUFFIX}")
    if isinstance(encoded, str):
        try:
            return os.fsdecode(base64.b64decode(encoded, validate=True))
        except ValueError:
            pass
    value = record.get(key)
    return value if isinstance(value, str) else None
