"""Chip spec sheets as data (results/chips.toml): the physical limits of each accelerator.

A run's device is matched to a row by the name it reports ("NVIDIA H100 80GB HBM3" is an
H100 SXM); a user can also name the chip, or give the peaks. A name that matches no row is
not an error: the roofline then rests on the device's measured ceilings alone.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from chipbench import PROJECT_ROOT
from chipbench.errors import UsageError

CHIPS_FILE = PROJECT_ROOT / "results" / "chips.toml"
CONFIDENCE = ("A", "B", "?")  # a row made from peaks the user gives has confidence "user"
_NUMBERS = ("bf16_tflops", "fp8_tflops", "int8_tops", "memory_gb", "bandwidth_gb_per_s", "tdp_w")


@dataclass(frozen=True)
class Chip:
    name: str
    match: str  # case-insensitive regex tried against the device's reported name
    confidence: str
    source: str
    bf16_tflops: float | None = None  # dense bf16/fp16 peak, TFLOP/s
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    memory_gb: float | None = None  # as the vendor writes it: binary gigabytes (see memory_bytes)
    bandwidth_gb_per_s: float | None = None  # memory bandwidth, 10^9 bytes/s
    tdp_w: float | None = None
    notes: str = ""
    kinds: tuple[str, ...] = ()  # backend kinds a record of this chip can have (cuda, npu, ...); () any accelerator
    aliases: tuple[str, ...] = ()  # whole device names it reports besides `name`

    def fits_kind(self, backend_kind: str | None) -> bool:
        """Whether a record of this backend kind can be this chip: one of its kinds; with none
        listed, any accelerator; never a CPU (whatever its name holds)."""
        if backend_kind is None:
            return True  # an imported or old record that does not say: the name alone decides
        return backend_kind in self.kinds if self.kinds else backend_kind != "cpu"

    def named(self, device_name: str | None) -> bool:
        """Whether a device's reported name is this chip's name or one of its aliases, whole (case
        and runs of spaces aside): never a substring."""
        return device_name is not None and _norm(device_name) in {_norm(n) for n in (self.name, *self.aliases)}

    def peak_flops(self, dtype: str) -> float | None:
        """Peak FLOP/s for the benchmark dtype (fp32 has no tensor-core row: None)."""
        tf = {"bf16": self.bf16_tflops, "fp16": self.bf16_tflops, "fp8": self.fp8_tflops, "int8": self.int8_tops}.get(
            dtype
        )
        return tf * 1e12 if tf else None

    @property
    def bandwidth_bytes_per_s(self) -> float | None:
        return self.bandwidth_gb_per_s * 1e9 if self.bandwidth_gb_per_s else None

    @property
    def memory_bytes(self) -> float | None:
        """Device memory is sold in binary gigabytes: an H100 "80GB" showed torch 85.0e9 bytes
        (79.2 GiB, the rest reserved) on 2026-11-22, so a sheet's 80 GB is 80 GiB. Reading it as
        10^9 bytes would call a model too big for a chip it fits, 7% short of the chip."""
        return self.memory_gb * 2**30 if self.memory_gb else None


def _norm(name: str) -> str:
    return " ".join(str(name).lower().split())


def read_toml(path: Path, what: str) -> dict:
    """A TOML data file, or a one-line UsageError naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except OSError as e:
        raise UsageError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    except RecursionError:
        raise UsageError(f"{path}: not valid TOML (nested too deep)") from None


_PARSED: dict[tuple, tuple[Chip, ...]] = {}  # (path, content) -> rows: a report matches every record


def load_chips(path: str | Path = CHIPS_FILE) -> list[Chip]:
    """The spec table's rows, validated; parsed once per content of the file (a report of 2,000
    records parsed it for each, 80% of its time)."""
    path = Path(path)
    try:
        key = (str(path), path.read_bytes())
    except OSError:
        key = None  # read_toml says what is wrong with it
    if key in _PARSED:
        return list(_PARSED[key])
    chips = _parse_chips(path)
    if key is not None:
        _PARSED[key] = tuple(chips)
    return chips


