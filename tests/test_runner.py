"""The harness's clock and case runner, on the real CPU adapter and on adapters that misbehave."""

import pytest

from chipbench.judging.trial import run_case

from chipbench.measuring.runner import Case
from chipbench.measuring.selftest import check_timing_waits
from chipbench.measuring.workload import Workload, parse_workload
from tests.adapters import CrashesOn, DeviceTensorTokens, LazyClock, StopsEarly


def case(model="tiny-qwen3", workload="pp16+tg8", backend="cpu", batch=1, rounds=3):
    return Case(backend, model, "fp32", parse_workload(workload, batch=batch), warmup=1, rounds=rounds)


def test_a_case_yields_exactly_the_requested_tokens_every_round(cpu):
    rec = run_case(cpu, case(workload="pp16+tg8", batch=2))
    assert rec["status"] == "ok", rec.get("error")
    assert len(rec["token_times_s"]) == 3 and all(len(t) == 8 for t in rec["token_times_s"])
    assert all(a < b for t in rec["token_times_s"] for a, b in zip(t, t[1:]))  # monotonic clock
    assert rec["ttft_s_n"] == 3 and rec["itl_s_n"] == 3 * 7
    assert rec["decode_tok_per_s_median"] > 0 and rec["ttft_s_stdev"] is not None


def test_metrics_are_recomputable_from_the_raw_timestamps(cpu):
    rec = run_case(cpu, case(workload="pp16+tg8"))
    first = rec["token_times_s"][0]
    assert rec["ttft_s_samples"][0] == pytest.approx(first[0])
    assert rec["tpot_s_samples"][0] == pytest.approx((first[-1] - first[0]) / 7)


@pytest.mark.parametrize("model", ["tiny-qwen2.5", "tiny-qwen3-moe", "tiny-qwen3-next", "tiny-qwen3.5-moe"])
def test_every_family_runs_through_the_harness_loop(cpu, model):
    rec = run_case(cpu, case(model=model, workload="pp8+tg4", rounds=1))
    assert rec["status"] == "ok", rec.get("error")
    assert rec["linear_attn_path"] == ("torch" if "next" in model or "3.5" in model else None)


def test_timing_self_test_passes_on_the_cpu_adapter(cpu):
    check = check_timing_waits(cpu)
    assert check.passed, check.describe()


def test_timing_self_test_fails_a_backend_whose_clock_does_not_wait():
    check = check_timing_waits(LazyClock(), model="tiny-qwen3-next", new_tokens=8)
    assert not check.passed, check.describe()
    assert check.lag_s > check.e2e_s  # the work it skipped outlasts everything it reported
    assert len(check.lags_s) == 3 and all(lag > check.median_gap_s for lag in check.lags_s)  # every attempt


def test_timing_self_test_tells_host_jitter_from_a_clock_that_does_not_wait(cpu):
    """A synchronous backend on a loaded host: the host is preempted between the last token and
    the sync in the first timed attempt (here: a 50 ms stall), which reads as work left in flight;
    the attempt after it shows none, so the backend passes, and the record of the check says so."""
    import time

    class Preempted:
        def __init__(self, inner):
            self.inner, self.syncs = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def synchronize(self):
            self.syncs += 1
            if self.syncs == 2:  # the first timed attempt's (the first is the warmup's)
                time.sleep(0.05)
            return self.inner.synchronize()

    check = check_timing_waits(Preempted(cpu))
    assert check.passed, check.describe()
    assert len(check.lags_s) == 2 and check.lags_s[0] >= 0.05 > check.lags_s[1]
    assert "attempts' lags" in check.describe()


def test_an_output_shorter_than_requested_fails_the_case():
    rec = run_case(StopsEarly(), case())
    assert rec["status"] == "failed"
    assert "produced 7 token steps, the workload asked for exactly 8" in rec["error"]


def test_device_tensors_handed_to_the_clock_fail_the_case():
    rec = run_case(DeviceTensorTokens(), case())
    assert rec["status"] == "failed" and "host ints" in rec["error"]


