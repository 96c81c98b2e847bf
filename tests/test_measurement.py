"""Workloads, statistics and metric definitions (measurement.md), on hand-made numbers."""

import math
import time

import pytest
from scipy import stats as st

from chipbench.errors import UsageError
from chipbench.measuring.metrics import Round, inter_token_latencies, round_metrics
from chipbench.stats import summarize
from chipbench.measuring.workload import Workload, parse_workload, prompt_ids


@pytest.mark.parametrize(
    "text,kind,p,n",
    [
        ("pp512", "prefill", 512, 1),
        ("tg128", "decode", 1, 128),
        ("tg128@d4096", "decode", 4096, 128),
        ("pp512+tg128", "generate", 512, 128),
    ],
)
def test_llama_bench_names_parse_and_round_trip(text, kind, p, n):
    w = parse_workload(text)
    assert (w.kind, w.prompt_tokens, w.gen_tokens, w.name) == (kind, p, n, text)


@pytest.mark.parametrize("text", ["pp", "tg-1", "512", "pp512+", "tg0", "pp0"])
def test_bad_workload_names_say_what_is_valid(text):
    with pytest.raises(UsageError, match="pp<P>|must be >= 1"):
        parse_workload(text)


def test_batch_below_one_is_refused():
    with pytest.raises(UsageError, match="batch must be >= 1, got 0"):
        Workload("prefill", 8, 1, batch=0).validate()


def test_prompt_plus_output_longer_than_the_context_is_refused():
    with pytest.raises(UsageError, match="4097 tokens, longer than tiny's context of 4096"):
        Workload("generate", 4000, 97).validate(4096, "tiny")


def test_prompts_are_seeded_and_rows_differ():
    w = Workload("prefill", 64, 1, batch=3, seed=11)
    a, b = prompt_ids(w, 1000), prompt_ids(w, 1000)
    assert a.equal(b) and a.shape == (3, 64) and not a[0].equal(a[1])


def test_summary_statistics_and_t_interval():
    x = [10.0, 12.0, 11.0, 13.0, 9.0]
    s = summarize(x)
    half = st.t.ppf(0.975, 4) * st.tstd(x) / math.sqrt(5)
    assert s["n"] == 5 and s["median"] == 11.0 and s["mean"] == 11.0
    assert s["stdev"] == pytest.approx(st.tstd(x))
    assert (s["ci95_low"], s["ci95_high"]) == pytest.approx((11 - half, 11 + half))
    assert s["p90"] == pytest.approx(12.6) and s["p99"] == pytest.approx(12.96)


def test_the_interval_of_a_rate_or_a_time_never_reads_below_zero():
    two = summarize([2.0, 20.0])  # two rounds: mean 11, t(1) = 12.7, half width 114
    assert two["ci95_low"] == 0.0 and two["ci95_high"] == pytest.approx(
        11 + st.t.ppf(0.975, 1) * st.tstd([2, 20]) / math.sqrt(2)
    )
    signed = summarize([-2.0, 20.0])  # a quantity that can be negative keeps its whole interval
    assert signed["ci95_low"] < -50


def test_one_sample_has_unknown_spread_not_zero():
    s = summarize([4.0])
    assert s["n"] == 1 and s["stdev"] is None and s["ci95_low"] is None


def test_non_finite_samples_are_not_averaged_in():
    assert summarize([1.0, float("nan"), 3.0])["n"] == 2


def test_round_metrics_follow_the_definitions():
    w = Workload("generate", prompt_tokens=100, gen_tokens=5, batch=2)
    r = Round((0.5, 0.6, 0.7, 0.8, 0.9))
    m = round_metrics(r, w)
    assert m["ttft_s"] == 0.5 and m["e2e_s"] == 0.9
    assert m["tpot_s"] == pytest.approx(0.4 / 4)  # first token excluded
    assert m["prefill_tok_per_s"] == pytest.approx(2 * 100 / 0.5)
    assert m["decode_tok_per_s"] == pytest.approx(2 * 4 / 0.4)
    assert m["output_tok_per_s"] == pytest.approx(2 * 5 / 0.9)
    assert inter_token_latencies(r) == pytest.approx([0.1] * 4)


def test_single_token_round_has_no_decode_metrics():
    m = round_metrics(Round((0.25,)), Workload("prefill", 512, 1))
    assert m["tpot_s"] is None and m["decode_tok_per_s"] is None
    assert m["prefill_tok_per_s"] == pytest.approx(2048)


def test_stolen_cpu_time_is_not_counted_as_other_processes_work():
    """A VM whose hypervisor steals time: the trial's own process did all the guest's work, so no
    other process is blamed; the steal is said once, as steal."""
    from collections import namedtuple

    from chipbench.measuring import hostload

    Times = namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")
    busy, total, steal = hostload._machine_times(Times(70, 0, 10, 100, 0, 0, 0, 20, 5, 0))
    assert (busy, total, steal) == (80, 200, 20)  # guest time is inside user: not added twice

    def at(wall, user, idle, stolen, own):
        b, t, s = hostload._machine_times(Times(user, 0, 0, idle, 0, 0, 0, stolen, 0, 0))
        return hostload.HostSample(wall, b, t, s, own, None, None)

    facts = hostload.facts(at(0, 0, 0, 0, 0), at(10, 16, 0, 4, 16))  # 10 s on 2 CPUs: 16 s ours, 4 s stolen
    assert facts["host_steal_frac"] == 0.2
    assert facts["host_other_cpu_frac"] == 0 and "other processes" not in facts["host_load_note"]
    assert facts["host_load_note"] == "the hypervisor stole 20% of the CPU time"


