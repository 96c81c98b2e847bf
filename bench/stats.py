"""Statistics: the one leaf that every interval, mean, spread, variance component and power figure
chipbench shows comes from. It imports nothing of chipbench (numpy and scipy only), so any room of
the package may use it.

The names used everywhere:

- **summary** (`summarize`): n, median, mean, sample stdev, p90, p99 and the 95% Student-t interval
  of the mean of one trial's rounds.
- **case statistic**: per trial the median of its timed rounds; per case the geometric mean of the
  trial medians (the mean of their logs, `Side.mean`).
- **noise levels** (`Noise`): rounds within a trial (summarised by the trial's median), trials
  within an invocation (`trial_var`: the variance of log trial medians around their invocation's
  mean), and invocations of one machine (`drift_var`: the variance of an invocation's own level,
  from other processes, hours, clocks). A baseline made of several invocations measures the last;
  where nothing measures it, the documented prior `DRIFT_PRIOR` stands in, never zero.
- **speed ratio** of a run over a baseline: the difference of the two case statistics on the log
  scale (`difference`), whose variance counts every level: a new invocation's own drift, the
  baseline's mean's drift, and the trials of both.
- **gate**: a one-sided test per gated row that the true ratio lies below the threshold T
  (`p_below`), Holm's step-down over all gated rows (`holm`) at the family-wise false-alarm rate
  `GATE_ALPHA`; a row fails when its Holm-adjusted p is at most GATE_ALPHA, that is when its
  one-sided upper confidence bound, at Holm's level, lies below T.
- **minimum detectable regression** (`min_detectable`): the smallest true regression the gate
  catches with probability `POWER`, given the noise measured.

Why these choices, with the simulation that holds their error rates, are in docs/statistics.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # two-sided level of every interval shown
GATE_ALPHA = 0.05  # the gate's family-wise false-alarm rate (one-sided, over all gated rows)
POWER = 0.80  # the power at which a minimum detectable regression is quoted
# The spread (relative stdev) of one invocation's level, assumed where no baseline of several
# invocations measured it. It covers the drift grid of the calibration (0-5%); this project's CI
# VMs have drifted more (12-21% between invocations), which the device's own measured ceilings
# catch ("machine moved") rather than this prior.
DRIFT_PRIOR = 0.05

STAT_NAMES = ("n", "median", "mean", "stdev", "p90", "p99", "ci95_low", "ci95_high")


def _t(q: float, df: float) -> float:
    """Student's t quantile (the normal's for infinite df)."""
    from scipy import special  # here: scipy takes a second to import, and most callers never need it

    return float(special.ndtri(q)) if not math.isfinite(df) else float(special.stdtrit(df, q))


def t_quantile(q: float, df: float) -> float:
    return _t(q, df)


def _t_cdf(x: float, df: float) -> float:
    from scipy import special

    return float(special.ndtr(x)) if not math.isfinite(df) else float(special.stdtr(df, x))


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, median, mean, sample stdev, p90, p99 and a 95% Student-t confidence interval of the mean.

    With fewer than two finite values the spread and interval are None (unknown, not zero). The
    interval of values that are all non-negative (a time, a rate) stops at 0: with two rounds the
    t quantile is 12.7, and a throughput's interval read below zero tokens/s. The mean of such
    values cannot be negative, so the cut interval still holds it 95% of the time.
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(x.size)
    if n == 0:
        return {k: (0 if k == "n" else None) for k in STAT_NAMES}
    mean = float(x.mean())
    out = {
        "n": n,
        "median": float(np.median(x)),
        "mean": mean,
        "p90": float(np.percentile(x, 90)),
        "p99": float(np.percentile(x, 99)),
        "stdev": None,
        "ci95_low": None,
        "ci95_high": None,
    }
    if n >= 2:
        sd = float(x.std(ddof=1))
        half = _t(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
        low = mean - half
        out.update(stdev=sd, ci95_low=max(low, 0.0) if x.min() >= 0 else low, ci95_high=mean + half)
    return out


def geometric_mean(values: Iterable[float]) -> float | None:
    logs = [math.log(v) for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(logs) / len(logs)) if logs else None


def t_interval(center: float, se: float, df: float, level: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided `level` interval center +- t * se (on whatever scale center is)."""
    half = _t(0.5 + level / 2, df) * se if se > 0 else 0.0
    return center - half, center + half


def relative(log_sd: float) -> float:
    """A stdev of logs as a relative spread (0.05: 5%)."""
    return math.expm1(log_sd)


