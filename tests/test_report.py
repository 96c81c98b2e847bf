"""`chipbench report`, `compare` and `merge` on hand-made records whose answers are known."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chipbench.publishing import tables
from chipbench.errors import UsageError
from chipbench.publishing.html_page import to_html
from chipbench.publishing.record import RecordWriter
from tests.records import make_record, make_trials

ROOT = Path(__file__).resolve().parent.parent


def write(path, *records):
    w = RecordWriter(path)
    for r in records:
        w.write(r)
    return str(path)


def chipbench(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "chipbench.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


@pytest.fixture
def two_devices():
    return [
        make_record(device="Chip A", tpot_s=0.02),
        make_record(device="Chip B", tpot_s=0.01, seed=1),
        make_record(workload="pp512", device="Chip A", ttft_s=0.1),
        make_record(workload="pp512", device="Chip B", status="failed", error="OOM"),
    ]


def test_markdown_has_a_row_per_case_a_group_per_device_and_spreads(two_devices):
    md = tables.to_markdown(tables.build(two_devices, metrics=("headline", "ttft_s", "tpot_s")))
    lines = md.splitlines()
    assert (
        lines[0].startswith("| model | dtype | test | B | path | cuda: Chip A t/s |")
        and "cuda: Chip B TPOT ms" in lines[0]
    )
    tg = next(line for line in lines if "| tg32 |" in line)
    assert tg.count("±") == 6  # t/s, TTFT and TPOT on both chips
    cells = [c.strip() for c in tg.strip("|").split("|")]
    medians = [float(c.split(" ± ")[0]) for c in cells[5:]]
    # decode t/s = 1 / TPOT; TTFT and TPOT shown in ms
    assert medians == pytest.approx([50, 50, 20, 100, 50, 10], rel=0.03)
    pp = next(line for line in lines if "| pp512 |" in line)
    assert "FAILED" in pp
    assert "`tpot_s` (s, lower is better)" in md and "Environment:" in md and "driver 580" in md


def test_the_default_table_carries_the_roofline(two_devices):
    recs = [make_record(device="NVIDIA H100 80GB HBM3", tpot_s=0.031), make_record(model="future-model-9b")]
    md = tables.to_markdown(tables.build(recs))
    assert "MBU 16% spec" in md and "roofline: MBU" in md  # an unknown model just has no roofline
    tiny = tables.roofline_text({"kind": "decode", "measured_mbu": 0.0042, "spec_mbu": 0.0004})
    assert tiny == "MBU 0.4% measured / <0.1% spec"  # not "0%", which reads as nothing measured


def test_transpose_puts_devices_down(two_devices):
    header, body = tables.rows(tables.build(two_devices), transpose=True)
    assert [r[0] for r in body] == ["cuda: Chip A", "cuda: Chip B"] and header[1].startswith("qwen3-8b bf16 pp512")


def test_csv_and_json_carry_numbers(two_devices):
    t = tables.build(two_devices)
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(t))))
    tg = next(r for r in rows if r["workload"] == "tg32")
    assert float(tg["cuda: Chip B | headline | value"]) == pytest.approx(100, rel=0.05)
    data = json.loads(tables.to_json(t))
    pp = next(e for e in data if e["workload"] == "pp512")
    assert pp["results"]["cuda: Chip B"] == {"status": "failed"}
    assert pp["results"]["cuda: Chip A"]["prefill_tok_per_s"]["rounds"] == 5
    assert pp["results"]["cuda: Chip A"]["prefill_tok_per_s"]["trials"] == 1


def test_filters_and_metric_names_are_checked(two_devices):
    t = tables.build(two_devices, filters=tables.Filters(workloads=("tg32",)))
    assert [c[2] for c in t.cases] == ["tg32"]
    left = sum(1 for r in two_devices if r["workload"] != "tg32")  # the filter's: counted in the footer, not shown
    assert left and (t.account.inputs, t.account.filtered) == (len(two_devices), left)
    with pytest.raises(UsageError, match="no record matches"):
        tables.build(two_devices, filters=tables.Filters(models=("nope",)))
    with pytest.raises(UsageError, match="unknown metric 'speed'; valid metrics: headline"):
        tables.build(two_devices, metrics=("speed",))


def test_html_escapes_record_strings_and_embeds_three_charts():
    evil = '<script>alert("x")</script>'
    recs = [make_record(device=evil), make_record(device="Chip B", seed=2, model="m<b>")]
    page = to_html(tables.build(recs))
    assert "<script>" not in page and "&lt;script&gt;" in page and "m&lt;b&gt;" in page
    assert page.count("src='data:image/png;base64,") == 3 and "http" not in page.split("<body>")[1]


def test_compare_cli_gates_on_a_real_regression_only(tmp_path):
    base = write(tmp_path / "base.jsonl", *make_trials(3, tpot_s=0.010, drift=0.01, seed=1))
    slow = write(tmp_path / "slow.jsonl", *make_trials(3, tpot_s=0.012, drift=0.01, seed=2))  # 20% worse
    same = write(tmp_path / "same.jsonl", *make_trials(3, tpot_s=0.010, drift=0.01, seed=3))  # A/A
    res = chipbench("compare", slow, "--baseline", base, "--fail-below", "0.95")
    assert res.returncode == 1 and "| FAIL: significantly below 0.95" in res.stdout and "slower" in res.stdout
    ok = chipbench("compare", same, "--baseline", base, "--fail-below", "0.95")
    assert ok.returncode == 0, ok.stdout
    assert "| FAIL" not in ok.stdout and "run: 3 record(s): 3 used" in ok.stdout


def test_compare_cli_refuses_a_gate_across_devices(tmp_path):
    base = write(tmp_path / "base.jsonl", *make_trials(3, device="H100", seed=1))
    run = write(tmp_path / "run.jsonl", *make_trials(3, device="A100", seed=2))
    res = chipbench("compare", run, "--baseline", base, "--across", "devices", "--fail-below", "0.95")
    assert res.returncode == 2 and "a regression gate across different devices is refused" in res.stderr
    res = chipbench("compare", run, "--baseline", base, "--across", "devices")
    assert res.returncode == 0 and "| A100 | H100 |" in res.stdout


def test_compare_reports_unmatched_cases_and_a_baseline_matching_nothing(tmp_path):
    base = write(tmp_path / "b.jsonl", make_record(model="qwen3-8b"), make_record(model="qwen3-4b"))
    run = write(tmp_path / "r.jsonl", make_record(model="qwen3-8b"), make_record(model="qwen3-14b"))
    res = chipbench("compare", run, "--baseline", base, "--unmatched")
    assert (
        res.returncode == 0
        and "Unmatched (run): qwen3-14b" in res.stdout
        and "Unmatched (baseline): qwen3-4b" in res.stdout
    )
    other = write(tmp_path / "o.jsonl", make_record(model="qwen3-32b"))
    res = chipbench("compare", other, "--baseline", base)
    assert res.returncode == 2 and "the baseline matches none of the run's 1 case(s)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "html"])
def test_compare_writes_every_format(tmp_path, fmt):
    base = write(tmp_path / "b.jsonl", make_record(seed=1))
    run = write(tmp_path / "r.jsonl", make_record())
    res = chipbench("compare", run, "--baseline", base, "--format", fmt, "--out", str(tmp_path / f"c.{fmt}"))
    text = (tmp_path / f"c.{fmt}").read_text()
    assert res.returncode == 0 and "decode_tok_per_s" in text
    if fmt == "json":
        assert json.loads(text)["rows"][0]["verdict"]


def test_report_reads_bad_lines_by_option_and_names_them(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(make_record()) + "\n{bad\n")
    res = chipbench("report", str(path))
    assert res.returncode == 2 and "r.jsonl:2: not a JSON record" in res.stderr
    res = chipbench("report", str(path), "--on-error", "skip")
    assert res.returncode == 0 and "skipped" in res.stderr and "| tg32 |" in res.stdout


def test_github_step_summary_is_appended(tmp_path):
    path = write(tmp_path / "r.jsonl", make_record())
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    res = chipbench("report", path, "--format", "csv", "--github-summary", env=env)
    assert res.returncode == 0 and summary.read_text().startswith("earlier step\n| model |")
    env.pop("GITHUB_STEP_SUMMARY")
    res = chipbench("report", path, "--github-summary", env=env)
    assert res.returncode == 2 and "GITHUB_STEP_SUMMARY" in res.stderr


def test_merge_combines_runners_once_and_never_overwrites(tmp_path):
    a, b = make_record(device="Chip A"), make_record(device="Chip B")
    p1, p2 = write(tmp_path / "r1.jsonl", a), write(tmp_path / "r2.jsonl", b, a)  # a uploaded twice
    out = tmp_path / "merged.jsonl"
    res = chipbench("merge", p1, p2, "--out", str(out))
    assert res.returncode == 0 and len(out.read_text().splitlines()) == 2
    assert "cuda: Chip A" in res.stdout and "cuda: Chip B" in res.stdout
    again = chipbench("merge", p1, "--out", str(out))
    assert again.returncode == 2 and "never overwrites" in again.stderr


LAYOUT_PROBE = """<script>
window.addEventListener('load', () => {
  const vw = window.innerWidth;
  const tables = [...document.querySelectorAll('table')].map(t => {
    const box = t.parentElement, style = getComputedStyle(box);
    const verdicts = [...t.querySelectorAll('td.verdict')].map(c => c.getBoundingClientRect().right);
    return {table_width: t.scrollWidth, box_width: box.clientWidth, box_right: box.getBoundingClientRect().right,
            scrolls: ['auto', 'scroll'].includes(style.overflowX), verdict_rights: verdicts};
  });
  const images = [...document.images].map(i => i.getBoundingClientRect().right);
  const pre = document.createElement('pre');
  pre.id = 'layout';
  pre.textContent = JSON.stringify({viewport: vw, page_width: document.documentElement.scrollWidth, tables, images});
  document.body.appendChild(pre);
});
</script>"""

CHROMIUM = [
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _layout(tmp_path, page_html: str, width: int = 1280) -> dict:
    """What headless chromium laid out: the page's width against the window's, and each table's."""
    import re

    page = tmp_path / "probe.html"
    page.write_text(page_html.replace("</body>", LAYOUT_PROBE + "</body>"))
    res = subprocess.run(
        [
            *CHROMIUM,
            f"--user-data-dir={tmp_path / 'profile-probe'}",
            f"--window-size={width},1000",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"<pre id=\"layout\">(.*?)</pre>", res.stdout, re.S)
    assert found, res.stderr[-2000:]
    import html as _html

    return json.loads(_html.unescape(found.group(1)))


def _many_devices(n: int) -> list[dict]:
    return [
        make_record(
            device=f"Accelerator model {i} with a long marketing name",
            seed=i,
            correct=True,
            correctness_rel_err=0.005,
            correctness_tolerance=0.02,
            measured_mbu=0.4,
            spec_mbu=0.35,
            kind="decode",
        )
        for i in range(n)
    ]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_report_fits_the_page_or_scrolls_in_its_own_box(tmp_path):
    # eight devices with long names: the table grows down, not across, so every verdict cell is on the page
    page = _layout(tmp_path, to_html(tables.build(_many_devices(8))))
    assert page["page_width"] <= page["viewport"]
    [t] = page["tables"]
    assert len(t["verdict_rights"]) == 8 * 2  # a correctness and a roofline verdict per device
    assert max(t["verdict_rights"]) <= t["box_right"] <= page["viewport"]
    assert all(right <= page["viewport"] for right in page["images"])
    # every metric asked for: wider than the page, so it scrolls inside its own box; the page does not
    from chipbench.measuring.metrics import METRICS

    wide = _layout(
        tmp_path, to_html(tables.build(_many_devices(2), metrics=(*tables.DEFAULT_METRICS, *METRICS))), width=900
    )
    assert wide["page_width"] <= wide["viewport"]
    [t] = wide["tables"]
    assert t["table_width"] > t["box_width"] and t["scrolls"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_html_report_renders_in_a_headless_browser(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(to_html(tables.build([make_record(), make_record(device="Chip B", seed=1)])))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            *CHROMIUM,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 50_000  # a page with charts, not a blank one


def _tick_texts_and_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            out.append(
                (axis.axis_name, [t.get_text() for t in labels], [t.get_window_extent(renderer) for t in labels])
            )
    return out


def _assert_readable(fig):
    """Plain-number ticks (no 3×10¹), none overlapping its neighbour."""
    for name, texts, boxes in _tick_texts_and_boxes(fig):
        for text in texts:
            assert "10^" not in text and "times" not in text and "×10" not in text, texts
        for a, b in zip(boxes, boxes[1:]):
            assert not a.overlaps(b), (name, texts)


REAL_RUNS = [
    ROOT / "results/measurements/2026-12-02-cpu-engines/records.jsonl",
    ROOT / "results/measurements/2026-12-02-cpu-vllm-serve/records.jsonl",
    ROOT / "results/baselines/cpu-xeon-2core-ci.jsonl",
    ROOT / "results/measurements/2026-11-22-cpu-tiny-models.jsonl",
]


def test_charts_of_real_runs_have_readable_ticks_and_legends_off_the_data():
    from chipbench.publishing import html_page, serving_view
    from chipbench.publishing.record import read_records

    records = list(read_records(*REAL_RUNS))
    table = tables.build(records)
    for fig in (
        html_page.throughput_chart(table),
        html_page.distribution_chart(records),
        html_page.per_token_chart(records),
        serving_view.curve_chart(records),
    ):
        assert fig is not None
        _assert_readable(fig)
        renderer = fig.canvas.get_renderer()
        legends = [a.get_legend() for a in fig.axes if a.get_legend()] + list(fig.legends)
        for legend in legends:  # beside or below the plot, never over the data
            for ax in fig.axes:
                assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_throughput_bars_are_linear_from_zero_for_close_values():
    from chipbench.publishing import html_page

    recs = [make_record(tpot_s=1 / v, device=f"Chip {v}", seed=v) for v in (394, 401, 408)]
    fig = html_page.throughput_chart(tables.build(recs))
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    _assert_readable(fig)


@pytest.mark.parametrize("values", [(30, 45), (0.6, 130), (0.5, 3000), (12, 13)])
def test_latency_axes_are_plain_numbers_over_any_span(values):
    from chipbench.publishing import html_page

    recs = [make_record(tpot_s=v / 1e3, ttft_s=v / 1e3, device=f"Chip {i}", seed=i) for i, v in enumerate(values)]
    fig = html_page.distribution_chart(recs)
    _assert_readable(fig)
    scale = fig.axes[0].get_xscale()
    assert scale == ("log" if max(values) / min(values) >= 10 else "linear")


def test_markdown_escapes_html_from_records_in_every_table():
    from chipbench.judging.compare import compare_records
    from chipbench.publishing import serving_view
    from chipbench.publishing.report import render_comparison

    evil = '<img src=x onerror="alert(1)">'
    recs = [make_record(device=evil, model="qwen3-8b"), make_record(device="Chip B", seed=2, model="m<b>|x")]
    md = tables.to_markdown(tables.build(recs))
    assert "<img" not in md and "&lt;img" in md and "m&lt;b&gt;\\|x" in md
    cmp_md = render_comparison(compare_records(recs[:1], [make_record(device=evil, seed=5)]), "md", None, True)
    assert "<img" not in cmp_md and "&lt;img" in cmp_md
    clean = render_comparison(compare_records(recs[1:], [make_record(device="Chip B", seed=5)]), "md", 0.95, True)
    assert "&" not in clean.replace("m&lt;b&gt;", "")  # our own notes read plainly in a terminal: no entities
    serve = [
        make_record(
            kind="serve",
            workload="pp128+tg64",
            device=evil,
            serve_requests_ok=4,
            serve_requests_sent=4,
            serve_output_tok_per_s=10.0,
            tok_per_s_per_user=5.0,
        )
    ]
    serve_md = serving_view.to_markdown(serve)
    assert "<img" not in serve_md and "&lt;img" in serve_md


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_comparison_page_keeps_its_verdicts_on_the_page(tmp_path):
    from chipbench.judging.compare import compare_records
    from chipbench.publishing.report import render_comparison

    run = make_trials(3, tpot_s=0.021, device="Accelerator model 1 with a long marketing name", seed=1)
    base = make_trials(3, tpot_s=0.020, device="Accelerator model 1 with a long marketing name", seed=2)
    page = _layout(tmp_path, render_comparison(compare_records(run, base, threshold=0.95), "html", 0.95, True))
    assert page["page_width"] <= page["viewport"]
    [t] = page["tables"]
    assert t["verdict_rights"] and max(t["verdict_rights"]) <= t["box_right"] <= page["viewport"]


def test_the_summary_says_which_spread_its_plus_minus_is():
    """One trial has no between-trial spread: its ± is the rounds', and the caption says so."""
    from chipbench.publishing.report import summary_rows, summary_table

    one = [make_record(tpot_s=0.02, spread=0.05, rounds=9)]
    (row,) = summary_rows(one)
    assert float(row["t/s"].split(" ± ")[1]) > 0 and row["trials×rounds"] == "1×9"
    assert "± the stdev between trials (between the rounds of a single trial)" in summary_table(one)


def test_the_serving_footnote_names_every_slo_its_levels_were_judged_by():
    from chipbench.publishing import serving_view

    level = dict(kind="serve", serve_requests=4, serve_ok=4, goodput_fraction=1.0)
    strict = dict(make_record(workload="pp128+tg64", slo_ttft_s=0.5, slo_tpot_s=0.05, **level), workload="c1")
    loose = dict(make_record(workload="pp128+tg64", slo_ttft_s=2.0, slo_tpot_s=0.2, **level), workload="c2")
    one = serving_view.to_markdown([loose])
    assert "goodput counts requests with TTFT ≤ 2.0 s and TPOT ≤ 0.2 s (goodput % of every request" in one
    both = serving_view.to_markdown([strict, loose])
    assert "TTFT ≤ 0.5 s and TPOT ≤ 0.05 s or TTFT ≤ 2.0 s and TPOT ≤ 0.2 s (each level at its own SLO" in both


def test_a_levels_unsent_requests_are_not_called_sent():
    from chipbench.publishing import serving_view

    cut = dict(
        make_record(workload="pp128+tg64"),
        kind="serve",
        workload="c1",
        serve_requests=50,
        serve_ok=9,
        serve_failed=1,
        serve_not_sent=40,
        goodput_fraction=0.18,
    )
    (row,) = serving_view.table_rows([cut])
    assert row[serving_view.COLUMNS.index("ok/sent")] == "9/10 (40 unsent)"


def test_the_environment_gives_a_cpus_matmul_extensions():
    """Two CPUs of one marketing name can differ by AMX; the footer says which extensions each had."""
    amx = make_record(
        backend="cpu", device="Intel(R) Xeon(R) Processor", backend_kind="cpu", env_device_isa="avx2 avx512f amx_bf16"
    )
    md = tables.to_markdown(tables.build([amx], metrics=("headline",)))
    assert "host CPU Host CPU (16 cores) \\[avx2 avx512f amx_bf16\\], stack" in md  # brackets escaped: no link
    gpu = tables.to_markdown(tables.build([make_record(env_device_isa="avx2")], metrics=("headline",)))
    assert "[avx2]" not in gpu  # a GPU's record: the host's extensions are not the device's


def test_terminal_tables_align_text_left_and_figures_right():
    from chipbench.publishing.tables import plain_table

    text = plain_table(
        [
            {"backend": "cpu", "path": "eager", "t/s": "369.6 ± 81.9", "n": 5, "note": ""},
            {"backend": "llamacpp", "path": "ggml cpu, 2 threads", "t/s": "11.6 ± 0.4", "n": 12, "note": "host loaded"},
        ]
    )
    header, first, second = text.splitlines()
    assert header == "backend   path                          t/s   n  note"
    assert first == "cpu       eager                369.6 ± 81.9   5"  # no trailing blanks
    assert second == "llamacpp  ggml cpu, 2 threads    11.6 ± 0.4  12  host loaded"
    assert plain_table([]) == ""


def test_the_environment_shows_every_version_a_device_column_pools():
    """Runs made with two transformers releases pool into one column: the footer names both, not the first."""
    old = make_record(env_transformers="5.23.0", timestamp_utc="2026-12-01T10:00:00+00:00")
    new = make_record(env_transformers="5.24.0", timestamp_utc="2026-12-02T10:00:00+00:00", seed=1)
    env = tables.to_markdown(tables.build([new, old], metrics=("headline",))).split("Environment:")[1]
    assert "transformers 5.24.0 / 5.23.0" in env
    assert "run 2026-12-01T10:00:00+00:00 to 2026-12-02T10:00:00+00:00" in env
    assert env.count("torch ") == 1  # one release of torch: said once


def test_cpu_runs_at_another_thread_count_are_another_case_not_pooled():
    """OMP_NUM_THREADS=1 and torch's default of one thread per core are two configurations: pooled,
    their cell would be neither's figure. Runs at the default keep the plain path (old baselines match)."""
    cpu = dict(backend="cpu", backend_kind="cpu", device="Xeon", env_runtime="torch 2.13.0+cpu", env_cpu_cores=2)
    default = make_record(**cpu, env_torch_threads=2, tpot_s=0.05)
    one = make_record(**cpu, env_torch_threads=1, tpot_s=0.09, seed=1)
    table = tables.build([default, one], metrics=("headline",))
    assert [c[4] for c in table.cases] == ["eager", "eager, 1 thread"]
    llama = make_record(
        **{**cpu, "backend": "llamacpp", "env_runtime": "llama.cpp cpu"},
        env_torch_threads=1,
        exec_path="ggml cpu, 1 thread, fp16 KV",
    )
    assert tables.build([llama], metrics=("headline",)).cases[0][4] == "ggml cpu, 1 thread, fp16 KV"
    gpu = make_record(env_torch_threads=4)  # a GPU case: the host's threads are not its configuration
    assert tables.build([gpu], metrics=("headline",)).cases[0][4] == "eager"
