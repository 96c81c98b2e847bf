"""Cost as data (issue 45, item 2): a prices file with sources and dates, cost per million output
and total tokens in the report with its assumptions under it, serving curves priced and
interpolated at an interactivity level, and cost and energy claims with verdicts."""

import subprocess
import sys
from pathlib import Path

import pytest

from chipbench.errors import UsageError
from chipbench.judging import prices as pricing
from chipbench.judging.claims import check_all, parse_claims
from chipbench.publishing import serving_view, tables
from chipbench.publishing.record import read_records

ROOT = Path(__file__).resolve().parent.parent
H200 = ROOT / "results/measurements/2026-12-04-h200-issue9/runs.jsonl"


def test_the_prices_file_is_valid_and_every_row_has_a_source_and_date():
    basis = pricing.load_basis()
    assert basis.provider == "specialty" and basis.power.region == "us-commercial" and basis.power.usd_per_kwh == 0.146
    assert basis.hourly("NVIDIA H200")[0] == 4.0 and basis.hourly("NVIDIA H100 80GB HBM3")[0] == 3.0
    assert basis.hourly("NVIDIA H100 PCIe") is None  # the file prices the SXM part only: no guess
    assert basis.hourly("AMD EPYC 9B14") is None
    assert all(r.source and r.date for r in basis.devices)
    assert pricing.load_basis(provider="long-tail").hourly("NVIDIA H200")[0] == 3.0
    assert pricing.load_basis(usd_per_hour=0.1).hourly("AMD EPYC 9B14")[0] == 0.1  # --price-hour: every device


def test_bad_prices_are_one_line(tmp_path):
    with pytest.raises(UsageError, match=r"no prices for provider 'spot' .*; valid: hyperscaler, long-tail, specialty"):
        pricing.load_basis(provider="spot")
    with pytest.raises(UsageError, match=r"no electricity price for region 'mars'.*valid: us-commercial"):
        pricing.load_basis(region="mars")
    bad = tmp_path / "prices.toml"
    bad.write_text(
        'default_provider = "x"\ndefault_region = "y"\n[[device]]\nname = "A"\nmatch = "("\nprovider = "x"\nusd_per_hour = 1.0\nsource = "s"\ndate = "d"\n'
    )
    with pytest.raises(UsageError, match=r"prices.toml: device.0.match: .*not a regular expression"):
        pricing.load_basis(bad)
    bad.write_text(
        'default_provider = "x"\ndefault_region = "y"\n[[device]]\nname = "A"\nmatch = "A"\nprovider = "x"\nusd_per_hour = -1.0\nsource = "s"\ndate = "d"\n'
    )
    with pytest.raises(UsageError, match=r"device.0.usd_per_hour: Input should be greater than 0"):
        pricing.load_basis(bad)
    with pytest.raises(UsageError, match="--price-kwh must be a positive price"):
        pricing.load_basis(usd_per_kwh=0.0)


def test_cost_arithmetic_and_interpolation_at_an_interactivity_level():
    assert pricing.per_million(3.6, 1, 1000.0) == pytest.approx(1.0)  # $3.60 an hour at 1000 tok/s: $1/M
    assert pricing.per_million(3.6, 2, 1000.0) == pytest.approx(2.0)  # two devices
    assert pricing.per_million(3.6, 1, 0.0) is None
    assert pricing.power_per_million(3.6, 0.1) == pytest.approx(0.1)  # 3.6 J/token = 1 kWh per M tokens
    assert pricing.tokens_per_s_for(3.6, 1, 1.0) == pytest.approx(1000.0)
    levels = [(50.0, 4.0, "c1"), (30.0, 1.0, "c4"), (40.0, 2.0, "c2")]
    got = pricing.cost_at(levels, 35.0)
    assert got.usd_per_m == pytest.approx(1.5) and "between c4 (30 tok/s/user) and c2 (40)" in got.note
    assert pricing.cost_at(levels, 50.0).usd_per_m == pytest.approx(4.0)
    far = pricing.cost_at(levels, 80.0)
    assert far.usd_per_m is None and "outside the measured 30-50" in far.note  # never extrapolated


def test_the_report_prices_each_case_and_states_its_assumptions():
    table = tables.build(read_records(H200), prices=pricing.load_basis())
    md = tables.to_markdown(table)
    assert "cost" in table.metrics and "| cuda: NVIDIA H200 cost |" in md.splitlines()[0]
    # qwen3-8b tg128 compiled: 164 output tokens/s at $4 an hour is $6.77 per million; its 2.54 J a
    # token at $0.146/kWh is $0.103 of power per million
    assert "| $6.77/M out, $6.72/M tok (+$0.103 power) |" in md
    assert "| $0.0943/M tok |" in md  # a prefill test: prompt tokens
    assert "NVIDIA H200 SXM: $4/device-hour, specialty (midpoint of $3.50-4.50); Mercatus" in md
    assert "electricity: $0.146/kWh (us-commercial); U.S. EIA" in md
    cpu = [r for r in read_records(ROOT / "results/measurements/2026-12-07-energy-method/cpu-qwen3-0.6b.jsonl")]
    assert "cost" not in tables.build(cpu, prices=pricing.load_basis()).metrics  # no price for this CPU: no column
    priced = tables.build(cpu, prices=pricing.load_basis(usd_per_hour=0.10))
    assert "cost" in priced.metrics and "$0.1/device-hour for every device (--price-hour)" in tables.to_markdown(priced)


def level(concurrency, out_tok_s, per_user):
    return {
        "kind": "serve",
        "status": "ok",
        "backend": "openai",
        "device_name": "NVIDIA H200",
        "model": "qwen3-8b",
        "dtype": "bf16",
        "workload": f"pp64+tg32 serve@c{concurrency}",
        "serve_output_tok_per_s": out_tok_s,
        "tok_per_s_per_user": per_user,
        "serve_concurrency": concurrency,
    }