def test_a_crash_in_one_case_is_recorded_and_the_next_case_runs():
    backend = CrashesOn("tiny-qwen3-moe")
    bad = run_case(backend, case(model="tiny-qwen3-moe", backend="crashy"))
    good = run_case(backend, case(model="tiny-qwen3", backend="crashy"))
    assert bad["status"] == "failed" and bad["error"].startswith("OutOfMemoryError: simulated")
    assert "ttft_s_median" not in bad and bad["model"] == "tiny-qwen3-moe"
    assert good["status"] == "ok"


def test_a_context_overflow_is_refused_before_loading(cpu):
    rec = run_case(cpu, Case("cpu", "tiny-qwen3", "fp32", Workload("generate", 4090, 10), rounds=1))
    assert rec["status"] == "failed" and "longer than tiny-qwen3's context of 4096" in rec["error"]


def test_a_dtype_the_backend_cannot_run_is_refused_before_anything_runs():
    from chipbench.backends.registry import Entry
    from chipbench.backends.base import Probe
    from chipbench.errors import UsageError
    from chipbench.measuring.suite import SuiteOptions, plan
    from tests.adapters import Wrapped

    class Fp32Only(Wrapped):
        def supported_dtypes(self):
            return ("fp32",)

    entries = {
        "fp32only": Entry("fp32only", "test", Fp32Only("fp32only"), Probe.ok()),
        "cpu": Entry("cpu", "builtin", Wrapped("cpu"), Probe.ok()),
    }
    with pytest.raises(UsageError, match="backend 'fp32only' cannot run dtype 'bf16'; it runs: fp32"):
        plan(SuiteOptions(backends=("fp32only",), models=("tiny-qwen3",), dtypes=("bf16",)), entries)
    assert (
        len(plan(SuiteOptions(backends=("fp32only",), models=("tiny-qwen3",), dtypes=("fp32",)), entries)) == 2
    )  # pp512, tg128
    # Not named: every available backend runs what it can; what one cannot run is listed, not dropped
    planned = plan(SuiteOptions(models=("tiny-qwen3",), dtypes=("bf16",)), entries)
    assert [p.skip_reason for p in planned if p.case is None] == ["cannot run dtype 'bf16' (it runs: fp32)"]
    assert {p.case.backend for p in planned if p.case} == {"cpu"}


def test_peak_memory_is_set_beside_the_analytic_weights_and_cache(cpu):
    from chipbench.models.counts import facts
    from chipbench.models.zoo import get_model

    rec = run_case(cpu, case(model="tiny-qwen3-next", workload="pp16+tg8", batch=2))
    f = facts(get_model("tiny-qwen3-next"))
    per_seq = 24 * f.kv_bytes_per_token("fp32") + f.recurrent_state_bytes + f.conv_state_bytes("fp32")
    assert rec["expected_mem_bytes"] == f.weight_bytes("fp32") + 2 * per_seq
    # on the CPU the peak is the whole process's RSS: far above a tiny model's bytes, and said so
    assert rec["mem_vs_expected"] == pytest.approx(rec["peak_mem_bytes"] / rec["expected_mem_bytes"])
    assert rec["peak_mem_kind"] == "process_rss_peak" and rec["mem_vs_expected"] > 1


def test_a_cache_kept_in_another_dtype_is_counted_in_its_own_bytes(cpu, monkeypatch):
    """A runtime that keeps its caches wider (or narrower) than the case's dtype says so with the
    handle's kv_cache_dtype: the record's cache bytes, the expected memory and the decode step's
    bytes follow it (OpenVINO keeps an fp32-declared state in bf16 on a bf16 CPU)."""
    from chipbench.models.counts import facts
    from chipbench.models.zoo import get_model

    plain = run_case(cpu, case(workload="tg8@d64", rounds=1))
    loaded = cpu.load

    def load_half_cache(*a, **k):
        handle = loaded(*a, **k)
        handle.kv_cache_dtype = "bf16"
        return handle

    monkeypatch.setattr(cpu, "load", load_half_cache)
    half = run_case(cpu, case(workload="tg8@d64", rounds=1))
    per_token = facts(get_model("tiny-qwen3")).kv_bytes_per_token("fp32")
    assert plain["kv_bytes_per_token"] == per_token and half["kv_bytes_per_token"] == per_token // 2
    assert plain["expected_mem_bytes"] - half["expected_mem_bytes"] == (64 + 8) * per_token // 2
    context = 64 + 8 // 2  # the average decode step's
    assert plain["decode_bytes_per_step"] - half["decode_bytes_per_step"] == context * per_token // 2


