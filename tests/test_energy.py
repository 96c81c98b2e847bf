"""Energy with its method (issue 45, item 1): which meter counted the joules, over what domain, read
how often, and whether the counter passed its check before it was trusted; joules per output and
per total token; the host's energy beside the device's. This machine exposes no meter, so the meters
here are fakes of known values: a powercap tree in a temporary directory, NVML and AMD SMI modules."""

import json
import os
import re
import sys
import threading
import time
import types

import pytest

from chipbench.backends.sensors import AmdSmi, Nvml, Rapl
from chipbench.measuring.telemetry import ENERGY_ADVANCE_LIMIT_S, Sampler, check_meter


def zone(root, name, label, energy_uj=0, range_uj=262143328850, limit_uw=None):
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{range_uj}\n")
    if limit_uw is not None:
        (z / "constraint_0_power_limit_uw").write_text(f"{limit_uw}\n")
        (z / "constraint_1_power_limit_uw").write_text(f"{limit_uw * 1.2:.0f}\n")  # PL2, short-term
    return z


@pytest.fixture
def powercap(tmp_path, monkeypatch):
    """A two-socket host: each package with its DRAM and core subzones, and the platform's psys."""
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", limit_uw=200_000_000)
    zone(root, "intel-rapl:0:0", "core")
    zone(root, "intel-rapl:0:1", "dram")
    zone(root, "intel-rapl:1", "package-1", limit_uw=200_000_000)
    zone(root, "intel-rapl:1:0", "dram")
    zone(root, "intel-rapl:2", "psys")
    monkeypatch.setattr(Rapl, "ROOT", root)
    return root


def test_rapl_as_the_device_counts_packages_and_their_dram_never_core_or_psys(powercap):
    device = Rapl()
    assert device.open() is None
    assert sorted(p.parent.name for p, _ in device.zones) == [
        "intel-rapl:0",
        "intel-rapl:0:1",
        "intel-rapl:1",
        "intel-rapl:1:0",
    ]
    assert device.meters == {"energy_j": ("rapl", "cpu-package+dram")}
    assert device.power_limit_w["energy_j"] == pytest.approx(2 * 240 + 2 * 300)  # PL2 per package, a bound per DRAM
    (powercap / "intel-rapl:0" / "energy_uj").write_text("3000000\n")  # 3 J on package 0
    (powercap / "intel-rapl:1:0" / "energy_uj").write_text("500000\n")  # 0.5 J on socket 1's DRAM
    (powercap / "intel-rapl:0:0" / "energy_uj").write_text("9000000\n")  # core: inside package 0 already
    (powercap / "intel-rapl:2" / "energy_uj").write_text("7000000\n")  # psys: the host's, not the device's
    assert device.read() == {"energy_j": pytest.approx(3.5)}
    host = Rapl("host_energy_j", Rapl.PSYS)
    assert host.open() is None and host.meters == {"host_energy_j": ("rapl", "platform (psys)")}
    (powercap / "intel-rapl:2" / "energy_uj").write_text("9000000\n")
    assert host.read() == {"host_energy_j": pytest.approx(2.0)}


def test_rapl_counts_across_a_wrap_and_says_which_zones_are_missing(tmp_path, monkeypatch):
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", energy_uj=999_000_000, range_uj=1_000_000_000)
    monkeypatch.setattr(Rapl, "ROOT", root)
    device = Rapl()
    assert device.open() is None and device.meters["energy_j"] == ("rapl", "cpu-package")  # no DRAM zone here
    assert device.power_limit_w["energy_j"] == 1000.0  # no stated limit: the package's bound
    (root / "intel-rapl:0" / "energy_uj").write_text("1000000\n")  # wrapped past 1000 J
    assert device.read()["energy_j"] == pytest.approx(2.0)
    assert Rapl("host_energy_j", Rapl.PSYS).open() == "no RAPL psys zone under powercap"
    beside_gpu = Rapl("host_energy_j", Rapl.HOST)  # no psys: the packages, as the host's CPU side
    assert beside_gpu.open() is None and beside_gpu.meters["host_energy_j"] == ("rapl", "cpu-package")
    monkeypatch.setattr(Rapl, "ROOT", tmp_path / "nothing")
    assert Rapl().open() == "no powercap interface (RAPL) on this host"


