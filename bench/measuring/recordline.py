"""A result record as the measuring room makes it: its format version, its id and its one line of
strict JSON. The record's schema, reader and writer are above, in bench/publishing/; the runner
and a trial's worker need only these three, so they live here, below both."""

from __future__ import annotations

import json
import math
import uuid

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


def new_record_id() -> str:
    return uuid.uuid4().hex


def _clean(value):
    """JSON has no NaN or infinity: a non-finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def record_json(record: dict) -> str:
    """A record as one line of strict JSON (non-finite numbers written as null)."""
    return json.dumps({k: _clean(v) for k, v in record.items()}, allow_nan=False)
