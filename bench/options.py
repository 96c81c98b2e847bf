"""Parsing of comma-separated option values, shared by `chipbench` and `pytest --benchmark`. Free of
torch, so that the commands that only read records (report, merge, compare) start in a blink."""

from __future__ import annotations

from chipbench.errors import UsageError


def split_list(text: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def parse_ints(text: str | None, what: str) -> tuple[int, ...]:
    out = []
    for item in split_list(text):
        try:
            out.append(int(item))
        except ValueError:
            raise UsageError(f"{what} must be whole numbers >= 1, got {item!r}") from None
    return tuple(out)