@dataclass(frozen=True)
class Side:
    """One side of a comparison on the log scale: each trial's log value, grouped by the
    invocation (series) that ran it."""

    groups: tuple[tuple[float, ...], ...]

    @classmethod
    def of(cls, values_by_invocation: Iterable[Iterable[float]]) -> Side:
        return cls(tuple(tuple(g) for g in values_by_invocation if len(tuple(g))))

    @property
    def n(self) -> int:  # trials
        return sum(len(g) for g in self.groups)

    @property
    def k(self) -> int:  # invocations
        return len(self.groups)

    @property
    def mean(self) -> float:
        """The case statistic's log: the mean of every trial's log value."""
        return sum(sum(g) for g in self.groups) / self.n

    @property
    def drift_weight(self) -> float:
        """How much of one invocation's drift variance reaches this side's mean: sum(m_i^2) / N^2
        (1 for one invocation, 1/k for k equal ones)."""
        return sum(len(g) ** 2 for g in self.groups) / self.n**2

    def within(self) -> tuple[float, int]:
        """Sum of squares of trials around their invocation's mean, and its degrees of freedom."""
        ss = sum(float(np.sum((np.asarray(g) - np.mean(g)) ** 2)) for g in self.groups)
        return ss, self.n - self.k

    def between(self) -> tuple[float, int, float] | None:
        """One-way ANOVA between invocations: the mean square MSB, its degrees of freedom, and n0
        (E[MSB] = trial_var + n0 * drift_var); None with one invocation."""
        if self.k < 2:
            return None
        grand = self.mean
        msb = sum(len(g) * (np.mean(g) - grand) ** 2 for g in self.groups) / (self.k - 1)
        n0 = (self.n - sum(len(g) ** 2 for g in self.groups) / self.n) / (self.k - 1)
        return float(msb), self.k - 1, n0


@dataclass(frozen=True)
class Noise:
    """The variance of one trial's log value, split by where it comes from (see the module doc)."""

    trial_var: float  # trials within one invocation (0 where every invocation had one trial: then in drift_var)
    trial_df: float
    drift_var: float  # one invocation's level
    drift_df: float  # math.inf for the prior
    drift_source: str  # "measured over N invocations", "prior", ...
    drift_n0: float = 0.0  # measured with trial_var known: trials per invocation behind the estimate (ANOVA's n0)

    @property
    def drift_known(self) -> bool:
        return not self.drift_source.startswith("prior")

    @property
    def gateable(self) -> bool:
        """False where nothing measured the spread between processes (one trial a side, one
        invocation each): a prior can stand in for a machine's drift, but not for a trial spread
        that ranges from 1% to 15% and more between cases; such a comparison gives a verdict with
        its assumption said, and no gate."""
        return not (
            self.trial_var == 0 and not math.isfinite(self.drift_df) and "one trial a side" in self.drift_source
        )


def trial_variance(sides: Iterable[Side]) -> tuple[float, int] | None:
    """The trials-within-an-invocation variance pooled over sides of one case: None where no
    invocation had two trials."""
    ss = df = 0
    for s in sides:
        a, b = s.within()
        ss, df = ss + a, df + b
    return (ss / df, df) if df > 0 else None


def drift_variance(cases: Iterable[tuple[Side, float | None]]) -> tuple[float, int, float] | None:
    """The between-invocation variance (an invocation's own level), pooled over the cases of one
    machine, each given as (a side with its invocations, that case's trial variance or None).

    Each case with two or more invocations gives (MSB - trial_var) / n0 with k - 1 degrees of
    freedom (ANOVA's method of moments); they are pooled weighted by their degrees of freedom and
    the result is cut at 0. Returned with its degrees of freedom and the pooled n0 (trials per
    invocation, in effect), which `difference` needs for its degrees of freedom. A case whose trial
    variance is unknown (one trial per invocation) contributes its whole MSB: drift and trial noise
    together, which errs large, never small."""
    total = df = n0s = 0.0
    for side, tv in cases:
        b = side.between()
        if b is None:
            continue
        msb, dfb, n0 = b
        total += dfb * (msb - (tv or 0.0)) / n0
        df += dfb
        n0s += dfb * n0
    return (max(total / df, 0.0), int(df), n0s / df) if df else None