def test_a_models_freed_memory_is_handed_back_before_the_next_case_can_count_it(cpu, monkeypatch):
    """On the CPU a case's peak is the process's resident set: memory the allocator kept from the
    model before it (another backend's, the self-test's) counted in the next case's peak (a llama.cpp
    pp512 after the torch cases read 2.89 GiB where alone it reads 1.5). Every release trims it."""
    from chipbench.measuring import env
    from chipbench.models.zoo import get_model
    from chipbench.session import Session

    trims = []
    monkeypatch.setattr(env, "release_host_memory", lambda: trims.append(1))
    assert run_case(cpu, case(rounds=1), check=False)["status"] == "ok" and trims == [1]  # CaseRun.close
    trims.clear()
    session = Session([], {}, writer=None, host={})
    session.loaded = (None, cpu, cpu.load(get_model("tiny-qwen3"), "fp32", seed=0))
    session.release()
    assert session.loaded is None and trims == [1]


def test_sustained_mode_fills_its_time_and_compares_first_with_last(cpu):
    from dataclasses import replace

    c = replace(case(workload="tg16", rounds=2), soak_s=1.5)
    rec = run_case(cpu, c)
    assert rec["status"] == "ok" and rec["soak_elapsed_s"] >= 1.5
    assert rec["rounds"] == len(rec["token_times_s"]) > 2  # more rounds than the minimum, all recorded
    assert rec["soak_window_s"] == pytest.approx(rec["soak_elapsed_s"] / 3)  # shorter than 2 min: thirds
    assert rec["soak_change"] == pytest.approx(rec["soak_last_tok_per_s"] / rec["soak_first_tok_per_s"])


def test_a_soak_is_filled_by_time_not_by_a_count_taken_from_the_warmup():
    """pytest-benchmark needs a round count up front; taken from a warmup faster than the timed
    rounds it overshot a 125 s soak to 163 s. The count now leaves a margin (a 0.1 s warmup and a
    10 s soak: 80 rounds, not 100), and rounds are added only while the soak is unfilled."""
    from dataclasses import replace

    from chipbench.measuring.runner import soak_rounds, soak_unfilled

    c = replace(case(workload="tg16", rounds=2), soak_s=10.0)
    assert soak_rounds(c, [(5.0, 5.1)]) == 80
    assert soak_rounds(replace(c, soak_s=None), [(5.0, 5.1)]) == 2
    assert soak_rounds(c, [(5.0, 15.0)]) == 2  # a round longer than the soak: the case's minimum
    warm, *timed = [(0.0, 1.0), (1.0, 5.0), (5.0, 9.0), (9.0, 11.0)]
    assert soak_unfilled(c, [warm, *timed[:2]], 1)  # 8 s of 10
    assert not soak_unfilled(c, [warm, *timed], 1)  # 10 s: filled, no round more
    assert not soak_unfilled(replace(c, soak_s=None), [warm], 1)


def test_a_soak_must_be_positive():
    from chipbench.backends.registry import discover
    from chipbench.errors import UsageError
    from chipbench.measuring.suite import SuiteOptions, plan

    with pytest.raises(UsageError, match="soak must be a number of seconds > 0, got -1"):
        plan(SuiteOptions(backends=("cpu",), soak_s=-1), discover())


def test_device_clock_times_are_used_when_they_agree_with_the_host_stamps():
    from tests.adapters import DeviceClock

    rec = run_case(DeviceClock(), case(workload="pp16+tg8"))
    assert rec["status"] == "ok" and rec["timing_method"].startswith("device events")
    # the spread recorded is the stand-in's own jitter between its stamp and the harness's: microseconds
    # on a quiet machine, 3 ms once on a loaded CI machine (clocks_agree's bounds are tested below)
    assert rec["clock_disagreement_s"] >= 0
    # the recorded times are the device's: each a near-constant lag before the host stamp
    assert all(t > 0 for r in rec["token_times_s"] for t in r)


