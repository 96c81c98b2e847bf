"""Telemetry: sampled in the background, summarised over the timed rounds, never zero when unread."""

import time

import pytest

from chipbench.measuring.telemetry import Nvml, Sampler


class FakeBoard:
    """A device drawing 100 W (its energy counter climbs 100 J/s) that throttles from t_hot on."""

    name, quantities = "fake", ("clock_mhz", "power_w", "temp_c", "energy_j", "throttle")

    def __init__(self, t_hot: float):
        self.t0, self.t_hot = time.perf_counter(), t_hot

    def open(self):
        return None

    def read(self):
        t = time.perf_counter()
        hot = t >= self.t_hot
        return {
            "clock_mhz": 1500.0 if hot else 1980.0,
            "power_w": 100.0,
            "temp_c": 90.0 if hot else 60.0,
            "energy_j": 100.0 * (t - self.t0),
            "throttle": "hw thermal" if hot else "",
        }

    def close(self):
        pass


def test_energy_power_and_throttled_rounds_over_the_timed_rounds():
    now = time.perf_counter()
    sampler = Sampler([FakeBoard(t_hot=now + 0.35)], rate_hz=50).start()
    windows = []
    for _ in range(4):  # four 0.15 s rounds; the board throttles from 0.35 s on
        start = time.perf_counter()
        time.sleep(0.15)
        windows.append((start, time.perf_counter()))
    sampler.stop()
    out = sampler.summary(windows, tokens=600)
    span = windows[-1][1] - windows[0][0]
    assert out["energy_j"] == pytest.approx(100 * span, rel=0.15)
    assert out["energy_per_token_j"] == pytest.approx(out["energy_j"] / 600)
    assert out["tele_power_w"] == 100.0 and out["tele_temp_c_max"] == 90.0
    assert out["throttled_rounds"] in (2, 3) and out["throttle_reasons"] == "hw thermal"
    assert out["telemetry_not_metered"] == "memory clock, host energy" and out["telemetry_samples"] > 10
    # the method: the meter (a source that names none is its own name), its check before the rounds
    assert out["energy_meter"] == "fake" and out["energy_domain"] == "unknown" and out["energy_sample_hz"] == 50
    assert out["energy_check"].startswith("passed: advanced 3 time(s)") and "no limit stated" in out["energy_check"]
    assert out["host_energy_meter"] == "none" and out["host_energy_j"] is None and out["host_energy_check"] is None


def test_a_round_shorter_than_the_sampling_period_is_judged_by_the_reads_around_it():
    """A GPU prefill takes ~30 ms against a 100 ms sampling period: most rounds hold no read, and
    a throttle reason active on both sides of such a round must not be missed."""

    class Board:
        name, quantities = "board", ("throttle",)

        def open(self):
            return None

    sampler = Sampler([Board()])
    states = ["", "", "sw power cap", "sw power cap", ""]
    sampler.samples = [(0.1 * i, {"throttle": s}) for i, s in enumerate(states)]  # reads at 0, 0.1 .. 0.4 s
    windows = [(0.02, 0.05), (0.22, 0.25), (0.42, 0.45)]  # cool, between two throttled reads, after the last
    out = sampler.summary(windows, tokens=3)
    assert out["throttled_rounds"] == 1 and out["throttle_reasons"] == "sw power cap"
    sampler.samples = [(0.1 * i, {"throttle": ""}) for i in range(5)]
    assert sampler.summary(windows, tokens=3)["throttled_rounds"] == 0


def test_energy_counts_the_rounds_alone_read_at_their_edges():
    """Energy per token is the counter's rise over the timed rounds: not over the gaps between them,
    and not over the up-to-a-period between a background read and a round's edge."""

    class Meter:
        name, quantities = "meter", ("energy_j",)

        def open(self):
            return None

    sampler = Sampler([Meter()])
    sampler.samples = [(0.0, {"energy_j": 0.0}), (1.0, {"energy_j": 100.0})]  # 100 W, read once a second
    windows = [(0.2, 0.3), (0.6, 0.7)]  # two 0.1 s rounds with a gap between them
    out = sampler.summary(windows, tokens=20)
    assert out["energy_j"] == pytest.approx(20.0) and out["energy_per_token_j"] == pytest.approx(1.0)
    # reads at the edges (what the runner takes) are used as they are: here the board idled between them
    sampler.samples = [
        (0.0, {"energy_j": 0.0}),
        (0.2, {"energy_j": 5.0}),
        (0.3, {"energy_j": 35.0}),
        (0.6, {"energy_j": 40.0}),
        (0.7, {"energy_j": 70.0}),
        (1.0, {"energy_j": 75.0}),
    ]
    assert sampler.summary(windows, tokens=20)["energy_j"] == pytest.approx(60.0)
    sampler.samples = [(0.25, {"energy_j": 1.0}), (1.0, {"energy_j": 100.0})]  # nothing before the first round
    assert sampler.summary(windows, tokens=20)["energy_j"] is None