def noise_for(
    run: Side,
    base: Side,
    trial: tuple[float, int] | None,
    drift: tuple[float, int, float] | None,
    prior: float = DRIFT_PRIOR,
    rounds_var: float | None = None,
) -> Noise:
    """The noise a comparison of `run` with `base` rests on.

    trial: this case's pooled trial variance (trial_variance), drift: the machine's measured drift
    (drift_variance) where some side has several invocations. Where every invocation of the case has
    one trial and the case itself has several invocations, their spread (drift and trial noise
    together) is measured directly. Where the drift is not measured, the prior stands in; where the
    trial noise is unknown too (one trial a side), the larger of the prior and what the rounds of
    the single trials say (`rounds_var`: the variance of a trial median from its own rounds) is the
    whole variance of an invocation's level."""
    own = [s.between() for s in (run, base) if s.k >= 2]
    if trial is None and drift is not None and drift[2] <= 1 + 1e-9:
        # the machine's invocations held one trial each (n0 = 1): their spread is drift and trials together.
        # A pool from invocations of several trials is drift alone, and would leave out this case's trials.
        return Noise(0.0, math.inf, drift[0], drift[1], f"measured over single-trial invocations ({drift[1]} df)")
    if trial is None and own:
        dfs = sum(b[1] for b in own)
        var = sum(b[0] * b[1] for b in own) / dfs
        return Noise(0.0, math.inf, var, dfs, f"measured over {run.k + base.k} single-trial invocations")
    if trial is None:  # one trial a side: nothing measured the spread between processes
        known = {"prior": math.log1p(prior) ** 2, "prior (the rounds' own spread, larger)": rounds_var or 0.0}
        source = max(known, key=known.get)
        return Noise(
            0.0,
            math.inf,
            known[source],
            math.inf,
            source + "; one trial a side, so the spread between processes is not measured either",
        )
    tv, tdf = trial
    if drift is not None:
        return Noise(tv, tdf, drift[0], drift[1], f"measured ({drift[1]} df)", drift[2])
    return Noise(tv, tdf, math.log1p(prior) ** 2, math.inf, "prior")


def level(side: Side, noise: Noise) -> tuple[float, float, float]:
    """One side's statistic as an estimate of the machine's own level (a claim about a chip, not
    about this invocation): its log, standard error and degrees of freedom, with one invocation's
    drift counted (Var = drift_var * w + trial_var / n)."""
    parts = [(noise.drift_var * side.drift_weight, noise.drift_df), (noise.trial_var / side.n, noise.trial_df)]
    if noise.drift_n0 > 0 and math.isfinite(noise.drift_df):  # in the mean squares, as in `difference`
        parts = _in_mean_squares(noise, side.drift_weight, 1 / side.n)
    var = sum(x for x, _ in parts)
    return side.mean, math.sqrt(var), _satterthwaite(var, parts)


def difference(run: Side, base: Side, noise: Noise) -> tuple[float, float, float]:
    """log(run statistic / baseline statistic), its standard error and Satterthwaite's degrees of
    freedom: Var = drift_var * (w_run + w_base) + trial_var * (1/n_run + 1/n_base)."""
    d = run.mean - base.mean
    w = run.drift_weight + base.drift_weight
    a = noise.drift_var * w
    b = noise.trial_var * (1 / run.n + 1 / base.n)
    var = a + b
    if var <= 0:
        return d, 0.0, math.inf
    parts = [(a, noise.drift_df), (b, noise.trial_df)]
    if noise.drift_n0 > 0 and math.isfinite(noise.drift_df):
        parts = _in_mean_squares(noise, w, 1 / run.n + 1 / base.n)
        var = sum(x for x, _ in parts)
    return d, math.sqrt(var), _satterthwaite(var, parts)


def _in_mean_squares(noise: Noise, drift_weight: float, trial_weight: float) -> list[tuple[float, float]]:
    """A measured drift is (MSB - MSW) / n0, so drift_weight * drift_var + trial_weight * trial_var
    is c1 * MSB + c2 * MSW in the mean squares, the chi-square quantities that Satterthwaite's
    degrees of freedom are for: a drift estimate near zero from few invocations still costs its
    few degrees of freedom. c2 is held at 0 or above (the variance then errs large): a negative one
    (a run of more trials per invocation than the baseline's) would make the degrees of freedom
    collapse where the two terms nearly cancel, and more trials would look like less evidence."""
    c1 = drift_weight / noise.drift_n0
    c2 = max(trial_weight - c1, 0.0)
    return [
        (c1 * (noise.drift_n0 * noise.drift_var + noise.trial_var), noise.drift_df),
        (c2 * noise.trial_var, noise.trial_df),
    ]


def _satterthwaite(var: float, parts: list[tuple[float, float]]) -> float:
    denom = sum(x**2 / f for x, f in parts if x != 0 and math.isfinite(f))
    return var**2 / denom if denom > 0 else math.inf


