"""The documentation and the code's form: a short README, a site that builds strictly, an evidence
page that lists every kept measurement, and ruff's check and format clean."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_short_and_points_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    for page in ("getting-started", "options", "statistics", "claims", "backends", "records", "evidence"):
        assert f"(docs/{page}.md)" in readme and (ROOT / "docs" / f"{page}.md").exists()


@pytest.mark.skipif(
    shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
    reason="mkdocs-material is not installed (the test extra installs it)",
)
def test_the_docs_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    res = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "statistics" / "index.html").exists()


def test_the_evidence_page_is_the_measurements_index_and_lists_every_run():
    index = (ROOT / "results" / "measurements" / "README.md").read_text()
    page = (ROOT / "docs" / "evidence.md").read_text()
    table = index[index.index("| file |") :]
    assert page.endswith(table)
    for entry in (ROOT / "results" / "measurements").iterdir():
        if entry.name != "README.md":
            assert f"`{entry.name}{'/' if entry.is_dir() else ''}`" in table, entry.name


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (the test extra installs it)")
    res = subprocess.run([ruff, *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]


def test_importing_chipbench_and_its_plugin_changes_nothing_in_the_environment():
    code = "import os, json; before = dict(os.environ); import bench, bench.plugin, bench.cli; print(dict(os.environ) == before)"
    env = {k: v for k, v in __import__("os").environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert res.stdout.strip() == "True", res.stderr


def test_the_import_graph_runs_one_way():
    """import-linter's contracts in pyproject.toml: the rooms' layers (with the known debts listed
    there, so that no new upward import lands) and no cycle between the modules of a room."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed (the test extra installs it)")
    res = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]


def test_the_options_page_is_made_from_the_one_declaration_both_entry_points_use():
    import argparse

    from bench.cli import parser
    from bench.measuring.suite_options import PYTEST_ONLY, SUITE_OPTIONS, options_markdown

    assert options_markdown("--bench-", PYTEST_ONLY) in (ROOT / "docs" / "options.md").read_text()
    run = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    cli = {s for a in run._actions for s in a.option_strings} - {"-h", "--help"}
    assert cli == {f"--{o.name}" for o in SUITE_OPTIONS}
