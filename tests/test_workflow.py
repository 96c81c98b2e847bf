"""The cross-runner GitHub Actions workflow: linted with actionlint, and its merge job's step run
here, as written in the file, on records made by real runs under two runner labels."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "chipbench.yml"


def test_the_workflow_passes_actionlint():
    exe = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(exe).exists():
        pytest.skip("actionlint is not installed (the test extra installs it on x86-64 Linux)")
    r = subprocess.run([exe, str(WORKFLOW)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _step(job: str, name: str) -> str:
    wf = yaml.safe_load(WORKFLOW.read_text())
    return next(s["run"] for s in wf["jobs"][job]["steps"] if s.get("name") == name)


def test_the_matrix_holds_the_hosted_runner_and_only_the_listed_self_hosted_ones(tmp_path):
    script = yaml.safe_load(WORKFLOW.read_text())["jobs"]["plan"]["steps"][0]["run"]
    out = tmp_path / "out"
    env = {
        **os.environ,
        "GITHUB_OUTPUT": str(out),
        "SELF_HOSTED": json.dumps([{"label": "h100", "extras": "nvidia", "bench_args": "--bench-backend=cuda"}]),
    }
    subprocess.run(["bash", "-c", script], env=env, check=True)
    runners = json.loads(out.read_text().split("=", 1)[1])
    assert [r["label"] for r in runners] == ["cpu-hosted", "h100"]
    assert runners[1]["runs_on"] == ["self-hosted", "h100"] and runners[1]["extras"] == "nvidia"
    out.unlink()
    subprocess.run(["bash", "-c", script], env={**env, "SELF_HOSTED": "[]"}, check=True)
    assert [r["label"] for r in json.loads(out.read_text().split("=", 1)[1])] == ["cpu-hosted"]


def test_the_merge_job_runs_here_on_two_runners_records(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    records = tmp_path / "runner-records"
    for label in ("runner-a", "runner-b"):  # each runner's artifact: its own JSON-lines file
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "chipbench.cli",
                "run",
                "--backend",
                "cpu",
                "--model",
                "tiny-qwen3",
                "--dtype",
                "fp32",
                "--workload",
                "tg4",
                "--rounds",
                "2",
                "--no-check",
                "--out",
                str(records / f"{label}.jsonl"),
            ],
            env={**env, "CHIPBENCH_RUNNER": label},
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    (tmp_path / "results").symlink_to(ROOT / "results")  # the step reads results/baselines from the checkout
    r = subprocess.run(
        ["bash", "-e", "-c", _step("merge", "merge, table, comparison, gate")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    merged = [json.loads(line) for line in (tmp_path / "published" / "all-runners.jsonl").read_text().splitlines()]
    assert sorted(m["env_runner"] for m in merged) == ["runner-a", "runner-b"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| tiny-qwen3 | fp32 | tg4 |" in summary and "2×2" in summary  # one row: both runners' trials pooled
    assert "No baseline matches" in summary  # the shipped baselines are qwen3-0.6b: nothing to gate, exit 0
    assert (tmp_path / "published" / "report.html").read_text().startswith("<!doctype html>")
