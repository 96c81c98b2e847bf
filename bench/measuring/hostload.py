"""Host load during a trial's rounds: was anything else using this machine while it was measured?

Taken from the kernel's counters before and after each trial (psutil): the 1-minute load
average, the CPU time other processes used, the time the hypervisor stole, and the CPU clock
where the kernel exposes it. Other processes' time is the whole machine's busy time (stolen time
not included) minus the case's own: this process and every process it started (an engine's core
or workers), under torchrun its sibling ranks on this host, and a server on this host that the
case sends its requests to. A trial during which others took a noticeable share is flagged
`host_loaded`, and tables mark it; what cannot be read is recorded as unknown (null), never as zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from chipbench.backends.base import capability
from chipbench.backends.distributed import local_world_size

# A trial counts as run on a loaded host when other processes used more than this share of all
# CPUs, or the hypervisor stole more than STEAL_SHARE of the CPU time, while it ran.
OTHER_SHARE = 0.10
STEAL_SHARE = 0.05


def _tick_s() -> float:
    """The unit of the kernel's CPU-time counters (/proc/stat and /proc/PID/stat count clock ticks,
    USER_HZ: 100 a second on Linux)."""
    try:
        return 1.0 / os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 0.01


def _judge(share: float, slack: float, limit: float) -> bool | None:
    """Whether a share measured to within +-slack is over the limit: True or False when the whole
    interval is on one side, None when the counters cannot tell."""
    if share - slack > limit:
        return True
    if share + slack <= limit:
        return False
    return None


@dataclass(frozen=True)
class HostSample:
    wall_s: float
    busy_s: float | None  # the whole machine's non-idle CPU time
    total_s: float | None  # the whole machine's CPU time
    steal_s: float | None  # None where the kernel does not count steal
    own_s: float | None  # the case's processes' CPU time (all their threads; see _case_processes)
    load_1m: float | None
    mhz: float | None
    own_note: str | None = None  # why own_s is unknown, where that is known


def _cpu_mhz() -> float | None:
    try:
        f = psutil.cpu_freq()
    except Exception:  # containers and some kernels expose no frequency
        return None
    return float(f.current) if f and f.current else None


def _sibling_ranks(psutil) -> list:
    """Under torchrun, the other ranks on this host (the torchrun agent's other workers): their CPU
    time is the case's own work, not a neighbour's. Empty in one process."""

    if local_world_size() <= 1:
        return []
    me = psutil.Process()
    try:
        return [p for p in me.parent().children() if p.pid != me.pid]
    except Exception:  # no parent to ask: this rank alone
        return []


def _cpu_s(process) -> float:
    """User + system CPU time of a process and of its children that have exited and been reaped
    (a live child is counted as itself, so nothing is counted twice)."""
    try:
        return sum(process.cpu_times()[:4])
    except Exception:  # a process that has just exited
        return 0.0


def _with_descendants(psutil, processes) -> list:
    """The processes and every live process below them, each once."""
    seen = {}
    for p in processes:
        seen.setdefault(p.pid, p)
        try:
            for child in p.children(recursive=True):
                seen.setdefault(child.pid, child)
        except Exception:  # gone, or not ours to look at
            pass
    return list(seen.values())


def _case_processes(psutil, pids) -> list:
    """The processes whose CPU time is the case's own: this one, its sibling ranks under torchrun,
    the given ones (a local server's), and everything they started."""
    mine = [psutil.Process(), *_sibling_ranks(psutil)]
    for pid in pids:
        try:
            mine.append(psutil.Process(pid))
        except Exception:  # exited since it was found
            pass
    return _with_descendants(psutil, mine)


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


def sample(pids: list[int] | None = ()) -> HostSample:
    """The counters now. `pids`: processes on this host doing the case's work beside this one (a
    local server's; see server_pids); None: such a server runs here but cannot be seen, so the CPU
    time of other processes is not separable from the case's own (recorded as unknown)."""

    try:
        busy, total, steal = _machine_times(psutil.cpu_times())
    except Exception:
        busy = total = steal = None
    try:
        own = None if pids is None else sum(_cpu_s(p) for p in _case_processes(psutil, pids))
    except Exception:
        own = None
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = None
    unseen = (
        "the case's server runs on this host and its process cannot be seen, so other processes' CPU time "
        "cannot be told from the server's"
        if pids is None
        else None
    )
    return HostSample(time.monotonic(), busy, total, steal, own, load, _cpu_mhz(), unseen)


def facts(before: HostSample, after: HostSample) -> dict:
    """The host_* record fields for a trial that ran between the two samples.

    The kernel counts CPU time in ticks, and a CPU's time since its last tick is not counted yet, so
    each read is short by up to a tick per CPU, plus one in the conversion: a difference of two reads
    is known to within (CPUs + 1) ticks, and other processes' time (the machine's less the case's) to
    within twice that. A share is judged against its limit only beyond that slack: in a trial of
    50 ms on 2 CPUs one tick of stolen time reads as 10%, and so says nothing. Where the slack
    straddles the limit, host_loaded is unknown (null) and the note says the trial was too short."""

    cpus = psutil.cpu_count() or 1
    wall = after.wall_s - before.wall_s
    counted = (cpus + 1) * _tick_s()  # the slack of one counter's difference, in CPU seconds
    other = steal = None
    over = []  # (judgement, reason) for each share that was read
    notes = []
    if None not in (before.busy_s, after.busy_s, before.own_s, after.own_s) and wall > 0:
        other = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / (wall * cpus)
        over.append(
            (
                _judge(other, 2 * counted / (wall * cpus), OTHER_SHARE),
                f"other processes used {other:.0%} of the {cpus} CPUs",
                f"other processes took over {OTHER_SHARE:.0%}",
            )
        )
    else:
        notes.append(after.own_note or before.own_note or "other processes' CPU time not readable")
    if None not in (before.steal_s, after.steal_s, before.total_s, after.total_s) and after.total_s > before.total_s:
        spent = after.total_s - before.total_s
        steal = max(0.0, after.steal_s - before.steal_s) / spent
        over.append(
            (
                _judge(steal, counted / spent, STEAL_SHARE),
                f"the hypervisor stole {steal:.0%} of the CPU time",
                f"the hypervisor stole over {STEAL_SHARE:.0%}",
            )
        )
    mhz = [m for m in (before.mhz, after.mhz) if m]
    loaded = None
    if over:
        reasons = [reason for judged, reason, _ in over if judged]
        if reasons:
            loaded = True
        elif other is not None and all(judged is False for judged, _, _ in over):
            loaded = False  # not loaded only when the other processes' share was read and cleared
        untold = [question for judged, _, question in over if judged is None]
        if not reasons and untold:
            reasons = [
                f"the trial's {wall * 1e3:.0f} ms on {cpus} CPUs were too short for the kernel's CPU-time "
                f"counters ({_tick_s() * 1e3:.0f} ms ticks) to tell whether " + " or ".join(untold)
            ]
        notes = reasons + notes
    return {
        "host_load_avg_1m": before.load_1m,
        "host_other_cpu_frac": other,
        "host_steal_frac": steal,
        "host_cpu_mhz": sum(mhz) / len(mhz) if mhz else None,
        "host_loaded": loaded,
        "host_load_note": "; ".join(notes) or None,
    }


# A load generator and the server it loads, on one host, share its CPUs. When the two together keep
# at least this share of them busy, the client took CPU time the server would have used: the level
# measured the server slowed by its own client.
CONTEND_SHARE = 0.9
CLIENT_SHARE = 0.05  # ... and the client took at least this share of them (less could not slow the server)
CLIENT_MIN_WALL_S = 1.0  # a shorter level's CPU shares are within the counters' ticks: not judged


@dataclass(frozen=True)
class ClientSample:
    wall_s: float
    client_s: float  # this process's CPU time and its exited, waited-for children's (a driver's tool)
    server_s: float | None  # a server's on this host, with everything it started (None: see server_note)
    server_note: str | None = None  # why the server's CPU time is not known apart from the client's


def client_sample(server_pids: list[int] | None) -> ClientSample:
    """The load generator's CPU time now (this process; a driver's tool counts once it has exited and
    been waited for) and a local server's (`server_pids`: case_pids of the backend)."""
    client = _cpu_s(psutil.Process())
    if server_pids is None:
        return ClientSample(time.monotonic(), client, None, "the server runs on this host, its process unseen")
    if not server_pids:
        return ClientSample(time.monotonic(), client, None, "the server is not on this host: no CPUs shared")
    if os.getpid() in server_pids:
        return ClientSample(time.monotonic(), client, None, "the server runs inside the client's own process")
    procs = []
    for pid in server_pids:
        try:
            procs.append(psutil.Process(pid))
        except Exception:  # exited since it was found
            pass
    if not procs:
        return ClientSample(time.monotonic(), client, None, "the server's process exited")
    return ClientSample(time.monotonic(), client, sum(_cpu_s(p) for p in _with_descendants(psutil, procs)))


def client_fields(before: ClientSample, after: ClientSample, load_s: float | None = None) -> dict:
    """A serving level's CPUs: the load generator's and a local server's average use over the level,
    and whether they contended for this host's CPUs (CONTEND_SHARE, CLIENT_SHARE). `load_s`: a driven
    level's load as the tool timed it, inside a wall that also holds the tool's start-up: the server's
    use is over the load alone, and whether the tool contended is not known (its CPU time counts its
    start-up, while the server idled)."""
    wall = after.wall_s - before.wall_s
    out = {"client_cpu_cores": None, "server_cpu_cores": None, "client_contends": None, "client_cpu_note": None}
    if wall <= 0:
        return out
    cpus = psutil.cpu_count() or 1
    client = max(0.0, after.client_s - before.client_s) / wall
    span = load_s if load_s and 0 < load_s <= wall else wall
    server = None if None in (before.server_s, after.server_s) else max(0.0, after.server_s - before.server_s) / span
    out.update(client_cpu_cores=round(client, 4), server_cpu_cores=None if server is None else round(server, 4))
    if server is None:
        out["client_cpu_note"] = f"the load generator used {client:.2f} of this host's {cpus} CPUs; " + (
            after.server_note or before.server_note or "the server's CPU use is unknown"
        )
    elif wall < CLIENT_MIN_WALL_S:
        out["client_cpu_note"] = f"a level of {wall:.2f} s: its CPU shares are within the counters' resolution"
    elif load_s is not None:
        out["client_cpu_note"] = (
            f"the load tool used {client:.2f} of this host's {cpus} CPUs over the level, its start-up included; "
            f"the server {server:.2f} over the {span:.1f} s of load; whether the tool slowed the server is not known"
        )
    else:
        out["client_contends"] = client + server >= CONTEND_SHARE * cpus and client >= CLIENT_SHARE * cpus
        out["client_cpu_note"] = (
            f"the load generator used {client:.2f} of this host's {cpus} CPUs beside the server's {server:.2f}"
            + (
                ": they contended for them, so the server ran slower than it would alone (drive it from another "
                "host, or pin the two to separate CPUs)"
                if out["client_contends"]
                else ""
            )
        )
    return out


def case_pids(backend) -> list[int] | None:
    """Processes beside this one that do a backend's work on this host (an adapter's optional
    `host_processes()`: an endpoint's local server); [] when it names none."""
    own = capability(backend, "host_processes")
    if own is None:
        return []
    try:
        return own()
    except Exception:  # never let the load probe fail a case
        return None
