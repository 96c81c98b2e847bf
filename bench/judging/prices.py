"""Prices as data, and what a token costs at them (issue 45, item 2).

`results/prices.toml` holds $/device-hour by device and provider kind and $/kWh by region, each with
its source and date (format in the file's header). A cost figure is throughput and price together:

    rent  $/M output tokens = usd_per_hour x chips x 10^6 / (3600 x output tokens/s)
    power $/M output tokens = J per output token x 10^6 / 3.6e6 x usd_per_kwh

and per million total tokens (the prompt's included) with the total token rate. Every figure names
the rows it used (`Basis.lines`), and a device with no price has no cost, never a guessed one.
`cost_at` interpolates a serving curve's cost at a target tokens/s per user, the way InferenceX
quotes cost at an interactivity level; outside the measured levels it says so rather than extrapolate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chipbench.errors import UsageError
from chipbench.judging.chips import CHIPS_FILE, read_toml

PRICES_FILE = CHIPS_FILE.parent / "prices.toml"
_strict = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
Text = Annotated[str, Field(min_length=1)]
Money = Annotated[float, Field(gt=0, lt=1e6)]


class DeviceRow(BaseModel):
    model_config = _strict
    name: Text
    match: Text
    provider: Text
    usd_per_hour: Money
    range: str | None = None
    source: Text
    date: Text

    @field_validator("match")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        return value


class PowerRow(BaseModel):
    model_config = _strict
    region: Text
    usd_per_kwh: Annotated[float, Field(gt=0, lt=100)]
    source: Text
    date: Text


class PricesFile(BaseModel):
    model_config = _strict
    default_provider: Text
    default_region: Text
    device: list[DeviceRow] = Field(default_factory=list)
    electricity: list[PowerRow] = Field(default_factory=list)


@dataclass(frozen=True)
class Basis:
    """The prices a cost figure uses: the file's rows (or an override) for a provider kind and a region."""

    devices: tuple[DeviceRow, ...] = ()
    power: PowerRow | None = None
    provider: str = "specialty"
    usd_per_hour: float | None = None  # --price-hour: one price for every device, overriding the file
    file: str = ""
    used: dict = field(default_factory=dict, compare=False, hash=False)  # device name -> the row used

    def hourly(self, device_name: str | None) -> tuple[float, str] | None:
        """The device's $/hour and where it came from, or None when nothing prices it."""
        if self.usd_per_hour is not None:
            self.used["*"] = f"${self.usd_per_hour:g}/device-hour for every device (--price-hour)"
            return self.usd_per_hour, "--price-hour"
        if not device_name:
            return None
        for row in self.devices:
            if row.provider == self.provider and re.search(row.match, device_name, re.IGNORECASE):
                note = (
                    f"{row.name}: ${row.usd_per_hour:g}/device-hour, {row.provider}"
                    + (f" (midpoint of ${row.range})" if row.range else "")
                    + f"; {row.source}, {row.date}"
                )
                self.used[row.name] = note
                return row.usd_per_hour, note
        return None

    def lines(self) -> list[str]:
        """The assumptions under every cost figure: each price row used, and the electricity's."""
        out = list(self.used.values())
        if self.power is not None:
            out.append(
                f"electricity: ${self.power.usd_per_kwh:g}/kWh ({self.power.region}); {self.power.source}, {self.power.date}"
            )
        out.append(
            "rent includes the device's power; the power figure is the metered energy at the electricity price, "
            "for hardware one owns"
        )
        return out


def load_basis(
    path: str | Path | None = None,
    provider: str | None = None,
    region: str | None = None,
    usd_per_hour: float | None = None,
    usd_per_kwh: float | None = None,
) -> Basis:
    """The prices file read and validated (one line naming the file and field otherwise), with the
    overrides applied; a provider or region the file lacks is a one-line error listing those it has."""
    path = Path(path) if path else PRICES_FILE
    data = read_toml(path, "prices file")
    try:
        parsed = PricesFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UsageError(f"{path}: {where}: {err['msg']} (got {err.get('input')!r:.60})") from None
    for name, value in (("--price-hour", usd_per_hour), ("--price-kwh", usd_per_kwh)):
        if value is not None and not 0 < value < 1e6:
            raise UsageError(f"{name} must be a positive price in dollars, got {value}")
    provider = provider or parsed.default_provider
    kinds = sorted({r.provider for r in parsed.device})
    if usd_per_hour is None and kinds and provider not in kinds:
        raise UsageError(f"no prices for provider {provider!r} in {path}; valid: {', '.join(kinds)}")
    region = region or parsed.default_region
    power = next((r for r in parsed.electricity if r.region == region), None)
    if usd_per_kwh is not None:
        power = PowerRow(region="given", usd_per_kwh=usd_per_kwh, source="--price-kwh", date="-")
    elif power is None and parsed.electricity:
        regions = ", ".join(r.region for r in parsed.electricity)
        raise UsageError(f"no electricity price for region {region!r} in {path}; valid: {regions}")
    return Basis(tuple(parsed.device), power, provider, usd_per_hour, str(path))


def per_million(usd_per_hour: float, chips: int, tokens_per_s: float | None) -> float | None:
    """Dollars per million tokens at `tokens_per_s` on `chips` devices rented at `usd_per_hour` each."""
    if not tokens_per_s or tokens_per_s <= 0:
        return None
    return usd_per_hour * chips * 1e6 / (3600 * tokens_per_s)


def power_per_million(joules_per_token: float | None, usd_per_kwh: float | None) -> float | None:
    """Dollars of electricity per million tokens at `joules_per_token`."""
    if joules_per_token is None or usd_per_kwh is None:
        return None
    return joules_per_token * 1e6 / 3.6e6 * usd_per_kwh


def tokens_per_s_for(usd_per_hour: float, chips: int, usd_per_m: float) -> float:
    """The throughput at which `chips` devices at `usd_per_hour` cost `usd_per_m` per million tokens."""
    return usd_per_hour * chips * 1e6 / (3600 * usd_per_m)


@dataclass(frozen=True)
class Interpolated:
    usd_per_m: float | None
    note: str


def cost_at(levels: list[tuple[float, float, str]], target: float) -> Interpolated:
    """A serving curve's cost at `target` tokens/s per user: `levels` are (tokens/s per user, $/M,
    label) of one server, model and workload at several loads. Linear between the two levels that
    bracket the target; none outside them (a curve is not extrapolated)."""
    pts = sorted((u, c, label) for u, c, label in levels if u and c)
    if not pts:
        return Interpolated(None, "no level with both a per-user rate and a cost")
    lo, hi = pts[0][0], pts[-1][0]
    if not lo <= target <= hi:
        return Interpolated(None, f"{target:g} tok/s/user is outside the measured {lo:.3g}-{hi:.3g}")
    for (u0, c0, l0), (u1, c1, l1) in zip(pts, pts[1:] or pts):
        if u0 <= target <= u1:
            if u1 == u0:
                return Interpolated(c0, f"at {l0}")
            c = c0 + (c1 - c0) * (target - u0) / (u1 - u0)
            return Interpolated(c, f"between {l0} ({u0:.3g} tok/s/user) and {l1} ({u1:.3g})")
    return Interpolated(pts[0][1], f"at {pts[0][2]}")