def test_serving_levels_are_priced_and_the_curve_is_read_at_a_target_interactivity():
    basis = pricing.load_basis()
    records = [level(1, 100.0, 100.0), level(4, 360.0, 90.0), level(16, 1200.0, 75.0)]
    rows = serving_view.table_rows(records, basis)
    assert [row[-1] for row in rows] == ["11.111", "3.086", "0.926"]  # $4/h over each level's tokens/s
    (line,) = serving_view.costs_at(records, basis, 80.0)
    assert line.startswith("NVIDIA H200 · qwen3-8b bf16 pp64+tg32 at 80 tok/s/user: $1.65/M out (between serve@c16")
    (far,) = serving_view.costs_at(records, basis, 200.0)
    assert "none: 200 tok/s/user is outside the measured 75-100" in far
    md = serving_view.to_markdown(records, basis, 80.0)
    assert "Cost at 80 tokens/s per user" in md and "Assumptions: NVIDIA H200 SXM: $4/device-hour" in md


def test_report_command_takes_price_options_and_refuses_bad_ones(tmp_path):
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "chipbench.cli", "report", str(H200), *a], capture_output=True, text=True, cwd=ROOT
    )
    assert "$0.2/device-hour for every device" in run("--price", "0.2").stdout  # --price: --price-hour's short name
    out = run("--provider", "long-tail", "--price-kwh", "0.30")
    assert out.returncode == 0 and "$5.08/M out" in out.stdout and "electricity: $0.3/kWh (given)" in out.stdout
    bad = run("--provider", "spot")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "chipbench: error: no prices for provider 'spot'"
    )
    assert (
        run("--cost-at", "-3").stderr.strip()
        == "chipbench: error: --cost-at must be a positive tokens/s per user, got -3.0"
    )


CLAIMS = """
[[claim]]
id = "cheap"
statement = "qwen3-8b decodes on one H200 for at most $10 per million output tokens"
source = "test"
kind = "cost"
model = "qwen3-8b"
dtype = "bf16"
workload = "tg128"
chip = "NVIDIA H200 SXM"
value = 10.0
unit = "$/M tokens"
compare = "at_most"

[[claim]]
id = "joules"
statement = "qwen3-8b decodes on one H200 at 0.3 tokens per joule or better"
source = "test"
kind = "energy"
model = "qwen3-8b"
dtype = "bf16"
workload = "tg128"
chip = "NVIDIA H200 SXM"
value = 0.3
"""


def test_cost_and_energy_claims_get_verdicts():
    import tomllib

    claims = parse_claims(tomllib.loads(CLAIMS))
    records = read_records(H200)
    compiled = [r for r in records if r["model"] == "qwen3-8b" and "compiled" in r["exec_path"]]
    cheap, joules = check_all(claims, records)
    # $6.77 [6.16, 7.46] per million at $4 an hour: at most $10, confirmed
    assert cheap.verdict == "confirmed" and cheap.numbers["measured_usd_per_m"] == pytest.approx(6.775, rel=1e-3)
    assert cheap.numbers["usd_per_m_ci95_high"] < 10 and "at $4/device-hour x 1 (NVIDIA H200 SXM" in cheap.reasons[0]
    # one metered trial: one figure, no interval
    assert joules.verdict == "inconclusive" and joules.numbers["measured"] == pytest.approx(1 / 2.5359, rel=1e-3)
    assert "two or more trials" in joules.reasons[-1]
    # three metered trials of 0.39-0.41 tokens/J: at least 0.3 confirmed, at least 0.5 refuted
    trials = [
        {**compiled[0], "record_id": f"t{i}", "series_id": f"s{i}", "energy_per_output_token_j": j}
        for i, j in enumerate((2.45, 2.54, 2.50))
    ]
    (v,) = check_all(parse_claims(tomllib.loads(CLAIMS))[1:], trials)
    assert v.verdict == "confirmed" and v.numbers["ci95_low"] > 0.3 and "nvml-energy-counter (device)" in v.reasons[0]
    refuted = parse_claims(tomllib.loads(CLAIMS.replace("value = 0.3", "value = 0.5")))[1:]
    assert check_all(refuted, trials)[0].verdict == "refuted"


@pytest.mark.parametrize(
    "change, message",
    [
        (('compare = "at_most"', 'compare = "about"'), "a cost claim compares at_most or at_least"),
        (('unit = "$/M tokens"', 'unit = "tokens/s"'), "'tokens/s' does not fit a cost claim; valid: $/M tokens"),
        (('chip = "NVIDIA H200 SXM"\nvalue = 10.0', "value = 10.0"), "a cost claim needs a price"),
        (('chip = "NVIDIA H200 SXM"\nvalue = 10.0', 'chip = "NVIDIA H20"\nvalue = 10.0'), "no specialty price for"),
    ],
)
def test_bad_cost_claims_are_one_line(change, message):
    import tomllib

    text = CLAIMS.split("[[claim]]")[1]
    assert change[0] in text
    with pytest.raises(
        UsageError, match="claim 'cheap': field '.*': " + message.replace("$", r"\$").replace("(", r"\(")
    ):
        parse_claims(tomllib.loads("[[claim]]" + text.replace(*change)))


def test_the_html_report_charts_cost_and_prints_its_assumptions():
    from chipbench.publishing.html_page import to_html

    page = to_html(tables.build(read_records(H200), prices=pricing.load_basis()))
    assert "alt='Rent per million output tokens per case and device" in page
    assert "NVIDIA H200 SXM: $4/device-hour, specialty" in page
