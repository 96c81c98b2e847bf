"""Backend discovery: built-ins, and out-of-tree adapters through a really installed entry point."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from chipbench.backends.registry import discover, get_backend
from chipbench.errors import UsageError
from chipbench.judging.trial import run_case
from chipbench.measuring.runner import Case
from chipbench.measuring.workload import parse_workload

ROOT = Path(__file__).resolve().parent.parent


def test_cpu_is_always_available():
    assert discover()["cpu"].available


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_device_is_unavailable_with_its_reason():
    entry = discover()["cuda"]
    assert not entry.available and ("no CUDA" in entry.probe.reason or "sees no CUDA device" in entry.probe.reason)


def test_an_unknown_backend_names_the_known_ones():
    with pytest.raises(UsageError, match="unknown backend 'tpu9'; known backends: cpu, cuda, accelerator"):
        get_backend("tpu9")


def test_an_unavailable_backend_says_why():
    entries = discover()
    down = [n for n, e in entries.items() if not e.available]
    if not down:
        pytest.skip("every built-in backend is available here")
    with pytest.raises(UsageError, match=f"backend '{down[0]}' is unavailable: "):
        get_backend(down[0], entries)


PLUGIN = '''
from chipbench.backends.cpu import create as _cpu

class VendorBackend:
    """What a vendor ships: its own adapter, registered as an entry point."""
    def __init__(self):
        self._cpu = _cpu()
        self.name = "vendorx"
    def __getattr__(self, attr):
        return getattr(self._cpu, attr)
    def probe(self):
        return self._cpu.probe()
    def info(self):
        from dataclasses import replace
        return replace(self._cpu.info(), backend="vendorx", kind="vendorx", device_name="VendorX NPU-1")
    def load(self, *a, **k):
        return self._cpu.load(*a, **k)
    def generate(self, *a, **k):
        return self._cpu.generate(*a, **k)
    def close(self, h):
        return self._cpu.close(h)
'''


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    """Installs a tiny distribution with three chipbench.backends entry points into a site dir."""
    (tmp_path / "chipbench_vendorx.py").write_text(PLUGIN)
    info = tmp_path / "chipbench_vendorx-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chipbench-vendorx\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""
        [chipbench.backends]
        vendorx = chipbench_vendorx:VendorBackend
        broken = chipbench_vendorx_missing:create
        cpu = chipbench_vendorx:VendorBackend
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_an_installed_entry_point_backend_is_found_and_runs(installed_plugins):
    entries = discover()
    assert entries["vendorx"].available and entries["vendorx"].source == "chipbench-vendorx"
    rec = run_case(entries["vendorx"].backend, Case("vendorx", "tiny-qwen3", "fp32", parse_workload("tg4"), rounds=1))
    assert rec["status"] == "ok" and rec["device_name"] == "VendorX NPU-1" and rec["backend_kind"] == "vendorx"


def test_a_plugins_trials_run_in_workers_and_name_its_distribution(installed_plugins):
    from chipbench.judging.trial import TrialJudge
    from chipbench.measuring.trials import run_trials

    entries = discover()
    recs = run_trials(
        entries["vendorx"].backend,
        Case("vendorx", "tiny-qwen3", "fp32", parse_workload("tg4"), rounds=1),
        2,
        entries=entries,
        judge=TrialJudge(check=False),
    )
    assert [r["status"] for r in recs] == ["ok", "ok"], recs[0].get("error")
    assert {(r["backend_dist"], r["backend_dist_version"], r["trial_process"]) for r in recs} == {
        ("chipbench-vendorx", "1.0", "worker")
    }


def test_a_broken_plugin_is_listed_with_its_reason(installed_plugins):
    entry = discover()["broken"]
    assert not entry.available and "plugin failed to load: ModuleNotFoundError" in entry.probe.reason


def test_a_plugin_cannot_shadow_a_builtin(installed_plugins):
    entries = discover()
    assert entries["cpu"].source == "builtin"
    assert "taken by another adapter" in entries["cpu@chipbench-vendorx"].probe.reason


def test_chipbench_list_shows_plugins(installed_plugins):
    env = {"PYTHONPATH": f"{installed_plugins}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "chipbench.cli", "list", "backends"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "vendorx" in out.stdout and "plugin failed to load" in out.stdout
    assert out.stdout.splitlines()[0].split() == ["backend", "source", "version", "status"]  # no blank line before it


def test_the_contract_page_is_made_from_the_one_declaration():
    from chipbench.backends.base import contract_markdown

    assert contract_markdown() in (Path(__file__).resolve().parents[1] / "docs" / "backends.md").read_text()


def test_the_harness_reads_optional_capabilities_only_through_the_declared_contract():
    """No module of the harness probes a backend or its handle with getattr / hasattr of its own:
    it asks chipbench.backends.base.capability() for a name declared in OPTIONAL, with its default."""
    import ast

    from chipbench.backends.base import OPTIONAL

    declared = {c.name for c in OPTIONAL}
    root = Path(__file__).resolve().parents[1] / "bench"
    probed, undeclared = [], []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 2):
                continue
            target, name = ast.unparse(node.args[0]), node.args[1]
            if node.func.id in ("getattr", "hasattr") and target.split(".")[-1] in ("backend", "handle", "b"):
                probed.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
            if node.func.id == "capability" and isinstance(name, ast.Constant) and name.value not in declared:
                undeclared.append(f"{path.name}:{node.lineno} {name.value}")
    assert not probed and not undeclared, (probed, undeclared)


def test_a_dtype_chipbench_cannot_count_or_gate_is_not_run_whatever_a_backend_offers():
    """A plugin may offer any name; chipbench runs only dtypes it has byte counts and a gate
    tolerance for (RUN_DTYPES): nf4 is planned as a skip with what the backend runs, and refused
    when asked for by name."""
    from chipbench.backends.base import Probe
    from chipbench.backends.cpu import create
    from chipbench.backends.registry import Entry
    from chipbench.measuring.suite import SuiteOptions, plan

    class Offers:
        name = "vendorx"

        def __init__(self):
            self._cpu = create()

        def __getattr__(self, attr):
            return getattr(self._cpu, attr)

        def supported_dtypes(self):
            return ("fp32", "nf4")

        def default_dtypes(self):
            return ("fp32", "nf4"), "what the vendor recommends"

    entries = {"vendorx": Entry("vendorx", "chipbench-vendorx", Offers(), Probe.ok())}
    planned = plan(SuiteOptions(models=("tiny-qwen3",), workloads=("tg4",)), entries)  # every available backend
    assert [p.case.dtype for p in planned if p.case] == ["fp32"]
    assert [p.skip_reason for p in planned if not p.case] == ["cannot run dtype 'nf4' (it runs: fp32)"]
    with pytest.raises(UsageError, match="backend 'vendorx' cannot run dtype 'nf4'; it runs: fp32"):
        plan(SuiteOptions(backends=("vendorx",), models=("tiny-qwen3",), workloads=("tg4",)), entries)
    with pytest.raises(UsageError, match="unknown dtype 'nf4'; valid dtypes: fp32, bf16, fp16, q8_0"):
        plan(SuiteOptions(backends=("vendorx",), dtypes=("nf4",), models=("tiny-qwen3",)), entries)
