"""The documentation and the code's form: a short README, a site that builds strictly, an evidence
page that lists every kept measurement, and ruff's check and format clean."""

import os
import shutil
import subprocess
import sys
import zipfile
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
    code = "import os, json; before = dict(os.environ); import chipbench, chipbench.plugin, chipbench.cli; print(dict(os.environ) == before)"
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert res.stdout.strip() == "True", res.stderr


@pytest.fixture(scope="module")
def wheel_tree(tmp_path_factory):
    """The distribution as pip installs it: a wheel built from this checkout's sources, unpacked."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("bench", "models", "backends"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(src)]
    res = subprocess.run(build, capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and "No module named setuptools" in res.stderr:
        pytest.skip("setuptools is not installed here, so no wheel can be built without the network")
    assert res.returncode == 0, res.stderr[-2000:]
    [wheel] = tmp.glob("chipbench-*.whl")
    site = tmp / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


def test_the_distribution_installs_one_package_chipbench_and_nothing_else(wheel_tree):
    """No generic `bench`, `models` or `backends` in site-packages: the folders are chipbench's."""
    top = {p.name for p in wheel_tree.iterdir()}
    assert top == {"chipbench", "chipbench-0.1.0.dist-info"}
    for module in ("cli.py", "stats.py", "measuring/runner.py", "models/zoo.py", "backends/base.py"):
        assert (wheel_tree / "chipbench" / module).is_file(), module
    entry = (wheel_tree / "chipbench-0.1.0.dist-info" / "entry_points.txt").read_text()
    assert "chipbench = chipbench.cli:main" in entry and "chipbench = chipbench.plugin" in entry


def test_the_import_graph_runs_one_way(wheel_tree):
    """import-linter's contracts in pyproject.toml: the rooms' layers (with the known debts listed
    there, so that no new upward import lands) and no cycle between the modules of a room, on the
    package as installed (grimp reads a package from its folder, and chipbench.models and
    chipbench.backends live outside bench/ in the checkout)."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed (the test extra installs it)")
    env = dict(os.environ, PYTHONPATH=str(wheel_tree))
    res = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]
    assert "Contracts: 2 kept, 0 broken" in res.stdout


def test_the_options_page_is_made_from_the_one_declaration_both_entry_points_use():
    import argparse

    from chipbench.cli import parser
    from chipbench.measuring.suite_options import PYTEST_ONLY, SUITE_OPTIONS, options_markdown

    assert options_markdown("--bench-", PYTEST_ONLY) in (ROOT / "docs" / "options.md").read_text()
    run = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    cli = {s for a in run._actions for s in a.option_strings} - {"-h", "--help"}
    assert cli == {f"--{o.name}" for o in SUITE_OPTIONS} | {"-q", "--quiet"}  # run's own: pytest has -q
