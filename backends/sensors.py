"""A device's sensors, read by the adapters that name them (`telemetry_sources()`): the host CPU's
clock (psutil), the RAPL energy counters (powercap) and NVIDIA's NVML (nvidia-ml-py, optional).
Each is a `Source`: opened once (None, or why it cannot be read, never raising), read on demand.
The sampler that reads them in the background while a case is timed is measuring's
(bench/measuring/telemetry.py); the sensors sit here, below it, with the adapters that use them.
A served endpoint's processes on this host are found here too (server_pids)."""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path
from typing import Protocol

import psutil


class Source(Protocol):
    name: str
    quantities: tuple[str, ...]

    def open(self) -> str | None:
        """None when readable; else why not (never raises)."""

    def read(self) -> dict:
        """The current values of its quantities (energy_j, the device's, and host_energy_j, the
        host's: cumulative counters in J; throttle: a text naming the active reasons, empty when none)."""

    def close(self) -> None: ...

    # Optional, for an energy quantity (read with getattr; a plugin's source may leave them out):
    #   meters: {quantity: (meter, domain)}, set by open(): what counts the joules ("nvml-energy-counter",
    #     "nvml-power-integration", "rapl", "amdsmi-energy-counter", or a plugin's own name) and what
    #     it covers ("device", "cpu-package", "cpu-package+dram", "platform (psys)")
    #   power_limit_w: {quantity: W or None}: the most the domain may draw, for the validity check
    #   counter_period_s: {quantity: s}: a counter the source makes itself (power integrated over its
    #     reads) moves on every read, so its resolution is given rather than timed


def meter_of(source, quantity: str) -> tuple[str, str]:
    return getattr(source, "meters", {}).get(quantity) or (getattr(source, "name", "unknown"), "unknown")


class CpuClock:
    """The host CPU's current clock, averaged over its cores (psutil)."""

    name, quantities = "psutil cpu_freq", ("clock_mhz",)

    def open(self) -> str | None:
        try:
            f = psutil.cpu_freq()
        except Exception as e:
            return f"cpu_freq unreadable: {e}"
        return None if f and f.current else "the kernel exposes no CPU frequency"

    def read(self) -> dict:
        return {"clock_mhz": float(psutil.cpu_freq().current)}

    def close(self) -> None:
        pass


# RAPL zones by the name the kernel gives them (package-N, dram, psys; core and uncore are parts of
# the package and never counted beside it)
RAPL_KINDS = {"package": "cpu-package", "dram": "dram", "psys": "platform (psys)"}
# an implied power above this is not a reading (a counter misread or wrapped twice) where the zone
# states no limit: W per zone
RAPL_BOUND_W = {"package": 1000.0, "dram": 300.0, "psys": 3000.0}


