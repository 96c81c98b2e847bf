"""What a run measured once and may reuse for a stated time: small JSON values kept in chipbench's
cache folder ($CHIPBENCH_CACHE, else $XDG_CACHE_HOME/chipbench, else ~/.cache/chipbench), each under
the exact facts it depends on (the key) and the time it was made.

A value is reused only when its key is the same in every field and it is younger than its stash's
lifetime; anything else (another key, an old value, a file that is not what this module wrote,
an unreadable folder) reads as absent and is measured again. With `fresh` (the suite's --fresh,
or $CHIPBENCH_FRESH=1) nothing is read and what is measured is stored for the next run. A cache
that cannot be written costs only the reuse.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

FRESH_ENV = "CHIPBENCH_FRESH"
CACHE_ENV = "CHIPBENCH_CACHE"
MAX_BYTES = 1 << 20  # a stash file is a few hundred bytes; anything larger was not written here


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "chipbench"
    )
    return Path(root)


def fresh() -> bool:
    return os.environ.get(FRESH_ENV, "").strip().lower() not in ("", "0", "false", "no")


def use_fresh(on: bool) -> None:
    """The suite's --fresh: this process and its workers read nothing from the stashes."""
    if on:
        os.environ[FRESH_ENV] = "1"


class Stash:
    """Values of one kind (`name`: a folder under the cache), each valid for `lifetime_s`."""

    def __init__(self, name: str, lifetime_s: float):
        self.name = name
        self.lifetime_s = lifetime_s

    def _path(self, key: dict) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
        return cache_root() / self.name / f"{digest}.json"

    def get(self, key: dict) -> tuple[object, str] | None:
        """(value, when it was made, ISO 8601 UTC), or None: absent, stale, another key, unreadable."""
        if fresh():
            return None
        try:
            path = self._path(key)
            if path.stat().st_size > MAX_BYTES:
                return None
            kept = json.loads(path.read_text())
            made = float(kept["made_unix"])
            if kept["key"] != json.loads(json.dumps(key, sort_keys=True, default=str)):
                return None
            if not 0 <= time.time() - made < self.lifetime_s:
                return None
            return kept["value"], kept["made_utc"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: dict, value) -> None:
        now = time.time()
        kept = {
            "key": key,
            "made_unix": now,
            "made_utc": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
            "value": value,
        }
        try:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
            tmp.write_text(json.dumps(kept, sort_keys=True, default=str))
            tmp.replace(path)
        except (OSError, TypeError, ValueError):
            pass  # a cache that cannot be written costs the reuse, never the run


def age_text(made_utc: str) -> str:
    """'made 3 h ago' style text for a stashed value's note."""
    try:
        seconds = time.time() - datetime.fromisoformat(made_utc).timestamp()
    except (TypeError, ValueError):
        return f"made {made_utc}"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"made {seconds / size:.0f} {unit} ago ({made_utc})"
    return f"made {seconds:.0f} s ago ({made_utc})"