def test_device_times_agree_with_the_host_within_a_constant_lag_and_a_bounded_spread():
    from chipbench.measuring.runner import clocks_agree

    assert clocks_agree((0.010, 0.020, 0.030), [0.0099, 0.0199, 0.0299]) == (True, pytest.approx(0, abs=1e-12))
    assert not clocks_agree((0.010, 0.020), [0.012, 0.022])[0]  # the device's token after the host saw it
    assert not clocks_agree((0.010, 0.020, 0.030), [0.010, 0.020, 0.028])[0]  # 2 ms spread: over 1 ms and 5%
    assert clocks_agree((0.010, 0.050, 0.100), [0.010, 0.050, 0.098])[0]  # 2 ms is within 5% of 100 ms
    assert clocks_agree((0.010, 0.020), [0.010]) == (False, float("inf"))  # a step without its event


def test_device_clock_times_that_disagree_are_not_used():
    from tests.adapters import DeviceClock

    rec = run_case(DeviceClock(honest=False), case(workload="pp16+tg8"))
    assert rec["status"] == "ok" and rec["timing_method"].startswith("host clock")
    assert "device events disagreed with the host stamps" in rec["timing_method"]
    assert rec["tpot_s_median"] > 1e-5  # the host's times, not the bogus microsecond steps


def test_several_named_backends_each_run_what_they_can_and_list_the_rest():
    from chipbench.backends.base import Probe
    from chipbench.backends.registry import Entry
    from chipbench.errors import UsageError
    from chipbench.measuring.suite import SuiteOptions, plan
    from tests.adapters import Wrapped

    class Fp32Only(Wrapped):
        def supported_dtypes(self):
            return ("fp32",)

    entries = {
        "fp32only": Entry("fp32only", "test", Fp32Only("fp32only"), Probe.ok()),
        "cpu": Entry("cpu", "builtin", Wrapped("cpu"), Probe.ok()),
    }
    planned = plan(
        SuiteOptions(backends=("fp32only", "cpu"), models=("tiny-qwen3",), dtypes=("fp32", "bf16"), workloads=("tg8",)),
        entries,
    )
    assert sorted(p.case.id for p in planned if p.case) == [
        "cpu-tiny-qwen3-bf16-tg8-b1",
        "cpu-tiny-qwen3-fp32-tg8-b1",
        "fp32only-tiny-qwen3-fp32-tg8-b1",
    ]
    assert [p.skip_reason for p in planned if not p.case] == ["cannot run dtype 'bf16' (it runs: fp32)"]
    with pytest.raises(UsageError, match="cannot run dtype 'fp16'"):  # none of the named runs it
        plan(
            SuiteOptions(backends=("fp32only", "cpu"), models=("tiny-qwen3",), dtypes=("fp16",)),
            {**entries, "cpu": Entry("cpu", "builtin", Fp32Only("cpu"), Probe.ok())},
        )


class HostEvent:
    """A stand-in for a stream event on the CPU (where every op has finished when it returns):
    records the host clock, so the event-driven paths of the torch adapter run without a GPU."""

    def record(self):
        import time

        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, other) -> float:
        return (other.t - self.t) * 1e3  # milliseconds, as torch.cuda.Event's


def test_with_stream_events_the_loop_queues_the_next_step_before_taking_a_token():
    import torch

    from chipbench.backends import torch_loop

    log = []

    def first():
        log.append("prefill")
        return torch.tensor([1, 2])

    def step(token, i):
        log.append(f"step {i}")
        return token + 1

    got = torch_loop.run_steps(first, step, 4, lambda t: log.append(f"token {t}"), fence=HostEvent)
    assert log == [
        "prefill",
        "step 0",
        "token [1, 2]",
        "step 1",
        "token [2, 3]",
        "step 2",
        "token [3, 4]",
        "token [4, 5]",
    ]
    assert got == [[1, 2], [2, 3], [3, 4], [4, 5]]
    log.clear()
    torch_loop.run_steps(first, step, 3, lambda t: log.append(f"token {t}"))  # no events: lock step
    assert log == ["prefill", "token [1, 2]", "step 0", "token [2, 3]", "step 1", "token [3, 4]"]