class Rapl:
    """Energy from the RAPL counters the kernel exposes under powercap: each CPU package (socket), its
    DRAM subzone, the platform's psys. `prefer` lists the zone sets to use, the first that exists:
    the CPU as a device counts its packages and, where exposed, their DRAM; a host beside an
    accelerator counts psys where it exists (the platform: SoC and what it powers), else the same."""

    name = "rapl"
    ROOT = Path("/sys/class/powercap")
    DEVICE = (("package", "dram"), ("package",))
    HOST = (("psys",), ("package", "dram"), ("package",))  # beside an accelerator
    PSYS = (("psys",),)  # beside the CPU as the device: the platform, where it has a counter of its own

    def __init__(self, quantity: str = "energy_j", prefer: tuple[tuple[str, ...], ...] = DEVICE):
        self.quantity, self.prefer = quantity, prefer
        self.quantities = (quantity,)
        self.name = "rapl" if quantity == "energy_j" else "rapl (host)"
        self.zones: list[tuple[Path, float]] = []  # (energy_uj file, wrap range in J)
        self.last: list[float] = []
        self.total = 0.0
        self.meters: dict[str, tuple[str, str]] = {}
        self.power_limit_w: dict[str, float | None] = {}

    def _found(self) -> dict[str, list[Path]]:
        """Every readable zone directory by kind (package, dram, psys)."""
        found: dict[str, list[Path]] = {}
        for zone in sorted(self.ROOT.glob("intel-rapl:*")):
            try:
                label = (zone / "name").read_text().strip()
            except OSError:  # an old kernel without names: a top-level zone is a package
                label = "package" if zone.name.count(":") == 1 else ""
            kind = label.split("-")[0]
            if kind in RAPL_KINDS:
                found.setdefault(kind, []).append(zone)
        return found

    def open(self) -> str | None:
        if not self.ROOT.exists():
            return "no powercap interface (RAPL) on this host"
        found = self._found()
        kinds = next((k for k in self.prefer if k[0] in found), None)
        if kinds is None:
            return f"no RAPL {' or '.join(k[0] for k in self.prefer)} zone under powercap"
        kinds = tuple(k for k in kinds if k in found)
        limit = 0.0
        for kind in kinds:
            for zone in found[kind]:
                try:
                    rng = float((zone / "max_energy_range_uj").read_text()) / 1e6
                    float((zone / "energy_uj").read_text())
                except (OSError, ValueError) as e:
                    return f"RAPL energy counters are not readable ({e.__class__.__name__}; often root-only)"
                self.zones.append((zone / "energy_uj", rng))
                limit += _zone_limit_w(zone) or RAPL_BOUND_W[kind]
        self.last = [self._raw(p) for p, _ in self.zones]
        domain = "+".join(RAPL_KINDS[k] for k in kinds)
        self.meters = {self.quantity: ("rapl", domain)}
        self.power_limit_w = {self.quantity: limit}
        return None

    @staticmethod
    def _raw(path: Path) -> float:
        return float(path.read_text()) / 1e6

    def read(self) -> dict:
        for i, (path, rng) in enumerate(self.zones):
            now = self._raw(path)
            step = now - self.last[i]
            self.total += step if step >= 0 else step + rng  # the counter wrapped
            self.last[i] = now
        return {self.quantity: self.total}

    def close(self) -> None:
        pass


def _zone_limit_w(zone: Path) -> float | None:
    """The highest power a RAPL zone states for itself (its constraints' max_power or power_limit),
    in W; None where it states none."""
    values = []
    for f in list(zone.glob("constraint_*_max_power_uw")) + list(zone.glob("constraint_*_power_limit_uw")):
        try:
            values.append(float(f.read_text()) / 1e6)
        except (OSError, ValueError):
            continue
    values = [v for v in values if v > 0]
    return max(values) if values else None


# NVML clock-event (throttle) reasons that mean the device ran slower than it could
_NVML_THROTTLES = {
    0x4: "sw power cap",
    0x8: "hw slowdown",
    0x20: "sw thermal",
    0x40: "hw thermal",
    0x80: "hw power brake",
}


def nvml_handle(nvml, index: int, uuid: str | None):
    """NVML's handle of the GPU torch calls cuda:<index>. NVML numbers every GPU of the machine in
    PCI order; torch numbers the ones it sees (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER), so on a
    shared multi-GPU host the same index can name another card, whose clocks, power and energy
    would be recorded as this run's. The card is found by its UUID (torch prints it bare, NVML as
    GPU-... or MIG-...); the index is trusted only where it cannot be wrong: NVML sees one GPU.
    LookupError, saying why, when no card matches."""
    if uuid:
        for name in (f"GPU-{uuid}", f"MIG-{uuid}", uuid):
            for arg in (name, name.encode()):  # nvidia-ml-py releases differ: str or bytes
                try:
                    return nvml.nvmlDeviceGetHandleByUUID(arg)
                except Exception:
                    continue
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception as e:
        raise LookupError(f"NVML cannot count its GPUs: {e}") from None
    if count == 1 and index == 0:
        try:
            return nvml.nvmlDeviceGetHandleByIndex(0)
        except Exception as e:
            raise LookupError(f"NVML cannot open its one GPU: {e}") from None
    raise LookupError(
        f"no NVML device matches torch's cuda:{index} (UUID {uuid or 'unknown'}) among NVML's "
        f"{count} GPU(s): not metered rather than read from another card"
    )


