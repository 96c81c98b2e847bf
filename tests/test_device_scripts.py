"""The scripts a lent GPU runs (.ci/device-check.sh, .ci/decode_profile.py) work before a lease.

A lease is a few minutes of device time: a script that fails to parse, a profile that stops on a
renamed function, or a summary that reads a field the records no longer have would spend it on
nothing. CI has no GPU, so these run the scripts' CPU paths and check what they read.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from chipbench.publishing.schema import FIELDS, metric_field_types

CI = Path(__file__).resolve().parents[1] / ".ci"


@pytest.mark.parametrize("script", sorted(p.name for p in CI.glob("*.sh")))
def test_the_ci_shell_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(CI / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_lease_summary_reads_only_fields_the_records_have():
    text = (CI / "device-check.sh").read_text()
    read = set(re.findall(r"r(?:\.get\(|\[)'([a-z0-9_]+)'", text))
    assert {"exec_path", "measured_mbu", "host_bound"} <= read  # the pattern still finds the summary's reads
    known = set(FIELDS) | set(metric_field_types())
    assert read - known == set(), "device-check.sh reads fields the record schema does not have"


def test_the_decode_profile_runs_on_the_cpu_without_compiling_a_prefill_it_does_not_use():
    done = subprocess.run(
        [
            sys.executable,
            str(CI / "decode_profile.py"),
            "--model",
            "tiny-qwen3",
            "--steps",
            "4",
            "--rounds",
            "2",
            "--top",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "'compiled_graphs': 1" in out and "'graph_breaks': 0" in out
    # a one-token prompt is the decode step at position 0, as in a tg case: no prefill compile to wait for
    assert "'prefill_path': 'eager'" in out and "'prefill_compile_time_s': None" in out
    steps = dict(re.findall(r"step ([0-9.]+) ms, (guards skipped|guards checked)", out))
    assert set(steps.values()) == {"guards skipped", "guards checked"} and all(float(ms) > 0 for ms in steps)
    assert re.search(r"us/step .*aten::mm", out)  # the CPU profile lists the ops