class Counter:
    """An energy counter of `watts` that moves every `step` seconds; its domain states `limit` W."""

    name, quantities = "counter", ("energy_j",)

    def __init__(self, watts, step=0.001, limit=None, backwards=False):
        self.watts, self.step, self.backwards = watts, step, backwards
        self.power_limit_w = {"energy_j": limit}
        self.meters = {"energy_j": ("test-counter", "device")}
        self.t0 = time.perf_counter()

    def open(self):
        return None

    def read(self):
        ticks = (time.perf_counter() - self.t0) // self.step
        return {"energy_j": (-1 if self.backwards else 1) * self.watts * self.step * ticks}

    def close(self):
        pass


def test_a_counter_is_checked_before_it_is_trusted():
    ok = check_meter(Counter(100.0, limit=300.0), "energy_j")
    assert ok.passed and ok.text.startswith("passed: advanced 3 time(s)") and ok.bound_w == 450.0
    assert "W, within 0-450 W (1.5 x its stated limit of 300 W)" in ok.text
    implied = float(re.search(r"implying ([\d.]+) W", ok.text).group(1))
    assert implied == pytest.approx(100.0, rel=0.5)  # two steps timed by their moves: roughly, as a check needs
    assert 0.0005 < ok.period_s < 0.002
    hot = check_meter(Counter(1000.0, limit=300.0), "energy_j")  # a misread counter: 1 kW on a 300 W part
    assert not hot.passed and re.search(r"implying \d+\.\d W, above 450 W", hot.text)
    back = check_meter(Counter(100.0, backwards=True), "energy_j")
    assert not back.passed and "went backwards" in back.text
    t0 = time.perf_counter()
    stuck = check_meter(Counter(0.0), "energy_j")  # a VM's counter that never moves
    assert not stuck.passed and stuck.text == f"failed: its counter did not advance in {ENERGY_ADVANCE_LIMIT_S:g} s"
    assert time.perf_counter() - t0 < ENERGY_ADVANCE_LIMIT_S + 1


def rounds(sampler, n=3, length=0.06):
    windows = []
    for _ in range(n):
        sampler.read_now()
        start = time.perf_counter()
        time.sleep(length)
        end = time.perf_counter()
        sampler.read_now()
        windows.append((start, end))
    sampler.stop()
    return windows


def test_a_record_states_the_meter_its_domain_rate_and_check_and_joules_per_output_and_total_token():
    sampler = Sampler([Counter(100.0, limit=300.0)], rate_hz=20).start()
    windows = rounds(sampler)
    out = sampler.summary(windows, 30, output_tokens=30, total_tokens=90)
    seconds = sum(end - start for start, end in windows)
    assert out["energy_j"] == pytest.approx(100 * seconds, rel=0.1) and out["energy_scope"] == "rounds"
    assert out["energy_per_output_token_j"] == pytest.approx(out["energy_j"] / 30)
    assert out["energy_per_total_token_j"] == pytest.approx(out["energy_j"] / 90)  # prefill included
    assert (out["energy_meter"], out["energy_domain"], out["energy_sample_hz"]) == ("test-counter", "device", 20)
    assert out["energy_check"].startswith("passed:") and 0 < out["energy_counter_period_s"] < 0.01


def test_a_counter_that_fails_its_check_is_not_metered_with_the_reason_never_zero():
    sampler = Sampler([Counter(1000.0, limit=300.0)], rate_hz=20).start()
    out = sampler.summary(rounds(sampler), 30, output_tokens=30, total_tokens=90)
    assert (
        out["energy_j"] is None and out["energy_per_output_token_j"] is None and out["energy_per_total_token_j"] is None
    )
    assert out["energy_check"].startswith("failed:") and out["energy_meter"] == "test-counter"
    assert "energy: its counter failed its check: advanced 3 time(s)" in out["telemetry_not_metered"]


def test_energy_that_implies_an_impossible_power_over_the_rounds_is_dropped():
    """The check at the start passed; over the rounds the counter jumped (a wrap counted twice, a
    reset): the mean power it implies is outside the bound, and the figure is not recorded."""

    class Jumps(Counter):
        def read(self):
            value = super().read()
            if self.jump:
                value["energy_j"] += 1e6
            return value

    source = Jumps(100.0, limit=300.0)
    source.jump = False
    sampler = Sampler([source], rate_hz=20).start()
    source.jump = True
    out = sampler.summary(rounds(sampler, n=1), 10, output_tokens=10, total_tokens=20)
    assert out["energy_j"] is not None  # the jump came before the round: its edges both see it
    source.jump = False
    sampler = Sampler([source], rate_hz=20).start()
    sampler.read_now()
    start = time.perf_counter()
    time.sleep(0.06)
    source.jump = True
    end = time.perf_counter()
    sampler.read_now()
    sampler.stop()
    out = sampler.summary([(start, end)], 10, output_tokens=10, total_tokens=20)
    assert out["energy_j"] is None and "W over the rounds, outside 0-450 W" in out["telemetry_not_metered"]