# NVML's power reading is itself an average (over about a second on recent boards), so energy
# integrated from it resolves no finer than this
NVML_POWER_AVERAGE_S = 1.0


class Nvml:
    """An NVIDIA GPU through NVML (nvidia-ml-py): SM and memory clocks, power, temperature, the
    energy counter and the throttle reasons. A board without the total-energy counter (before Volta)
    has its power integrated over the reads instead, and the record says which."""

    name = "nvml"
    quantities = ("clock_mhz", "mem_clock_mhz", "power_w", "temp_c", "energy_j", "throttle")

    def __init__(self, index: int, uuid: str | None = None, clock=None):
        self.index, self.uuid = index, uuid  # torch's cuda:<index> and its UUID (see nvml_handle)
        self.nvml = self.handle = None
        self.missing: set[str] = set()
        self.meters: dict[str, tuple[str, str]] = {}
        self.power_limit_w: dict[str, float | None] = {}
        self.counter_period_s: dict[str, float] = {}
        self.integrate = False  # no energy counter: power integrated over the reads
        self.clock = clock or time.perf_counter
        self.integrated, self.last_power = 0.0, None

    def open(self) -> str | None:
        try:
            import pynvml
        except ImportError:
            return "nvidia-ml-py is not installed (pip install 'chipbench[nvidia]')"
        try:
            pynvml.nvmlInit()
        except Exception as e:
            return f"NVML unavailable: {e}"
        try:
            self.nvml, self.handle = pynvml, nvml_handle(pynvml, self.index, self.uuid)
        except Exception as e:  # LookupError says which card could not be found
            pynvml.nvmlShutdown()
            return str(e) if isinstance(e, LookupError) else f"NVML unavailable: {e}"
        n, h = self.nvml, self.handle
        try:
            n.nvmlDeviceGetTotalEnergyConsumption(h)
            self.meters["energy_j"] = ("nvml-energy-counter", "device")
        except Exception:
            try:
                n.nvmlDeviceGetPowerUsage(h)
                self.integrate = True
                self.meters["energy_j"] = ("nvml-power-integration", "device")
                self.counter_period_s["energy_j"] = NVML_POWER_AVERAGE_S
            except Exception:
                self.missing.add("energy_j")
        try:
            self.power_limit_w["energy_j"] = n.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3
        except Exception:
            self.power_limit_w["energy_j"] = None
        return None

    def _energy(self, power: float | None) -> float | None:
        """The energy counter, or in its place the power integrated over the reads (trapezoids)."""
        if not self.integrate:
            return self._get("energy_j", lambda: self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3)
        if power is None:
            return None
        now = self.clock()
        if self.last_power is not None:
            t, p = self.last_power
            self.integrated += (now - t) * (p + power) / 2
        self.last_power = (now, power)
        return self.integrated

    def _get(self, quantity: str, fn):
        if quantity in self.missing:
            return None
        try:
            return fn()
        except Exception:  # not supported on this device or driver: not metered, from now on
            self.missing.add(quantity)
            return None

    def read(self) -> dict:
        n, h = self.nvml, self.handle
        reasons = (
            getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or n.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        mask = self._get("throttle", lambda: reasons(h))
        power = self._get("power_w", lambda: n.nvmlDeviceGetPowerUsage(h) / 1e3)
        energy = None if "energy_j" in self.missing else self._energy(power)
        return {
            "clock_mhz": self._get("clock_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
            "mem_clock_mhz": self._get("mem_clock_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)),
            "power_w": power,
            "temp_c": self._get("temp_c", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
            "energy_j": energy,
            "throttle": None if mask is None else ", ".join(v for k, v in _NVML_THROTTLES.items() if mask & k),
        }

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass


class AmdSmi:
    """An AMD GPU (ROCm) through AMD SMI's Python bindings (`amdsmi`, shipped with ROCm): power,
    temperature and the energy accumulator. The card is the one whose PCI address torch reports
    for the device; by index only where AMD SMI sees one GPU, as with NVML."""

    name = "amdsmi"
    quantities = ("power_w", "temp_c", "energy_j")

    def __init__(self, index: int, bdf: str | None = None):
        # bdf: torch's PCI address of the device, domain:bus:device ("0000:03:00")
        self.index, self.bdf = index, (bdf or "").lower() or None
        self.smi = self.handle = None
        self.missing: set[str] = set()
        self.meters: dict[str, tuple[str, str]] = {}
        self.power_limit_w: dict[str, float | None] = {}

    def open(self) -> str | None:
        try:
            import amdsmi
        except ImportError:
            return "amdsmi is not installed (it ships with ROCm: pip install /opt/rocm/share/amd_smi)"
        try:
            amdsmi.amdsmi_init()
            handles = list(amdsmi.amdsmi_get_processor_handles())
        except Exception as e:
            return f"AMD SMI unavailable: {e}"
        self.smi = amdsmi
        if self.bdf:
            for h in handles:
                try:
                    if str(amdsmi.amdsmi_get_gpu_device_bdf(h)).lower().startswith(self.bdf):
                        self.handle = h
                        break
                except Exception:
                    continue
        if self.handle is None and len(handles) == 1 and self.index == 0:
            self.handle = handles[0]
        if self.handle is None:
            self.close()
            self.smi = None
            return (
                f"no AMD SMI device matches torch's device {self.index} (PCI {self.bdf or 'unknown'}) among "
                f"{len(handles)} GPU(s): not metered rather than read from another card"
            )
        if self._energy() is None:
            self.missing.add("energy_j")  # a VM guest: AMD SMI does not count energy there
        else:
            self.meters["energy_j"] = ("amdsmi-energy-counter", "device")
        try:
            cap = amdsmi.amdsmi_get_power_cap_info(self.handle).get("power_cap")
            self.power_limit_w["energy_j"] = float(cap) / 1e6 if cap else None  # reported in µW
        except Exception:
            self.power_limit_w["energy_j"] = None
        return None

    def _energy(self) -> float | None:
        try:
            e = self.smi.amdsmi_get_energy_count(self.handle)
            count = e.get("energy_accumulator", e.get("power"))  # its key before ROCm 6.1: "power"
            return float(count) * float(e["counter_resolution"]) / 1e6  # µJ per count
        except Exception:
            return None

    def read(self) -> dict:
        out: dict = {"energy_j": None if "energy_j" in self.missing else self._energy()}
        try:
            info = self.smi.amdsmi_get_power_info(self.handle)
            power = info.get("current_socket_power") or info.get("average_socket_power")
            out["power_w"] = float(power) if power not in (None, "N/A") else None
        except Exception:
            out["power_w"] = None
        try:
            out["temp_c"] = float(
                self.smi.amdsmi_get_temp_metric(
                    self.handle, self.smi.AmdSmiTemperatureType.EDGE, self.smi.AmdSmiTemperatureMetric.CURRENT
                )
            )
        except Exception:
            out["temp_c"] = None
        return out

    def close(self) -> None:
        if self.smi is not None:
            try:
                self.smi.amdsmi_shut_down()
            except Exception:
                pass


def is_this_host(host: str) -> bool:
    """Whether a URL's host name or address is this machine (loopback, one of its interfaces, or the
    unspecified address 0.0.0.0, which Linux connects to this machine)."""

    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    local = {a.address.split("%")[0] for nic in psutil.net_if_addrs().values() for a in nic}
    ips = [ipaddress.ip_address(a.split("%")[0]) for a in addrs]
    return any(ip.is_loopback or ip.is_unspecified or str(ip) in local for ip in ips)


def server_pids(host: str, port: int) -> list[int] | None:
    """The processes listening on `port` when `host` is this machine: a server whose CPU time is the
    case's own work. [] for a server elsewhere; None for one here whose process cannot be seen
    (another user's, say), so that its work is not read as a neighbour's load."""

    if not is_this_host(host):
        return []
    try:
        conns = psutil.net_connections(kind="tcp")
    except Exception:  # psutil.AccessDenied on some systems
        return None
    pids = sorted(
        {
            c.pid
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid is not None
        }
    )
    return pids or None