class SteppedMeter:
    """A 100 W board whose energy counter moves only every `step` seconds (NVML's moves about every
    10 ms): a round shorter than a few steps may see it move once, or not at all."""

    name, quantities = "stepped", ("energy_j",)

    def __init__(self, step: float):
        self.step = step

    def open(self):
        return None

    def read(self):
        return {"energy_j": 100.0 * self.step * (time.perf_counter() // self.step)}

    def close(self):
        pass


def test_the_energy_counters_step_is_timed_before_the_rounds():
    sampler = Sampler([SteppedMeter(0.01)])
    assert 0.005 < sampler.energy_period() < 0.02
    assert Sampler([SteppedMeter(10.0)]).energy_period(limit_s=0.05) == 0.05  # never moved: at least that coarse
    assert Sampler([FakeBoard(t_hot=0.0)]).energy_period() < 0.001  # moves on every read
    without = Sampler([SteppedMeter(0.01)])
    without.live = []
    assert without.energy_period() is None


def test_energy_is_summed_per_round_only_where_the_counter_resolves_the_rounds():
    """Rounds of ten counter steps or more: each round's own rise. Shorter rounds: the span from the
    first round's start to the last one's end when that is long enough (gaps counted in, and said).
    Shorter still: not metered, with why; never a zero or a single step passed off as a measurement."""
    sampler = Sampler([SteppedMeter(0.01)])
    sampler.samples = [(0.01 * i, {"energy_j": 1.0 * i}) for i in range(200)]  # 100 W, read every step
    sampler.energy_period_s = 0.01
    long_rounds = [(0.1, 0.3), (0.5, 0.7)]
    out = sampler.summary(long_rounds, tokens=40)
    assert out["energy_scope"] == "rounds" and out["energy_j"] == pytest.approx(40.0)
    assert out["energy_counter_period_s"] == 0.01
    short_rounds = [(0.1 + 0.2 * i, 0.13 + 0.2 * i) for i in range(5)]  # 30 ms each over 0.83 s
    out = sampler.summary(short_rounds, tokens=40)
    assert out["energy_scope"] == "span" and out["energy_j"] == pytest.approx(83.0)
    sampler.energy_period_s = 0.1  # a coarser counter: not even the span is ten steps long
    out = sampler.summary(short_rounds, tokens=40)
    assert out["energy_j"] is None and out["energy_per_token_j"] is None and out["energy_scope"] is None
    assert "energy: its counter moves every 100 ms, too coarse" in out["telemetry_not_metered"]


def test_each_round_reads_the_counters_just_before_and_just_after_its_clock(cpu):
    from chipbench.measuring.runner import Case, CaseRun
    from chipbench.measuring.workload import parse_workload

    run = CaseRun(cpu, Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg8"), rounds=2))
    run.sampler = Sampler([FakeBoard(t_hot=float("inf"))])  # not started: only the edge reads
    run.setup()
    try:
        for _ in range(3):
            run.round()
    finally:
        run.close()
    times = [t for t, _ in run.sampler.samples]
    assert len(times) == 6
    for (start, end), (before, after) in zip(run.windows, zip(times[::2], times[1::2])):
        assert 0 <= start - before < 0.01 and 0 <= after - end < 0.05


def test_nothing_readable_is_not_metered_never_zero():
    class Nothing:
        name, quantities = "nothing", ("power_w",)

        def open(self):
            return "no sensor here"

    sampler = Sampler([Nothing()]).start()
    sampler.stop()
    out = sampler.summary([(0.0, 1.0)], tokens=10)
    assert out["energy_j"] is None and out["tele_power_w"] is None and out["throttled_rounds"] is None
    assert out["telemetry_not_metered"].startswith("clock, memory clock, power, temperature, energy, throttling")
    assert "nothing: no sensor here" in out["telemetry_not_metered"]


def test_a_cpu_record_says_what_was_and_was_not_metered(cpu):
    from chipbench.judging.trial import run_case
    from chipbench.measuring.runner import Case
    from chipbench.measuring.workload import parse_workload

    rec = run_case(cpu, Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg16"), rounds=2))
    names = {"tele_clock_mhz": "clock", "tele_power_w": "power", "energy_j": "energy", "throttled_rounds": "throttling"}
    listed = set((rec["telemetry_not_metered"] or "").split(" (")[0].split(", "))
    for field, name in names.items():
        # every quantity is either a value or named as not metered; never silently zero
        assert (rec[field] is None) == (name in listed), field
        assert rec[field] is None or rec[field] > 0 or field == "throttled_rounds"


def test_nvml_without_its_library_or_device_says_why():
    reason = Nvml(0).open()
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert reason == "nvidia-ml-py is not installed (pip install 'chipbench[nvidia]')"
    else:
        assert reason is None or reason.startswith("NVML unavailable")


class FakeNvmlLibrary:
    """NVML's lookups over a machine's GPUs, listed in NVML's (PCI) order by UUID; `str_uuids`: this
    release takes UUIDs as str (newer nvidia-ml-py), else only bytes (older ones)."""

    def __init__(self, uuids: list[str], str_uuids: bool = True):
        self.uuids, self.str_uuids = uuids, str_uuids

    def nvmlDeviceGetCount(self):
        return len(self.uuids)

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("card", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if isinstance(uuid, str) and not self.str_uuids:
            raise TypeError("bytes expected")
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        if uuid not in self.uuids:
            raise RuntimeError("Not Found")
        return ("card", self.uuids.index(uuid))


A, B = "1a2b3c4d-0000-1111-2222-333344445555", "9f8e7d6c-0000-1111-2222-333344445555"


@pytest.mark.parametrize("str_uuids", [True, False])
def test_nvml_reads_the_card_torch_runs_on_not_the_one_at_its_index(str_uuids):
    from chipbench.measuring.telemetry import nvml_handle

    # CUDA_VISIBLE_DEVICES=1: torch's cuda:0 is NVML's second GPU; torch gives the UUID bare
    nvml = FakeNvmlLibrary([f"GPU-{A}", f"GPU-{B}"], str_uuids=str_uuids)
    assert nvml_handle(nvml, 0, B) == ("card", 1)
    assert nvml_handle(FakeNvmlLibrary([f"GPU-{A}", f"MIG-{B}"]), 0, B) == ("card", 1)  # a MIG slice


def test_nvml_never_guesses_which_of_several_cards_runs():
    from chipbench.measuring.telemetry import nvml_handle

    with pytest.raises(LookupError, match=r"no NVML device matches torch's cuda:0 .* among NVML's 2 GPU"):
        nvml_handle(FakeNvmlLibrary([f"GPU-{A}", f"GPU-{B}"]), 0, None)
    with pytest.raises(LookupError, match="UUID 00000000"):
        nvml_handle(FakeNvmlLibrary([f"GPU-{A}", f"GPU-{B}"]), 0, "00000000-0000-0000-0000-000000000000")
    # one GPU in the machine: index 0 cannot name another card
    assert nvml_handle(FakeNvmlLibrary([f"GPU-{A}"]), 0, None) == ("card", 0)
    broken = FakeNvmlLibrary([f"GPU-{A}"])
    broken.nvmlDeviceGetHandleByIndex = lambda i: (_ for _ in ()).throw(RuntimeError("NVML_ERROR_GPU_IS_LOST"))
    with pytest.raises(LookupError, match="cannot open its one GPU: NVML_ERROR_GPU_IS_LOST"):
        nvml_handle(broken, 0, None)  # a lookup error, never an NVML exception out of a device's facts


def test_nvml_telemetry_of_an_unmatched_card_is_not_metered(monkeypatch):
    import types

    fake = types.ModuleType("pynvml")
    library = FakeNvmlLibrary([f"GPU-{A}", f"GPU-{B}"])
    for name in ("nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetHandleByUUID"):
        setattr(fake, name, getattr(library, name))
    shut = []
    fake.nvmlInit, fake.nvmlShutdown = (lambda: None), (lambda: shut.append(True))
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    sampler = Sampler([Nvml(0, uuid=None)])
    assert sampler.live == [] and "no NVML device matches" in sampler.unavailable["nvml"]
    assert shut == [True]  # NVML is released again
    assert Nvml(0, uuid=B).open() is None