def test_one_tick_of_stolen_time_in_a_short_trial_flags_nothing_the_counters_cannot_tell():
    """The kernel counts CPU time in 10 ms ticks: in a 50 ms trial on 2 CPUs one tick of steal reads
    as 10%, which the counters cannot tell from none. Such a trial is not flagged as loaded (nor
    cleared: unknown, with why); the same shares over 10 s are beyond the counters' slack."""
    from collections import namedtuple

    from chipbench.measuring import hostload

    Times = namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")
    tick = hostload._tick_s()

    def at(wall, user, idle, stolen, own):
        b, t, s = hostload._machine_times(Times(user, 0, 0, idle, 0, 0, 0, stolen, 0, 0))
        return hostload.HostSample(wall, b, t, s, own, None, None)

    cpus = __import__("psutil").cpu_count()
    wall = 5 * tick
    short = hostload.facts(at(0, 0, 0, 0, 0), at(wall, wall * cpus * 0.9, 0, wall * cpus * 0.1, wall * cpus * 0.9))
    assert short["host_steal_frac"] == pytest.approx(0.1)  # the figure is kept
    assert short["host_loaded"] is None and "too short for the kernel's CPU-time counters" in short["host_load_note"]
    assert short["host_load_note"].endswith(
        "to tell whether other processes took over 10% or the hypervisor stole over 5%"
    )
    from dataclasses import replace

    unseen = [replace(sample, own_s=None) for sample in (at(0, 0, 0, 0, 0), at(wall, 0, 0, wall * cpus * 0.1, 0))]
    said = hostload.facts(*unseen)["host_load_note"]
    assert "to tell whether the hypervisor stole over 5%;" in said and "other processes took" not in said
    wall = 1000 * tick
    long = hostload.facts(at(0, 0, 0, 0, 0), at(wall, wall * cpus * 0.9, 0, wall * cpus * 0.1, wall * cpus * 0.9))
    assert long["host_loaded"] is True and long["host_load_note"] == "the hypervisor stole 10% of the CPU time"
    quiet = hostload.facts(at(0, 0, 0, 0, 0), at(wall, wall * cpus * 0.99, 0, wall * cpus * 0.01, wall * cpus * 0.99))
    assert quiet["host_loaded"] is False and quiet["host_load_note"] is None
    busy = hostload.facts(at(0, 0, 0, 0, 0), at(wall, wall * cpus, 0, 0, wall * cpus * 0.5))  # half was others'
    assert busy["host_loaded"] is True and busy["host_load_note"].startswith("other processes used 50%")


def test_the_cpu_time_of_processes_the_case_started_is_its_own():
    """An engine's core or workers in processes of their own (vLLM's, a tensor-parallel pool) work
    for the case: their CPU time, while they run and once they have exited, is not a neighbour's."""
    import subprocess
    import sys

    from chipbench.measuring import hostload

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    before = hostload.sample()
    subprocess.run([sys.executable, "-c", spin], check=True)  # exited and reaped
    live = subprocess.Popen([sys.executable, "-c", spin + "\ntime.sleep(30)"])
    try:
        import psutil

        child = psutil.Process(live.pid)
        deadline = time.monotonic() + 60
        while sum(child.cpu_times()[:2]) < 0.5 and time.monotonic() < deadline:  # still running, its work done
            time.sleep(0.05)
        after = hostload.sample()
    finally:
        live.kill()
        live.wait()
    assert after.own_s - before.own_s >= 0.9  # both children's 0.5 s, and ours


def test_a_server_on_this_host_is_found_by_its_port_and_one_elsewhere_is_not_ours():
    import os
    import socket

    from chipbench.backends import sensors

    with socket.socket() as listening, socket.socket() as idle:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        idle.bind(("127.0.0.1", 0))  # bound, not listening: no server on that port
        assert sensors.server_pids("127.0.0.1", listening.getsockname()[1]) == [os.getpid()]
        assert sensors.server_pids("localhost", listening.getsockname()[1]) == [os.getpid()]
        assert sensors.server_pids("0.0.0.0", listening.getsockname()[1]) == [os.getpid()]
        assert sensors.server_pids("127.0.0.1", idle.getsockname()[1]) is None  # here, but not seen
    assert sensors.server_pids("192.0.2.1", 8000) == []  # TEST-NET-1: never this machine


def test_a_local_server_that_cannot_be_seen_leaves_other_processes_unknown_not_zero():
    from chipbench.measuring import hostload

    before, after = hostload.sample(None), hostload.sample(None)
    assert before.own_s is None and after.own_note
    facts = hostload.facts(before, after)
    assert facts["host_other_cpu_frac"] is None
    assert facts["host_loaded"] is not False  # unknown neighbours never clear a trial
    assert "its process cannot be seen" in facts["host_load_note"]


def test_a_one_token_probe_is_not_said_to_have_a_token_gap():
    """The long-prefill probe makes one token: the lag is judged against its step, and the line says so."""
    from chipbench.measuring.selftest import TimingCheck

    one = TimingCheck(True, 0.007, 6.9, 6.9, 2048, 1).describe()
    assert "median token gap" not in one and "1 token, no gap: its step is the yardstick; e2e 6900.0 ms" in one
    assert (
        "16 tokens; median token gap 180.00 ms, e2e 3000.0 ms"
        in TimingCheck(True, 0.0005, 0.18, 3.0, 32, 16).describe()
    )
