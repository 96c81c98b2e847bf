"""Claims as data: physics decides some with no hardware; runs decide the rest by their interval."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench.judging.claims import check, load_claims
from bench.errors import UsageError
from tests.records import make_record

ROOT = Path(__file__).resolve().parent.parent


def one(tmp_path, body: str):
    path = tmp_path / "claims.toml"
    path.write_text('[[claim]]\nid = "c"\nstatement = "s"\nsource = "src"\ndate = "2026"\n' + body)
    return load_claims(path)[0]


H20_8B = 'kind = "metric"\nmetric = "decode_tok_per_s"\nmodel = "qwen3-8b"\ndtype = "bf16"\nworkload = "tg2048"\nchip = "NVIDIA H20"\n'


def test_1000_tok_s_for_qwen3_8b_on_an_h20_is_physically_implausible(tmp_path):
    v = check(one(tmp_path, H20_8B + "value = 1000\n"), [])
    assert v.verdict == "physically implausible" and v.numbers["roofline"] == pytest.approx(242, abs=2)


def test_81_7_tok_s_is_plausible_and_waits_for_runs(tmp_path):
    v = check(one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\n'), [])
    assert v.verdict == "inconclusive" and v.numbers["claimed_share_of_roofline"] == pytest.approx(0.34, abs=0.01)


def test_qwen3_next_in_bf16_does_not_fit_one_h200_and_in_fp8_it_does(tmp_path):
    fits = 'kind = "fits"\nmodel = "qwen3-next-80b-a3b"\nchip = "NVIDIA H200 SXM"\n'
    bf16 = check(one(tmp_path, fits + 'dtype = "bf16"\n'), [])
    fp8 = check(one(tmp_path, fits + 'dtype = "fp8"\n'), [])
    assert bf16.verdict == "physically implausible" and bf16.numbers["weights_gb"] == pytest.approx(159.3, abs=0.1)
    assert fp8.verdict == "inconclusive" and fp8.reasons[0].startswith("fits on paper")


def h20_runs(tok_per_s, spread=0.01, **kw):
    return [make_record(workload="tg2048", device="NVIDIA H20", tpot_s=1 / tok_per_s, spread=spread,
                        rounds=5, **kw)]


def test_runs_confirm_or_refute_by_their_interval(tmp_path):
    claim = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\ntolerance = 0.05\n')
    assert check(claim, h20_runs(82)).verdict == "confirmed"
    assert check(claim, h20_runs(60)).verdict == "refuted"
    assert check(claim, h20_runs(78, spread=0.2)).verdict == "inconclusive"
    other_chip = [make_record(workload="tg2048", device="NVIDIA H100 80GB HBM3", tpot_s=1 / 82)]
    assert check(claim, other_chip).verdict == "inconclusive"  # runs on another chip decide nothing


def test_a_fast_but_wrong_run_never_confirms(tmp_path):
    claim = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "at_least"\n')
    v = check(claim, h20_runs(200, correct=False))
    assert v.verdict == "refuted" and "correctness gate" in v.reasons[-1]


def test_a_ratio_claim_is_decided_by_the_paired_interval(tmp_path):
    body = ('kind = "ratio"\nmetric = "decode_tok_per_s"\nvalue = 1.0\ncompare = "about"\ntolerance = 0.15\n'
            'model = "qwen3-8b"\nworkload = "tg32"\nnumerator = { chip = "NVIDIA H100 SXM" }\n'
            'denominator = { chip = "NVIDIA H20" }\n')
    claim = one(tmp_path, body)
    runs = [make_record(device="NVIDIA H100 80GB HBM3", tpot_s=0.010), make_record(device="NVIDIA H20", tpot_s=0.0102, seed=1)]
    assert check(claim, runs).verdict == "confirmed"
    runs[1] = make_record(device="NVIDIA H20", tpot_s=0.02, seed=1)
    assert check(claim, runs).verdict == "refuted"


def test_the_10x_decode_claim_exceeds_the_byte_ratio_at_32k(tmp_path):
    (c,) = [c for c in load_claims(ROOT / "results" / "claims.toml") if c.id == "qwen3-next-10x-decode-32k"]
    v = check(c, [])
    assert v.numbers["roofline_ratio"] == pytest.approx(8.6, abs=0.1) and "holds only if" in v.reasons[0]


@pytest.mark.parametrize("body,field,message", [
    ("kind = \"metric\"\nmetric = \"decode_tok_per_s\"\nvalue = 5\nmodel = \"qwen9\"\nworkload = \"tg8\"\n",
     "model", "unknown model 'qwen9'; valid: qwen2.5-0.5b"),
    (H20_8B.replace("NVIDIA H20", "H30") + "value = 5\n", "chip", "no chip 'H30' in the spec table; valid: NVIDIA"),
    (H20_8B.replace("decode_tok_per_s", "speed") + "value = 5\n", "metric", "'speed'; valid: ttft_s"),
    (H20_8B + "value = 5\nunit = \"GB/s\"\n", "unit", "'GB/s' does not fit decode_tok_per_s"),
    ('kind = "fits"\nmodel = "qwen3-8b"\nchip = "NVIDIA H20"\nmetric = "ttft_s"\n', "metric", "a fits claim names"),
    (H20_8B + "value = -3\n", "value", "must be a positive number"),
    (H20_8B + "value = 5\ncompare = \"roughly\"\n", "compare", "'roughly'; valid: at_least, at_most, about"),
    (H20_8B + "value = 5\nspeedup = 2\n", "speedup", "unknown field; valid fields:"),
])
def test_bad_claims_name_the_file_the_claim_and_the_field(tmp_path, body, field, message):
    with pytest.raises(UsageError) as e:
        one(tmp_path, body)
    assert f"claims.toml: claim 'c': field '{field}': " in str(e.value) and message in str(e.value)


def test_toml_syntax_errors_name_the_file(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text("[[claim]\n")
    with pytest.raises(UsageError, match="claims.toml: not valid TOML"):
        load_claims(path)


def test_the_shipped_claims_file_runs_through_the_cli():
    res = subprocess.run([sys.executable, "-m", "bench.cli", "claims", "results/claims.toml"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "| qwen3-next-single-h200-bf16 |" in res.stdout and "**physically implausible**" in res.stdout
    assert res.stdout.count("**inconclusive**") >= 8


def test_a_bad_claims_file_exits_2_with_one_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[claim]]\nid = "x"\nstatement = "s"\nsource = "s"\nkind = "vibes"\n')
    res = subprocess.run([sys.executable, "-m", "bench.cli", "claims", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "claim 'x': field 'kind': 'vibes'; valid: metric, ratio, fits" in res.stderr