def test_the_hosts_energy_is_recorded_beside_the_devices_with_its_own_method(powercap):
    """A GPU's NVML counter and the host's RAPL (psys) over the same rounds."""
    device = Counter(300.0, limit=700.0)
    host = Rapl("host_energy_j", Rapl.HOST)
    stop = threading.Event()

    def burn():  # the platform draws 150 W: psys climbs 150 µJ a millisecond
        uj = 0
        while not stop.is_set():
            uj += 150_000
            (powercap / "next").write_text(f"{uj}\n")
            os.replace(powercap / "next", powercap / "intel-rapl:2" / "energy_uj")  # whole, as sysfs reads
            time.sleep(0.001)

    writer = threading.Thread(target=burn, daemon=True)
    writer.start()
    try:
        sampler = Sampler([device, host], rate_hz=20).start()
        out = sampler.summary(rounds(sampler, length=0.1), 30, output_tokens=30, total_tokens=90)
    finally:
        stop.set()
        writer.join()
    assert out["energy_meter"] == "test-counter" and out["host_energy_meter"] == "rapl"
    assert out["host_energy_domain"] == "platform (psys)" and out["host_energy_check"].startswith("passed:")
    assert out["host_energy_j"] is not None and out["host_energy_j"] < out["energy_j"]
    assert out["host_energy_per_total_token_j"] == pytest.approx(out["host_energy_j"] / 90)
    assert "host energy" not in (out["telemetry_not_metered"] or "")


class FakeNvml(types.ModuleType):
    """One GPU; `counter`: whether it has the total-energy counter (Volta and later)."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, counter: bool, watts: float = 250.0):
        super().__init__("pynvml")
        self.counter, self.watts, self.mj = counter, watts, 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return "gpu0"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.counter:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        self.mj += 1000
        return self.mj

    def nvmlDeviceGetPowerUsage(self, h):
        return self.watts * 1000  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000  # mW

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0

    def nvmlDeviceGetClockInfo(self, h, which):
        return 1980

    def nvmlDeviceGetTemperature(self, h, which):
        return 60


def test_nvml_names_its_energy_counter_or_integrates_power_where_the_board_has_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(counter=True))
    gpu = Nvml(0)
    assert gpu.open() is None and gpu.meters["energy_j"] == ("nvml-energy-counter", "device")
    assert gpu.power_limit_w["energy_j"] == 700.0 and not gpu.counter_period_s
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(counter=False, watts=250.0))
    now = [0.0]
    old = Nvml(0, clock=lambda: now[0])
    assert old.open() is None and old.meters["energy_j"] == ("nvml-power-integration", "device")
    assert old.counter_period_s["energy_j"] == 1.0  # NVML's power is a 1 s average: that is its resolution
    readings = []
    for t in (0.0, 0.5, 2.0):
        now[0] = t
        readings.append(old.read()["energy_j"])
    assert readings == [0.0, 125.0, 500.0]  # 250 W integrated over the reads


class FakeAmdSmi(types.ModuleType):
    def __init__(self, bdfs, energy=True):
        super().__init__("amdsmi")
        self.bdfs, self.energy, self.count = bdfs, energy, 0
        self.AmdSmiTemperatureType = types.SimpleNamespace(EDGE=0)
        self.AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT=0)

    def amdsmi_init(self):
        pass

    def amdsmi_shut_down(self):
        pass

    def amdsmi_get_processor_handles(self):
        return list(range(len(self.bdfs)))

    def amdsmi_get_gpu_device_bdf(self, h):
        return self.bdfs[h]

    def amdsmi_get_energy_count(self, h):
        if not self.energy:
            raise RuntimeError("AMDSMI_STATUS_NOT_SUPPORTED")  # a VM guest
        self.count += 65536
        return {"energy_accumulator": self.count, "counter_resolution": 15.3, "timestamp": 0}

    def amdsmi_get_power_cap_info(self, h):
        return {"power_cap": 750_000_000}  # µW

    def amdsmi_get_power_info(self, h):
        return {"current_socket_power": 420, "average_socket_power": 400}

    def amdsmi_get_temp_metric(self, h, kind, metric):
        return 55


def test_amd_smi_reads_the_card_torch_runs_on_and_its_energy_accumulator(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", FakeAmdSmi(["0000:03:00.0", "0000:83:00.0"]))
    gpu = AmdSmi(0, "0000:83:00")
    assert gpu.open() is None and gpu.handle == 1 and gpu.meters["energy_j"] == ("amdsmi-energy-counter", "device")
    assert gpu.power_limit_w["energy_j"] == 750.0
    reading = gpu.read()
    assert reading["energy_j"] == pytest.approx(2 * 65536 * 15.3 / 1e6) and reading["power_w"] == 420.0
    assert "no AMD SMI device matches torch's device 0" in AmdSmi(0, None).open()  # two cards: no guessing
    monkeypatch.setitem(sys.modules, "amdsmi", FakeAmdSmi(["0000:03:00.0"], energy=False))
    guest = AmdSmi(0, None)
    assert guest.open() is None and "energy_j" not in guest.meters and guest.read()["energy_j"] is None


def test_records_made_before_the_method_are_given_it_on_reading_marked_not_checked():
    """The H200 lease of 2026-12-04 sampled NVML: its records get NVML's counter as their meter,
    the per-output and per-total figures from their own energy and tokens, and say they were not
    checked; nothing measured changes, and the host's energy stays unknown."""
    from pathlib import Path

    from chipbench.publishing.record import OLD_METER_CHECK, read_records

    path = Path(__file__).resolve().parent.parent / "results/measurements/2026-12-04-h200-issue9/runs.jsonl"
    records = read_records(path)
    metered = [r for r in records if r["energy_j"] is not None]
    assert len(records) == 10 and len(metered) == 5
    for r in records:
        assert (r["energy_meter"], r["energy_domain"], r["energy_check"]) == (
            "nvml-energy-counter",
            "device",
            OLD_METER_CHECK,
        )
        assert "host_energy_meter" not in r  # not read then: unknown, not "none"
    (eight,) = [r for r in metered if r["model"] == "qwen3-8b" and "compiled" in r["exec_path"]]
    assert eight["energy_per_output_token_j"] == pytest.approx(eight["energy_j"] / (1 * 128 * eight["rounds"]))
    assert eight["energy_per_total_token_j"] == pytest.approx(eight["energy_j"] / (1 * 129 * eight["rounds"]))
    assert eight["energy_per_output_token_j"] == pytest.approx(eight["energy_per_token_j"])  # tg128: the same tokens