class SlowDevice(HostEvent):
    """A device that is still working when the host comes for each step's tokens: waiting on its
    event takes 20 ms, where the host's own work per step is a fraction of a millisecond."""

    def synchronize(self):
        import time

        time.sleep(0.02)


@pytest.mark.parametrize("fence,host_s,bound", [(SlowDevice, 0.0, False), (HostEvent, 0.01, True), (None, 0.01, True)])
def test_the_loop_tells_a_device_that_waits_for_the_host_from_one_the_host_waits_for(fence, host_s, bound):
    import time

    import torch

    from chipbench.backends import torch_loop
    from chipbench.measuring.runner import HOST_BOUND_FRAC, host_step

    def step(token, i):
        time.sleep(host_s)  # the host's own work: launching the step
        return token + 1

    stamps, waits = [], []
    torch_loop.run_steps(
        lambda: torch.tensor([1]), step, 6, lambda t: stamps.append(time.perf_counter()), fence=fence, waits=waits
    )
    assert len(waits) == 6 and all(w >= 0 for w in waits)
    own, busy = host_step(tuple(stamps), waits)
    assert (busy >= HOST_BOUND_FRAC) is bound, (own, busy, waits)
    if not bound:  # the host's work per step is what is left of the 20 ms steps once the waits are out
        assert own < 0.005 and busy < 0.25


def test_the_host_share_of_a_step_is_recomputed_from_stamps_and_waits():
    from chipbench.measuring.runner import host_step

    assert host_step((0.0, 1.0, 2.0, 3.0), [0.5, 0.9, 0.9, 0.9]) == pytest.approx((0.1, 0.1))
    assert host_step((0.0, 1.0, 2.0), [0.5, 0.0, 0.0]) == pytest.approx((1.0, 1.0))  # the device waited
    assert host_step((0.0, 1.0), [0.0, 5.0]) == (0.0, 0.0)  # a wait longer than the span: no negative work
    assert host_step((0.0,), [0.1]) == (None, None) and host_step((0.0, 1.0), None) == (None, None)
    assert host_step((0.0, 1.0), [0.1]) == (None, None)  # waits that do not match the steps say nothing


def test_records_say_when_the_device_waited_for_the_host(cpu):
    """On the CPU with stand-in stream events the host runs every op itself, so the device it stands
    for never waits: host-bound, said in the record and the summary; the plain CPU adapter, whose
    ops finish as they are called, measures nothing (not 'host-bound')."""
    from dataclasses import replace

    from chipbench.backends.torch_device import TorchBackend
    from chipbench.publishing.report import summary_rows

    events = TorchBackend("cpu-events", replace(cpu.ops, event=HostEvent))
    rec = run_case(events, case(workload="pp8+tg6", backend="cpu-events", rounds=2), check=False)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["host_bound"] is True and rec["host_busy_frac"] >= 0.95 and rec["host_step_s"] > 0
    assert "host-bound: the host's own work filled" in summary_rows([rec])[0]["note"]
    plain = run_case(cpu, case(workload="pp8+tg6", rounds=2), check=False)
    assert (plain["host_step_s"], plain["host_busy_frac"], plain["host_bound"]) == (None, None, None)
    assert "host-bound" not in summary_rows([plain])[0]["note"]


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_the_one_step_ahead_loop_gives_the_lock_step_tokens_and_agreeing_clocks(cpu, mode):
    from dataclasses import replace

    from chipbench.backends.torch_device import TorchBackend
    from chipbench.measuring.workload import prompt_ids
    from chipbench.models.zoo import get_model

    events = TorchBackend("cpu-events", replace(cpu.ops, event=HostEvent))
    w, spec = parse_workload("pp8+tg6", batch=2), get_model("tiny-qwen3")
    handle = cpu.load(spec, "fp32", seed=0, mode=mode)
    try:
        prompt = cpu.prompt(handle, prompt_ids(w, spec.vocab))
        lock, ahead = (b.generate(handle, prompt, w.gen_tokens, lambda t: None) for b in (cpu, events))
    finally:
        cpu.close(handle)
    assert ahead.tokens == lock.tokens and len(ahead.device_times_s) == w.gen_tokens
    assert lock.device_times_s is None and not lock.ran_ahead
    assert ahead.ran_ahead == (mode == "compiled")  # eager stays in lock step, as transformers runs
    rec = run_case(events, Case("cpu-events", "tiny-qwen3", "fp32", w, rounds=2, mode=mode), check=False)
    assert rec["status"] == "ok" and rec["exec_path"] == mode, rec.get("error")
    assert ("queued each step" in rec["timing_method"]) == (mode == "compiled"), rec["timing_method"]
    if mode == "eager":  # (on the CPU every op has finished when the host queues the next: no overlap to see)
        assert rec["timing_method"].startswith("device events"), rec["timing_method"]


