"""Telemetry: what the chip was doing while it was measured (clocks, power, temperature, energy,
throttling), sampled in the background at a fixed rate.

Each backend names its sources (`telemetry_sources()`): NVML on NVIDIA (nvidia-ml-py, optional),
the CPU clock (psutil) and the RAPL energy counters (powercap, where the kernel exposes and lets us
read them) on the CPU. A quantity no source can read is recorded as not metered (null, and named in
`telemetry_not_metered`), never as zero. Rounds during which the device reported a throttle reason
are counted (`throttled_rounds`), and tables flag them; a round with no read inside it is judged by
the reads around it.

The sampler is one Python thread reading counters every 1/rate seconds; each read takes tens of
microseconds, so it takes well under 1% of a core and can delay a token's timestamp by at most one
read.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field

from chipbench.backends.base import capability
from chipbench.backends.sensors import (  # noqa: F401  (the sensors, re-exported)
    AmdSmi,
    CpuClock,
    Nvml,
    Rapl,
    Source,
    meter_of,
    nvml_handle,
)

RATE_HZ = 10.0
# An energy counter moves in steps (NVML's about every 10 ms by reports, RAPL's about every 1 ms), so a
# reading over a stretch of time is off by up to one step. Energy is summed round by round when each
# round lasts at least this many steps (<= 10% off), else over the span from the first round's start
# to the last round's end when that does (the gaps between rounds then counted in), else not at all.
ENERGY_STEPS = 10
ENERGY_PERIOD_LIMIT_S = 0.5  # how long start() watches the counter to time its steps
ENERGY_ADVANCE_LIMIT_S = 2.0  # how long it waits for a counter that has not moved at all
# The validity check: the power a counter implies must lie within this many times the limit its
# domain states (boards briefly exceed their limit), or under ENERGY_BOUND_W where none is stated
ENERGY_LIMIT_MARGIN = 1.5
ENERGY_BOUND_W = 5000.0
# the energy meters: quantity -> the prefix of its record fields (the device's, and the host's beside it)
ENERGY = {"energy_j": "", "host_energy_j": "host_"}
# quantity -> how a window summarises it
QUANTITIES = {
    "clock_mhz": "mean",
    "mem_clock_mhz": "mean",
    "power_w": "mean",
    "temp_c": "max",
    "energy_j": "delta",
    "throttle": "any",
    "host_energy_j": "delta",
}


@dataclass
class MeterCheck:
    """An energy counter's check before the rounds: it advances, and the power it implies is one the
    domain can draw. A counter that fails is not trusted: its energy is not recorded."""

    passed: bool
    text: str
    period_s: float | None = None  # how often it moves
    bound_w: float | None = None  # the most power it may imply


def check_meter(source, quantity: str, limit_s: float = ENERGY_PERIOD_LIMIT_S, clock=time.perf_counter) -> MeterCheck:
    """Read `quantity` back to back until it has moved three times (or `limit_s`; up to
    ENERGY_ADVANCE_LIMIT_S for its first move): how often it moves, and the power between its moves."""
    limit = getattr(source, "power_limit_w", {}).get(quantity)
    bound, basis = (
        (limit * ENERGY_LIMIT_MARGIN, f"{ENERGY_LIMIT_MARGIN:g} x its stated limit of {limit:.0f} W")
        if limit
        else (ENERGY_BOUND_W, "no limit stated: a bound of 5 kW")
    )
    try:
        t0, first = clock(), source.read().get(quantity)
        if first is None:
            return MeterCheck(False, "failed: its counter could not be read", bound_w=bound)
        moves, last = [], first
        while len(moves) < 3:
            now_t = clock()
            if now_t - t0 > (limit_s if moves else ENERGY_ADVANCE_LIMIT_S):
                break
            now = source.read().get(quantity)
            if now is None:
                return MeterCheck(False, "failed: its counter stopped answering", bound_w=bound)
            if now != last:
                moves.append((clock(), now))
                last = now
            elif not moves and now_t - t0 > limit_s:
                time.sleep(0.005)  # a coarse counter: wait for its first move without spinning
    except Exception as e:
        return MeterCheck(False, f"failed: reading it raised {type(e).__name__}: {e}", bound_w=bound)
    if not moves:
        return MeterCheck(False, f"failed: its counter did not advance in {ENERGY_ADVANCE_LIMIT_S:g} s", bound_w=bound)
    given = getattr(source, "counter_period_s", {}).get(quantity)
    timed = (moves[-1][0] - moves[0][0]) / (len(moves) - 1) if len(moves) >= 2 else limit_s
    period = given if given is not None else timed
    (ta, ea), (tb, eb) = (moves[0], moves[-1]) if len(moves) >= 2 else ((t0, first), moves[0])
    watts = (eb - ea) / (tb - ta) if tb > ta else 0.0
    seen = f"advanced {len(moves)} time(s) in {(moves[-1][0] - t0) * 1e3:.0f} ms, implying {watts:.1f} W"
    if watts < 0:
        return MeterCheck(False, f"failed: its counter went backwards ({seen})", period, bound)
    if watts > bound:
        return MeterCheck(False, f"failed: {seen}, above {bound:.0f} W ({basis})", period, bound)
    return MeterCheck(True, f"passed: {seen}, within 0-{bound:.0f} W ({basis})", period, bound)


@dataclass
class Sampler:
    """Background sampling of `sources` between start() and stop()."""

    sources: list
    rate_hz: float = RATE_HZ
    samples: list[tuple[float, dict]] = field(default_factory=list)  # (perf_counter time, values)
    unavailable: dict[str, str] = field(default_factory=dict)  # source name -> why not
    checks: dict[str, MeterCheck] = field(default_factory=dict)  # energy quantity -> its check (start())
    periods: dict[str, float | None] = field(default_factory=dict)  # energy quantity -> how often it moves

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one read at a time (RAPL keeps running totals); samples in time order
        self._thread = None
        self.live = []
        for s in self.sources:
            why = s.open()
            if why is None:
                self.live.append(s)
            else:
                self.unavailable[s.name] = why

    def _read(self) -> dict:
        values: dict = {}
        for s in self.live:
            try:
                for k, v in s.read().items():
                    if v is not None:
                        values.setdefault(k, v)
            except Exception:
                pass  # one failed read leaves a gap, never stops the run
        return values

    def read_now(self) -> None:
        """One read, now, beside the background ones: the runner takes one just before each round
        starts its clock and one just after its last token, so the energy counter is read at the
        round's edges (as Zeus does) rather than up to a sampling period away from them."""
        if self.live:
            with self._lock:
                self.samples.append((time.perf_counter(), self._read()))

    def _loop(self) -> None:
        period = 1.0 / self.rate_hz
        while not self._stop.is_set():
            self.read_now()
            self._stop.wait(period)

    @property
    def energy_period_s(self) -> float | None:
        """How often the device's energy counter moves (start() times it); None: unknown."""
        return self.periods.get("energy_j")

    @energy_period_s.setter
    def energy_period_s(self, value: float | None) -> None:
        self.periods["energy_j"] = value

    def meter(self, quantity: str):
        """The live source that reads `quantity` (the first that names it), or None."""
        return next((s for s in self.live if quantity in s.quantities), None)

    def energy_period(self, limit_s: float = ENERGY_PERIOD_LIMIT_S) -> float | None:
        """How often the energy counter moves: read it back to back until it has moved three times
        (30 ms for a 10 ms counter), the mean step between those moves; `limit_s` when it moved
        less than twice in that long (at least that coarse); None without a counter."""
        source = next((s for s in self.live if "energy_j" in s.quantities), None)
        if source is None:
            return None
        try:
            moves, last = [], source.read().get("energy_j")
            deadline = time.perf_counter() + limit_s
            while len(moves) < 3 and time.perf_counter() < deadline and last is not None:
                now = source.read().get("energy_j")
                if now != last:
                    moves.append(time.perf_counter())
                last = now
        except Exception:
            return None
        if last is None:
            return None
        return (moves[-1] - moves[0]) / (len(moves) - 1) if len(moves) >= 2 else limit_s

    def start(self) -> "Sampler":
        for q in ENERGY:  # before the rounds, and before the thread reads too
            source = self.meter(q)
            if source is not None:
                self.checks[q] = check_meter(source, q)
                self.periods[q] = self.checks[q].period_s
        if self.live:
            self._thread = threading.Thread(target=self._loop, name="chipbench-telemetry", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.read_now()  # close the last window
        for s in self.live:
            s.close()

    def _around(self, times: list[float], start: float, end: float) -> list[dict]:
        """The reads taken during [start, end]; for a round shorter than the sampling period, which
        may hold none, the last read before it and the first after it (a throttle reason active at
        either may have covered the round: flagged rather than missed). `times`: the samples' times."""
        i, j = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        if i < j:
            return [v for _, v in self.samples[i:j]]
        return [v for _, v in self.samples[max(i - 1, 0) : i]] + [v for _, v in self.samples[j : j + 1]]

    def summary(
        self,
        windows: list[tuple[float, float]],
        tokens: int,
        *,
        output_tokens: int | None = None,
        total_tokens: int | None = None,
    ) -> dict:
        """Record fields over the timed rounds (`windows`: each round's start and end on the
        perf_counter clock); `tokens`: what those rounds produced for energy_per_token_j (prompt
        tokens of a prefill test, generated tokens otherwise); `output_tokens` and `total_tokens`
        (prompt included) for energy per output and per total token."""
        metered = {q for s in self.live for q in s.quantities}
        out = {
            "telemetry_sources": ", ".join(s.name for s in self.live) or None,
            "telemetry_rate_hz": self.rate_hz if self.live else None,
        }
        lo, hi = (windows[0][0], windows[-1][1]) if windows else (0.0, 0.0)
        times = [t for t, _ in self.samples]
        first = max([i for i, t in enumerate(times) if t <= lo], default=0)  # the last read before the rounds
        last = min([i for i, t in enumerate(times) if t >= hi], default=len(times) - 1)  # the first after
        inside = [v for _, v in self.samples[first : last + 1]]
        out["telemetry_samples"] = sum(1 for t in times if lo <= t <= hi)

        def values(q):
            return [v[q] for v in inside if q in v]

        for q, field_ in (
            ("clock_mhz", "tele_clock_mhz"),
            ("mem_clock_mhz", "tele_mem_clock_mhz"),
            ("power_w", "tele_power_w"),
        ):
            xs = values(q)
            out[field_] = sum(xs) / len(xs) if xs else None
        temps = values("temp_c")
        out["tele_temp_c_max"] = max(temps) if temps else None
        whys: dict[str, str] = {}
        for q, prefix in ENERGY.items():
            fields, why_not = self._energy_fields(q, windows, output_tokens, total_tokens)
            out.update({prefix + k: v for k, v in fields.items()})
            if why_not:
                whys[q] = why_not
        energy = out["energy_j"]
        out["energy_per_token_j"] = energy / tokens if energy is not None and tokens else None
        throttled, reasons = 0, set()
        if "throttle" in metered:
            for start, end in windows:
                active = {v["throttle"] for v in self._around(times, start, end) if v.get("throttle")}
                throttled += bool(active)
                reasons |= active
        out["throttled_rounds"] = throttled if "throttle" in metered else None
        out["throttle_reasons"] = "; ".join(sorted(reasons)) or None
        names = {
            "clock_mhz": "clock",
            "mem_clock_mhz": "memory clock",
            "power_w": "power",
            "temp_c": "temperature",
            "energy_j": "energy",
            "throttle": "throttling",
            "host_energy_j": "host energy",
        }
        missing = [
            names[q]
            for q in QUANTITIES
            if q not in metered
            or (q in ENERGY and out[ENERGY[q] + "energy_j"] is None)
            or (q not in ENERGY and q != "throttle" and not values(q))
        ]
        why = "; ".join(
            [f"{k}: {v}" for k, v in self.unavailable.items()] + [f"{names[q]}: {v}" for q, v in whys.items()]
        )
        out["telemetry_not_metered"] = (
            (", ".join(dict.fromkeys(missing)) + (f" ({why})" if why else "")) if missing else None
        )
        return out

    def _energy_fields(
        self, q: str, windows: list[tuple[float, float]], output_tokens: int | None, total_tokens: int | None
    ) -> tuple[dict, str | None]:
        """One energy meter's fields (unprefixed: energy_j, its per-token figures, its method) and why
        its energy is null, where it is."""
        source = self.meter(q)
        check = self.checks.get(q)
        meter, domain = meter_of(source, q) if source is not None else ("none", None)
        energy, why_not = self._energy(q, windows)
        if check is not None and not check.passed:  # not trusted, whatever it read
            energy, why_not = None, f"its counter failed its check: {check.text.removeprefix('failed: ')}"
        scope = self._energy_scope(windows, q) if energy is not None else None
        if energy is not None and check is not None and check.bound_w is not None:
            spans = windows if scope == "rounds" else [(windows[0][0], windows[-1][1])]
            seconds = sum(end - start for start, end in spans)
            watts = energy / seconds if seconds > 0 else None
            if watts is not None and not 0 <= watts <= check.bound_w:
                energy, scope = None, None
                why_not = f"its counter implied {watts:.0f} W over the rounds, outside 0-{check.bound_w:.0f} W"
        period = self.periods.get(q)
        return {
            "energy_j": energy,
            "energy_per_output_token_j": energy / output_tokens if energy is not None and output_tokens else None,
            "energy_per_total_token_j": energy / total_tokens if energy is not None and total_tokens else None,
            "energy_scope": scope,
            "energy_counter_period_s": period if source is not None else None,
            "energy_meter": meter,
            "energy_domain": domain,
            "energy_check": None if source is None else check.text if check else "not checked (no start())",
            "energy_sample_hz": self.rate_hz if source is not None else None,
        }, why_not

    def _energy_scope(self, windows: list[tuple[float, float]], q: str = "energy_j") -> str | None:
        """ "rounds" (each round's own rise, summed), "span" (the rise from the first round's start to
        the last round's end, the gaps counted in), or None (too short for the counter's steps)."""
        if not windows:
            return None
        step = self.periods.get(q)
        if step is None or min(end - start for start, end in windows) >= ENERGY_STEPS * step:
            return "rounds"
        return "span" if windows[-1][1] - windows[0][0] >= ENERGY_STEPS * step else None

    def _energy(self, q: str, windows: list[tuple[float, float]]) -> tuple[float | None, str | None]:
        """The energy of the timed rounds on meter `q` (see ENERGY_STEPS), or None and why not."""
        reads = [(t, v[q]) for t, v in self.samples if q in v]
        if not reads or not windows:
            return None, None
        times = [t for t, _ in reads]
        scope = self._energy_scope(windows, q)
        if scope is None:
            period = self.periods[q]
            step = (
                f"did not move twice in {period:g} s"
                if period >= ENERGY_PERIOD_LIMIT_S
                else f"moves every {period * 1e3:.0f} ms"
            )
            return None, (
                f"its counter {step}, too coarse for rounds that span "
                f"{(windows[-1][1] - windows[0][0]) * 1e3:.0f} ms in all"
            )
        spans = windows if scope == "rounds" else [(windows[0][0], windows[-1][1])]
        edges = [(_counter_at(reads, times, start), _counter_at(reads, times, end)) for start, end in spans]
        if any(a is None or b is None for a, b in edges):
            return None, "no counter read on both sides of the rounds"
        return sum(b - a for a, b in edges), None


def _counter_at(reads: list[tuple[float, float]], times: list[float], t: float) -> float | None:
    """A cumulative counter at time t, interpolated linearly between the reads on either side of t
    (exact when a read was taken at t); None without a read on both sides. `times`: the reads' times,
    in order (a soak of short rounds holds hundreds of thousands of them)."""
    i = bisect.bisect_right(times, t)  # reads[:i] were taken at or before t
    j = bisect.bisect_left(times, t)  # reads[j:] at or after t
    if i == 0 or j == len(reads):
        return None
    (t0, e0), (t1, e1) = reads[i - 1], reads[j]
    return e0 if t1 == t0 else e0 + (e1 - e0) * (t - t0) / (t1 - t0)


def sampler_for(backend) -> Sampler:
    """The backend's telemetry sources (none: every quantity is not metered)."""
    make = capability(backend, "telemetry_sources")
    try:
        sources = list(make()) if make is not None else []
    except Exception:
        sources = []
    return Sampler(sources)
