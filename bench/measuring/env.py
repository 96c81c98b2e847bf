"""The environment and provenance every record carries: enough to know where a number came from."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import signal
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import psutil

import chipbench
from chipbench.backends.base import DeviceInfo

_ROOT = chipbench.PROJECT_ROOT


def git_commit() -> str | None:
    """The harness's own commit (with '+dirty' for local changes), or None outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def host_facts() -> dict:
    import torch
    import transformers

    from chipbench.backends.cpu import cpu_model

    return {
        "env_hostname": socket.gethostname(),
        "env_os": platform.platform(),
        "env_python": platform.python_version(),
        "env_torch": torch.__version__,
        "env_transformers": transformers.__version__,
        "env_cpu_model": cpu_model(),
        "env_cpu_cores": psutil.cpu_count(logical=False),
        "env_cpu_threads": os.cpu_count(),
        "env_torch_threads": torch.get_num_threads(),
        "env_world_size": int(os.environ.get("WORLD_SIZE", "1") or 1),
        "env_runner": os.environ.get("CHIPBENCH_RUNNER") or None,
        "env_host_memory_bytes": psutil.virtual_memory().total,
    }


def device_facts(info: DeviceInfo) -> dict:
    out = {
        "backend_kind": info.kind,
        "device_name": info.device_name,
        "env_device_count": info.device_count,
        "env_device_memory_bytes": info.memory_bytes,
        "env_driver": info.driver,
        "env_runtime": info.runtime,
    }
    out.update({f"env_device_{k}": v for k, v in info.extra.items()})
    return out


def provenance(seed: int) -> dict:
    return {
        "harness_version": chipbench.__version__,
        "git_commit": git_commit(),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def release_host_memory() -> None:
    """Hand the reference models' freed memory back to the OS: on the CPU backend, peak memory
    is the process's resident set, which the allocator's retained pages would inflate."""

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim, or no way to


PARENT_ENV = "CHIPBENCH_PARENT_PID"  # set by a run for the processes it starts (a trial's worker)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """A process a run started (a trial's worker, another interpreter's self-test) ends when the
    run ends, however it ends, SIGKILL included: on Linux the kernel sends it SIGKILL when its
    parent dies (prctl's parent-death signal), and a parent that died before that was armed shows
    as another parent process, so it exits at once. Elsewhere the run's deadline on it bounds it
    (chipbench.measuring.trials). A process not started by a run ($CHIPBENCH_PARENT_PID unset)
    is left alone; the variable is not passed on."""
    parent = os.environ.pop(PARENT_ENV, None)
    if not parent or not parent.isdigit():
        return
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl in this libc: the deadline still holds
            pass
    if os.getppid() != int(parent):
        sys.exit(3)