def test_each_timing_loop_gets_its_own_self_test(cpu, monkeypatch):
    from dataclasses import replace

    from chipbench.backends.torch_device import TorchBackend
    from chipbench.measuring.selftest import suite_check, timing_loop

    events = TorchBackend("cpu-events", replace(cpu.ops, event=HostEvent))
    assert [timing_loop(cpu, m) for m in ("eager", "compiled")] == ["lock-step", "lock-step"]
    assert [timing_loop(events, m) for m in ("eager", "compiled")] == ["lock-step", "run-ahead"]
    from chipbench.backends import torch_loop

    built = []
    build = torch_loop.build_static_decoder
    monkeypatch.setattr(
        torch_loop, "build_static_decoder", lambda m, b, n, *a, **k: built.append((b, n)) or build(m, b, n, *a, **k)
    )
    status, text = suite_check(events, "tiny-qwen3", "fp32", "compiled", cache_len=129)
    assert status == "passed" and text.endswith("(decode probe compiled, run-ahead loop)"), text
    assert built == [(1, 129)]  # the first case's cache (tg128 at batch 1): its compile is the case's too
    status, text = suite_check(cpu, "tiny-qwen3", "fp32", "compiled")  # lock step: the eager proof stands
    assert status == "passed" and "compiled" not in text, text


def test_chipbench_run_self_tests_each_loop_it_times(cpu, tmp_path, monkeypatch, capsys):
    """A run of eager and compiled cases on a backend that runs compiled steps ahead proves both
    loops before reporting, and each record carries its own loop's proof."""
    from dataclasses import replace

    from chipbench.backends import registry
    from chipbench.backends.base import Probe
    from chipbench.backends.torch_device import TorchBackend
    from chipbench.cli import main
    from chipbench.publishing.record import read_records

    events = TorchBackend("cpuev", replace(cpu.ops, event=HostEvent))
    real = registry.discover

    def discover():
        found = dict(real())
        found["cpuev"] = registry.Entry("cpuev", "test", events, Probe.ok())
        return found

    monkeypatch.setattr(registry, "discover", discover)
    out = tmp_path / "r.jsonl"
    assert (
        main(
            [
                "run",
                "--backend",
                "cpuev",
                "--model",
                "tiny-qwen3",
                "--dtype",
                "fp32",
                "--workload",
                "tg4",
                "--mode",
                "eager,compiled",
                "--rounds",
                "1",
                "--no-check",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert capsys.readouterr().err.count("timing self-test of cpuev") == 2
    recs = {r["exec_path"]: r for r in read_records(out)}
    assert "run-ahead loop" in recs["compiled"]["timing_selftest"]
    assert "run-ahead" not in recs["eager"]["timing_selftest"]


def test_cpu_records_say_which_matmul_extensions_the_cpu_has(cpu):
    """Two VMs both called "Intel(R) Xeon(R) Processor" can differ by AMX, which runs a bf16 matmul
    several times faster: the device facts carry the extensions the kernel reports, and the vector
    code torch dispatches to."""
    from pathlib import Path

    from chipbench.backends.cpu import MATMUL_ISA

    extra = cpu.info().extra
    assert isinstance(extra["cpu_capability"], str) and extra["cpu_capability"]
    proc = Path("/proc/cpuinfo")
    if not proc.exists():
        pytest.skip("no /proc/cpuinfo to check the flags against")
    flags = set()
    for line in proc.read_text().splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags |= set(line.split(":", 1)[1].split())
    assert extra["isa"].split() == [f for f in MATMUL_ISA if f in flags]
