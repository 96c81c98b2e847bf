"""Host load during a trial's rounds: was anything else using this machine while it was measured?

Taken from the kernel's counters before and after each trial (psutil): the 1-minute load
average, the CPU time other processes used (the whole machine's busy time, stolen time not
included, minus this process's own, and under torchrun that of its sibling ranks on this host),
the time the hypervisor stole, and the CPU clock where the kernel exposes it. A trial during which
others took a noticeable share is flagged `host_loaded`, and tables mark it; what cannot be read
is recorded as unknown (null), never as zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# A trial counts as run on a loaded host when other processes used more than this share of all
# CPUs, or the hypervisor stole more than STEAL_SHARE of the CPU time, while it ran.
OTHER_SHARE = 0.10
STEAL_SHARE = 0.05


@dataclass(frozen=True)
class HostSample:
    wall_s: float
    busy_s: float | None  # the whole machine's non-idle CPU time
    total_s: float | None  # the whole machine's CPU time
    steal_s: float | None  # None where the kernel does not count steal
    own_s: float | None  # this process's CPU time (all its threads)
    load_1m: float | None
    mhz: float | None


def _cpu_mhz() -> float | None:
    import psutil

    try:
        f = psutil.cpu_freq()
    except Exception:  # containers and some kernels expose no frequency
        return None
    return float(f.current) if f and f.current else None


def _sibling_ranks(psutil) -> list:
    """Under torchrun, the other ranks on this host (the torchrun agent's other workers): their CPU
    time is the case's own work, not a neighbour's. Empty in one process."""
    from bench.measuring.distributed import local_world_size

    if local_world_size() <= 1:
        return []
    me = psutil.Process()
    try:
        return [p for p in me.parent().children() if p.pid != me.pid]
    except Exception:  # no parent to ask: this rank alone
        return []


def _cpu_s(process) -> float:
    try:
        return sum(process.cpu_times()[:2])
    except Exception:  # a rank that has just exited
        return 0.0


def _machine_times(t) -> tuple[float, float, float | None]:
    """(busy, total, steal) CPU seconds of the whole machine from its counters. Busy is time the
    guest's processes ran: neither idle nor stolen (stolen time was counted as other processes'
    work until 2026-12-03, so a trial on a VM whose hypervisor stole 18% read "other processes used
    21%" beside "the hypervisor stole 18%"). Linux counts a guest's own guests inside user time, so
    they are not added twice."""
    fields = t._asdict()
    total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
    steal = fields.get("steal")
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle - (steal or 0.0), total, steal


def sample() -> HostSample:
    import psutil

    try:
        busy, total, steal = _machine_times(psutil.cpu_times())
    except Exception:
        busy = total = steal = None
    try:
        own = sum(psutil.Process().cpu_times()[:2]) + sum(_cpu_s(p) for p in _sibling_ranks(psutil))
    except Exception:
        own = None
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = None
    return HostSample(time.monotonic(), busy, total, steal, own, load, _cpu_mhz())


def facts(before: HostSample, after: HostSample) -> dict:
    """The host_* record fields for a trial that ran between the two samples."""
    import psutil

    cpus = psutil.cpu_count() or 1
    wall = after.wall_s - before.wall_s
    other = steal = None
    notes = []
    if None not in (before.busy_s, after.busy_s, before.own_s, after.own_s) and wall > 0:
        other = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / (wall * cpus)
    else:
        notes.append("other processes' CPU time not readable")
    if None not in (before.steal_s, after.steal_s, before.total_s, after.total_s) and after.total_s > before.total_s:
        steal = max(0.0, after.steal_s - before.steal_s) / (after.total_s - before.total_s)
    mhz = [m for m in (before.mhz, after.mhz) if m]
    loaded = None
    if other is not None or steal is not None:
        reasons = []
        if other is not None and other > OTHER_SHARE:
            reasons.append(f"other processes used {other:.0%} of the {cpus} CPUs")
        if steal is not None and steal > STEAL_SHARE:
            reasons.append(f"the hypervisor stole {steal:.0%} of the CPU time")
        loaded = bool(reasons)
        notes = reasons + notes
    return {"host_load_avg_1m": before.load_1m, "host_other_cpu_frac": other, "host_steal_frac": steal,
            "host_cpu_mhz": sum(mhz) / len(mhz) if mhz else None, "host_loaded": loaded,
            "host_load_note": "; ".join(notes) or None}