def p_below(d: float, se: float, df: float, threshold: float) -> float:
    """One-sided p-value of 'the true speed ratio is at least `threshold`' given log ratio d:
    small when the ratio lies below it."""
    if se <= 0:
        return 0.0 if d < math.log(threshold) else 1.0
    return _t_cdf((d - math.log(threshold)) / se, df)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: a row with adjusted p <= alpha is rejected with the
    family-wise error rate held at alpha, under any dependence between the rows."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def min_detectable(
    se: float, df: float, threshold: float, rows: int = 1, alpha: float = GATE_ALPHA, power: float = POWER
) -> float | None:
    """The smallest true regression (0.14: a run 14% slower than its baseline) that the gate fails
    with probability `power`, at Holm's first level alpha / rows (so it holds for every row of a
    family of `rows`), given a standard error of the log ratio `se` with `df` degrees of freedom."""
    if not (se > 0 and math.isfinite(se)):
        return None if not se == 0 else max(0.0, 1 - threshold)
    log_ratio = math.log(threshold) - (_t(1 - alpha / rows, df) + _t(power, df)) * se
    return -math.expm1(log_ratio)


def projected_se(
    noise: Noise, run_trials: int, run_invocations: int, base: Side, base_invocations: int | None = None
) -> tuple[float, float]:
    """The standard error and degrees of freedom a comparison would have with a run of
    `run_trials` trials over `run_invocations` invocations, against `base` (or a baseline of
    `base_invocations` invocations of its size each): what more trials or invocations would buy."""
    per = max(run_trials // run_invocations, 1)
    run = Side(tuple((0.0,) * per for _ in range(run_invocations)))
    if base_invocations is not None:
        size = max(base.n // base.k, 1)
        base = Side(tuple((0.0,) * size for _ in range(base_invocations)))
    _, se, df = difference(run, base, noise)
    return se, df


# --- same-machine A/B (bench/judging/paired.py): paired ratios and the 2x2 crossover ---------------


# The fewest degrees of freedom an interval is shown with. Student's t with 1 degree of freedom is
# the Cauchy distribution: its 97.5% point is 12.7, and two pairs a few percent apart gave the
# interval [0.000, 747655464] (chipbench ab --pairs 2). From 2 on (4.3) an interval says something;
# below, the row gives none and says how many more pairs or trials would.
MIN_DF = 2


def paired_ratio(ratios: list[float]) -> tuple[float, float | None, float | None]:
    """Geometric mean of the pair ratios and the 95% t interval of it (None below MIN_DF + 1 pairs)."""
    logs = np.log(np.asarray(ratios, float))
    mean = float(logs.mean())
    if logs.size - 1 < MIN_DF:
        return math.exp(mean), None, None
    sd = float(logs.std(ddof=1))
    half = _t(0.975, logs.size - 1) * sd / math.sqrt(logs.size) if sd > 0 else 0.0
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def crossover(ratios_a_first: list[float], ratios_b_first: list[float]):
    """The two-sequence crossover estimate (A B pairs and B A pairs; Jones & Kenward's 2x2 design):
    with d the log ratios of B over A, a pair where B ran second carries tau + pi and one where B ran
    first tau - pi, pi being the log of how much faster a pair's second trial runs than its first.
    tau = (mean_AB + mean_BA) / 2 and pi = (mean_AB - mean_BA) / 2, each with variance
    s^2 / 4 (1/n1 + 1/n2) from the pooled within-sequence variance (n1 + n2 - 2 degrees of freedom).

    Returns ((ratio, lo, hi), (position, lo, hi)), or None below one pair in each order and three
    in all (the caller shows no interval below MIN_DF degrees of freedom). The ratio is then free of any position effect, even with unequal numbers in each order."""
    d1, d2 = np.log(np.asarray(ratios_a_first, float)), np.log(np.asarray(ratios_b_first, float))
    n1, n2 = d1.size, d2.size
    if n1 < 1 or n2 < 1 or n1 + n2 < 3:
        return None
    ss = float(((d1 - d1.mean()) ** 2).sum() + ((d2 - d2.mean()) ** 2).sum())
    dof = n1 + n2 - 2
    se = math.sqrt(ss / dof / 4 * (1 / n1 + 1 / n2))
    half = _t(0.975, dof) * se
    tau, pi = (d1.mean() + d2.mean()) / 2, (d1.mean() - d2.mean()) / 2
    return (
        (math.exp(tau), math.exp(tau - half), math.exp(tau + half)),
        (math.exp(pi), math.exp(pi - half), math.exp(pi + half)),
    )