def _parse_chips(path: Path) -> list[Chip]:
    data = read_toml(path, "chip table")
    known = {f.name for f in fields(Chip)}
    chips = []
    for i, row in enumerate(data.get("chip", []), 1):
        where = f"{path}: chip {i} ({row.get('name', '?')})"
        unknown = sorted(set(row) - known)
        if unknown:
            raise UsageError(f"{where}: unknown field {unknown[0]!r}; valid fields: {', '.join(sorted(known))}")
        for need in ("name", "match", "confidence", "source"):
            if not row.get(need):
                raise UsageError(f"{where}: field {need!r} is required")
        if row["confidence"] not in CONFIDENCE:
            raise UsageError(f"{where}: confidence {row['confidence']!r}; valid: {', '.join(CONFIDENCE)}")
        for k in _NUMBERS:
            if k in row and not (isinstance(row[k], (int, float)) and row[k] > 0):
                raise UsageError(f"{where}: {k} must be a positive number, got {row[k]!r}")
        try:
            re.compile(row["match"])
        except re.error as e:
            raise UsageError(f"{where}: match is not a valid regular expression ({e})") from None
        for k in ("kinds", "aliases"):
            if k in row and not (isinstance(row[k], list) and all(isinstance(x, str) and x for x in row[k])):
                raise UsageError(f"{where}: {k} must be a list of names, got {row[k]!r}")
        chips.append(Chip(**{**row, **{k: tuple(row[k]) for k in ("kinds", "aliases") if k in row}}))
    return chips


def match_chip(
    device_name: str | None, chips: list[Chip] | None = None, backend_kind: str | None = None
) -> Chip | None:
    """The spec row for a device's reported name (its `match` pattern), or None when no row
    matches; a row whose kinds do not fit `backend_kind` never matches (a CPU whose name holds a
    chip's model number is not that chip). The roofline of a run; a claim uses chip_of."""
    if not device_name:
        return None
    for chip in chips if chips is not None else load_chips():
        if chip.fits_kind(backend_kind) and re.search(chip.match, device_name, re.IGNORECASE):
            return chip
    return None


def chip_of(rec: dict, chips: list[Chip] | None = None) -> Chip | None:
    """The chip a record stands for in a claim: the row whose name or an alias is the record's
    device name, whole, and whose kinds fit its backend kind; None otherwise."""
    for chip in chips if chips is not None else load_chips():
        if chip.named(rec.get("device_name")) and chip.fits_kind(rec.get("backend_kind")):
            return chip
    return None


def user_chip(bandwidth_gb_per_s: float | None, tflops: float | None, name: str = "user-given peaks") -> Chip:
    """A spec row from peaks given on the command line (bf16/fp16 TFLOP/s, memory GB/s)."""
    for what, v in (("peak bandwidth", bandwidth_gb_per_s), ("peak TFLOP/s", tflops)):
        if v is not None and not (0 < v < float("inf")):  # NaN, infinity (1e309) and <= 0 fail
            raise UsageError(f"{what} must be a finite positive number, got {v}")
    return Chip(
        name=name,
        match="(?!)",
        confidence="user",
        source="command line",
        bf16_tflops=tflops,
        bandwidth_gb_per_s=bandwidth_gb_per_s,
    )


def resolve_chip(name: str | None, bandwidth_gb_per_s: float | None, tflops: float | None, warn=None) -> Chip | None:
    """The chip a user asked for: explicit peaks win, then a named row; None means 'match by the
    device's name'. A name with no row is said, and the roofline falls back to measured ceilings."""
    if bandwidth_gb_per_s is not None or tflops is not None:
        return user_chip(bandwidth_gb_per_s, tflops, name or "user-given peaks")
    if not name:
        return None
    try:
        return find_chip(name)
    except UsageError as e:
        (warn or print)(f"{e}; the roofline uses the measured ceilings only")
        return Chip(name=name, match="(?!)", confidence="user", source="unknown chip: no peaks")


def find_chip(name: str, chips: list[Chip] | None = None) -> Chip:
    """A chip named by the user: its table name (case-insensitive) or any name its regex matches."""
    chips = chips if chips is not None else load_chips()
    for chip in chips:
        if chip.name.lower() == name.lower():
            return chip
    chip = match_chip(name, chips)
    if chip is None:
        raise UsageError(f"no chip named {name!r} in the spec table; known chips: " + ", ".join(c.name for c in chips))
    return chip