def test_the_report_shows_energy_per_output_and_total_token_and_every_method_under_it():
    from pathlib import Path

    from chipbench.publishing import tables
    from chipbench.publishing.record import read_records

    path = Path(__file__).resolve().parent.parent / "results/measurements/2026-12-04-h200-issue9/runs.jsonl"
    md = tables.to_markdown(tables.build(read_records(path)))
    assert "| cuda: NVIDIA H200 energy |" in md.splitlines()[0]
    assert "| 2.54 J/out, 2.52 J/tok |" in md  # qwen3-8b tg128 compiled
    assert "nvml-energy-counter (device, read at 10 Hz and at each round's edges); check: not checked: 5 trial(s)" in md
    assert "no figure (its counter moves every N ms, too coarse for rounds that span N ms in all): 5 trial(s)" in md
    unmetered = [{**r, "energy_j": None} for r in read_records(path)]
    assert "energy" not in tables.build(unmetered).metrics  # no column where nothing was metered


def test_serving_levels_and_imported_results_state_no_meter_and_why(tmp_path):
    from pathlib import Path

    from chipbench.publishing.record import RecordWriter, read_records

    path = Path(__file__).resolve().parent.parent / "results/measurements/2026-12-07-serve-drivers/builtin.jsonl"
    (level,) = read_records(path)[:1]
    assert level["energy_meter"] == "none" and level.get("energy_j") is None
    assert "a serving level is timed at the client; the server's meters are not read" in level["telemetry_not_metered"]
    fresh = {k: v for k, v in level.items() if k not in ("energy_meter", "telemetry_not_metered", "source_file")}
    writer = RecordWriter(tmp_path / "w.jsonl")
    writer.write(fresh)
    assert json.loads((tmp_path / "w.jsonl").read_text())["energy_meter"] == "none"  # as written, too
    assert "energy_meter" not in fresh  # the caller's record is left as it was
