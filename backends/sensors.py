"""A device's sensors, read by the adapters that name them (`telemetry_sources()`): the host CPU's
clock (psutil), the RAPL energy counters (powercap) and NVIDIA's NVML (nvidia-ml-py, optional).
Each is a `Source`: opened once (None, or why it cannot be read, never raising), read on demand.
The sampler that reads them in the background while a case is timed is measuring's
(bench/measuring/telemetry.py); the sensors sit here, below it, with the adapters that use them.
A served endpoint's processes on this host are found here too (server_pids)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Protocol

import psutil


class Source(Protocol):
    name: str
    quantities: tuple[str, ...]

    def open(self) -> str | None:
        """None when readable; else why not (never raises)."""

    def read(self) -> dict:
        """The current values of its quantities (energy_j: a cumulative counter; throttle: a text
        naming the active reasons, empty when none)."""

    def close(self) -> None: ...


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


class Rapl:
    """CPU package energy from the RAPL counters the kernel exposes under powercap."""

    name, quantities = "rapl", ("energy_j",)
    ROOT = Path("/sys/class/powercap")

    def __init__(self):
        self.zones: list[tuple[Path, float]] = []  # (energy_uj file, wrap range in J)
        self.last: list[float] = []
        self.total = 0.0

    def open(self) -> str | None:
        if not self.ROOT.exists():
            return "no powercap interface (RAPL) on this host"
        for zone in sorted(self.ROOT.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:
                continue  # a subzone (core, dram): the package counts them already
            try:
                rng = float((zone / "max_energy_range_uj").read_text()) / 1e6
                float((zone / "energy_uj").read_text())
            except (OSError, ValueError) as e:
                return f"RAPL energy counters are not readable ({e.__class__.__name__}; often root-only)"
            self.zones.append((zone / "energy_uj", rng))
        if not self.zones:
            return "no RAPL package zone under powercap"
        self.last = [self._raw(p) for p, _ in self.zones]
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
        return {"energy_j": self.total}

    def close(self) -> None:
        pass


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


class Nvml:
    """An NVIDIA GPU through NVML (nvidia-ml-py): SM and memory clocks, power, temperature, the
    energy counter and the throttle reasons."""

    name = "nvml"
    quantities = ("clock_mhz", "mem_clock_mhz", "power_w", "temp_c", "energy_j", "throttle")

    def __init__(self, index: int, uuid: str | None = None):
        self.index, self.uuid = index, uuid  # torch's cuda:<index> and its UUID (see nvml_handle)
        self.nvml = self.handle = None
        self.missing: set[str] = set()

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
        return None

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
        energy = self._get("energy_j", lambda: n.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3)
        power = self._get("power_w", lambda: n.nvmlDeviceGetPowerUsage(h) / 1e3)
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
