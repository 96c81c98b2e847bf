"""Same-machine A/B (`chipbench ab`): interleaved trials, the paired ratio, refused verdicts."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from chipbench.cli import main
from chipbench.judging.cases import Account
from chipbench.judging.paired import ab_rows, equivalence, paired_ratio
from chipbench.publishing.ab_view import to_markdown
from chipbench.publishing.record import read_records
from tests.records import make_record

ROOT = Path(__file__).resolve().parents[1]


def ab_records(ratios, drift=0.0, tpot_s=0.02, ab_id="run1", fail=(), gate=(True, True), seed=0):
    """Pairs whose B decode is `ratios[i]` times faster than A's, both arms moved by a shared
    drift (a machine getting slower or faster between pairs)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, r in enumerate(ratios):
        shared = 1 + drift * rng.standard_normal()
        for arm, tpot, correct in (("A", tpot_s * shared, gate[0]), ("B", tpot_s * shared / r, gate[1])):
            status = "failed" if (i, arm) in fail else "ok"
            rec = make_record(
                workload="tg32",
                tpot_s=tpot,
                spread=0.001,
                seed=seed * 100 + 2 * i + (arm == "B"),
                status=status,
                ab_id=ab_id,
                ab_arm=arm,
                ab_pair=i,
                ab_label=f"arm {arm}",
                correct=correct,
            )
            if status == "failed":
                rec["error"] = "RuntimeError: <b>boom</b>"
            out.append(rec)
    return out


def test_paired_ratio_interval_is_t_on_log_ratios():
    ratio, lo, hi = paired_ratio([1.1, 1.2, 1.15])
    logs = np.log([1.1, 1.2, 1.15])
    half = 4.302652729911275 * logs.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert ratio == pytest.approx(math.exp(logs.mean()))
    assert (lo, hi) == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))
    assert paired_ratio([1.3])[1:] == (None, None)


def test_pairing_removes_drift_both_arms_share():
    # a 30% drift between pairs would swamp a 5% difference unpaired; paired it is found
    recs = ab_records([1.05] * 6, drift=0.3)
    [row] = ab_rows(recs)
    assert row.metric == "decode_tok_per_s" and row.pairs == 6 and row.incomplete == 0
    assert row.ratio == pytest.approx(1.05, rel=0.01)
    assert row.verdict == "B faster" and row.ci_low > 1


def test_identical_arms_are_no_significant_difference_and_equivalent():
    recs = ab_records([1.0, 1.004, 0.996, 1.002, 0.998, 1.0])
    [row] = ab_rows(recs, margin=0.05)
    assert row.verdict == "no significant difference"
    assert row.equivalence == "within"
    [slow] = ab_rows(ab_records([0.8, 0.81, 0.79, 0.8]), margin=0.05)
    assert slow.verdict == "B slower" and slow.equivalence == "outside"


def test_equivalence_needs_the_whole_interval_inside_the_margin():
    assert equivalence(0.97, 1.04, 0.05) == "within"
    assert equivalence(0.9, 1.04, 0.05) == "not shown"
    assert equivalence(1.06, 1.2, 0.05) == "outside"
    assert equivalence(None, None, 0.05) == "not shown"


def test_latency_ratio_points_the_same_way_as_throughput():
    [tok, tpot] = ab_rows(ab_records([1.2, 1.2, 1.21, 1.19]), metrics=("headline", "tpot_s"))
    assert tpot.metric == "tpot_s"
    assert tpot.ratio == pytest.approx(tok.ratio, rel=0.02) and tpot.ratio > 1  # B's shorter TPOT: B better


def test_a_failed_trial_leaves_its_pair_out_and_says_so():
    recs = ab_records([1.1, 1.1, 1.1, 1.1], fail={(1, "B")})
    account = Account()
    [row] = ab_rows(recs, account=account)
    assert row.pairs == 3 and row.incomplete == 1
    assert any("pair 1 left out: B failed" in n for n in row.notes)
    assert account.failed == 1 and account.used == 6 and account.inputs == 8
    assert account.left_out == 1  # pair 1's A: it ran, but has no partner; counted, not dropped in silence
    md = to_markdown([row], account=account)
    assert "8 record(s): 6 used, 1 left out (the notes say why), 1 failed" in md
    assert "<b>" not in md and "&lt;b&gt;boom" in md  # record text never becomes markup


def test_one_complete_pair_gives_no_verdict():
    [row] = ab_rows(ab_records([1.5, 1.5], fail={(1, "A")}))
    assert row.pairs == 1 and row.ci_low is None
    assert row.verdict.startswith("insufficient data")


def test_a_wrong_answer_is_not_faster():
    [row] = ab_rows(ab_records([2.0, 2.0, 2.0], gate=(True, False)))
    assert row.verdict == "no verdict: B failed the correctness gate"
    [row] = ab_rows(ab_records([2.0, 2.0, 2.0], gate=(True, None)))
    assert row.verdict == "B faster" and "correctness not checked for B" in row.notes


def test_duplicates_count_once_and_non_ab_records_are_counted():
    recs = ab_records([1.1, 1.12, 1.09])
    account = Account()
    [row] = ab_rows(recs + recs[:2] + [make_record()], account=account)
    assert row.pairs == 3
    assert account.duplicates == 2 and account.unmatched == 1


def test_separate_ab_runs_are_separate_rows():
    rows = ab_rows(ab_records([1.1] * 3, ab_id="x") + ab_records([0.9] * 3, ab_id="y"))
    assert sorted(r.ab_id for r in rows) == ["x", "y"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--a", "mode", "--model", "tiny-qwen3"], "is not KEY=VALUE"),
        (["--a", "speed=fast", "--model", "tiny-qwen3"], "unknown key speed; valid keys: backend, mode, dtype"),
        (["--b", "python=/no/such/python", "--model", "tiny-qwen3"], "is not an executable file"),
        (["--b", "mode=warp", "--model", "tiny-qwen3"], "arm B: unknown execution mode 'warp'"),
        (["--b", "dtype=fp8", "--model", "tiny-qwen3"], "arm B: unknown dtype 'fp8'"),
        (
            ["--b", "inductor=warp_speed", "--mode", "compiled", "--model", "tiny-qwen3"],
            "warp_speed is not a setting inductor reads from the environment (no TORCHINDUCTOR_WARP_SPEED",
        ),
        (
            ["--b", "inductor=fx_graph_cache:0", "--mode", "compiled", "--model", "tiny-qwen3"],
            "fx_graph_cache does not change the compiled kernels",
        ),
        (
            ["--b", "inductor=freezing+freezing", "--mode", "compiled", "--model", "tiny-qwen3"],
            "freezing is given twice",
        ),
        (["--b", "inductor=Freezing!", "--mode", "compiled", "--model", "tiny-qwen3"], "is not a setting name"),
        (
            ["--b", "inductor=freezing", "--model", "tiny-qwen3"],
            "arm B: inductor=freezing changes a compiled step, and this arm runs mode eager",
        ),
        (["--b", "mode=compiled"], "name the model"),
        (["--b", "mode=compiled", "--model", "tiny-qwen3", "--pairs", "1"], "--pairs must be 2 or more"),
        (["--b", "mode=compiled", "--model", "tiny-qwen3", "--metrics", "speed"], "unknown metric 'speed'"),
        (["--b", "mode=compiled", "--model", "tiny-qwen3", "--margin", "5"], "--margin must be a fraction"),
    ],
)
def test_bad_ab_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert main(["ab", "--backend", "cpu", "--out", str(tmp_path / "r.jsonl"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r.jsonl").exists()


def test_from_a_file_without_ab_records_is_an_error(tmp_path, capsys):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps(make_record()) + "\n")
    assert main(["ab", "--from", str(path)]) == 2
    assert "no A/B records" in capsys.readouterr().err


def test_ab_run_interleaves_fresh_process_trials_and_rereads(tmp_path, capsys):
    """A real A/B on the CPU: tiny-qwen3 fp32 against bf16, two pairs in alternating order; the
    B arm runs under an interpreter named by path (here this one), the software-version route."""
    out = tmp_path / "ab.jsonl"
    rc = main(
        [
            "ab",
            "--backend",
            "cpu",
            "--model",
            "tiny-qwen3",
            "--workload",
            "tg16",
            "--rounds",
            "3",
            "--a",
            "dtype=fp32",
            "--b",
            f"dtype=bf16,python={sys.executable},label=bf16 here",
            "--pairs",
            "2",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    [row] = printed["rows"]
    assert row["a_label"] == f"fp32 python={sys.executable}" and row["b_label"] == "bf16 here"
    assert row["pairs"] == 2 and row["incomplete"] == 0 and row["ratio"] > 0
    # two pairs leave the paired t one degree of freedom: no interval ([0.000, 747655464] once), and
    # the verdict says how many more pairs would give one
    assert row["ci_low"] is None and row["verdict"] == (
        "insufficient data: 2 complete pair(s), no interval: one needs 3 or more, 1 more (--pairs 3)"
    )
    recs = list(read_records(out))  # in the order they were written
    assert len(recs) == 4 and all(r["status"] == "ok" and r["trial_process"] == "worker" for r in recs)
    assert [(r["ab_pair"], r["ab_arm"]) for r in recs] == [(0, "A"), (0, "B"), (1, "B"), (1, "A")]
    assert [r["ab_position"] for r in recs] == [0, 1, 0, 1]
    assert len({r["ab_id"] for r in recs}) == 1 and len({r["series_id"] for r in recs}) == 2
    assert {r["dtype"] for r in recs if r["ab_arm"] == "A"} == {"fp32"}
    assert all(r["correct"] is True for r in recs)  # the gate ran once per arm and travels with its trials
    assert all(r["timing_selftest"].startswith("passed") for r in recs)
    # the records alone give the same comparison
    assert main(["ab", "--from", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["rows"][0]
    assert again["ratio"] == pytest.approx(row["ratio"]) and again["verdict"] == row["verdict"]


def test_an_arm_compiles_under_its_own_inductor_settings(tmp_path, capsys, monkeypatch):
    """--b inductor=freezing: B's trials compile with TORCHINDUCTOR_FREEZING=1 in their
    environment, their records say so (compile_flags, the path), and A's do not."""
    monkeypatch.delenv("TORCHINDUCTOR_FREEZING", raising=False)
    out = tmp_path / "ab.jsonl"
    rc = main(
        [
            "ab",
            "--backend",
            "cpu",
            "--model",
            "tiny-qwen3",
            "--workload",
            "tg8",
            "--rounds",
            "2",
            "--mode",
            "compiled",
            "--b",
            "inductor=freezing",
            "--pairs",
            "2",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    [row] = json.loads(capsys.readouterr().out)["rows"]
    assert (row["a_label"], row["b_label"]) == ("inductor=default", "inductor=freezing")
    recs = list(read_records(out))
    assert all(r["status"] == "ok" and r["exec_path"] == "compiled" and r["correct"] is True for r in recs)
    assert {r["ab_arm"]: r["compile_flags"] for r in recs} == {"A": None, "B": "freezing=1"}
    assert not any("A/A" in n for n in row["notes"]) and "compiled, freezing=1" in row["b_software"]


def test_an_arm_label_names_inductor_settings_only_for_a_compiled_arm():
    from chipbench.measuring.ab import ArmSpec, arm_label

    common = {"backend": "cpu", "mode": "eager", "dtype": "bf16", "python": sys.executable, "inductor": "default"}
    llama, frozen = ArmSpec(backend="llamacpp"), ArmSpec(mode="compiled", inductor="freezing")
    assert arm_label(llama, frozen, common) == "llamacpp eager"
    assert arm_label(frozen, llama, common) == "cpu compiled inductor=freezing"
    assert arm_label(ArmSpec(), frozen, dict(common, mode="compiled")) == "compiled inductor=default"


def test_trials_on_a_loaded_host_are_said():
    recs = ab_records([1.1, 1.1, 1.1])
    recs[2]["host_loaded"] = True
    [row] = ab_rows(recs)
    assert row.pairs == 3 and any("1 trial(s) ran on a loaded host" in n for n in row.notes)


def test_arms_that_ran_the_same_software_are_called_an_a_a_comparison():
    recs = ab_records([1.0, 1.01, 0.99])
    [row] = ab_rows(recs)
    assert any("this is an A/A comparison" in n for n in row.notes)
    assert "transformers 5.23" in row.a_software and row.a_software == row.b_software
    for r in recs:
        if r["ab_arm"] == "B":
            r["env_transformers"] = r["engine_version"] = "5.24"
    [row] = ab_rows(recs)
    assert not any("A/A" in n for n in row.notes) and "transformers 5.24" in row.b_software
    assert "B (arm B) ran cuda bf16 eager on Chip A; transformers 5.24" in to_markdown([row])
    for r in recs:  # the same software compiled under other inductor settings is other code
        r["env_transformers"] = r["engine_version"] = "5.23"
        r.update(exec_path="compiled", compile_flags="freezing=1" if r["ab_arm"] == "B" else None)
    [row] = ab_rows(recs)
    assert not any("A/A" in n for n in row.notes)


def test_another_interpreter_sees_its_own_packages_not_ours(tmp_path):
    """A venv's python is often a link to the same binary as ours: it is told apart by its path,
    and its workers get this checkout mapped in as the chipbench package, never our site-packages."""
    import os
    import subprocess

    from chipbench.measuring.trials import python_command, worker_env

    link = tmp_path / "venv" / "bin" / "python"
    link.parent.mkdir(parents=True)
    os.symlink(sys.executable, link)
    assert "PYTHONPATH" not in worker_env(str(link)) and "VIRTUAL_ENV" not in worker_env(str(link))
    assert worker_env(sys.executable)["PYTHONPATH"]  # ours: everything we see
    assert python_command(None, "m", "x") == [sys.executable, "-m", "m", "x"]
    # without site-packages (-S stands in for a bare environment), the checkout alone is chipbench
    probe = "import sys, chipbench.models.zoo as z; print(z.__file__, sys.argv[1:])"
    (tmp_path / "probe.py").write_text(probe)
    cmd = python_command(str(link), "probe", "--flag")
    out = subprocess.run(
        [cmd[0], "-S", *cmd[1:]],
        cwd=tmp_path,
        env={**worker_env(str(link)), "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    zoo, argv = out.stdout.split(" ", 1)
    assert Path(zoo) == ROOT / "models" / "zoo.py" and argv.strip() == "['--flag']"


def _with_positions(recs, b_first_pairs):
    for r in recs:
        b_first = r["ab_pair"] in b_first_pairs
        r["ab_position"] = int((r["ab_arm"] == "A") == b_first)
    return recs


def test_crossover_removes_a_position_effect_and_reports_it():
    # true ratio 1.00; the second trial of every pair runs 3% slower than the first
    true, second = 1.0, 0.97
    b_first = {1, 3, 5}
    ratios = [true / second if i in b_first else true * second for i in range(6)]
    ratios = [r * (1 + 0.002 * (-1) ** (i // 2)) for i, r in enumerate(ratios)]  # a little noise
    recs = _with_positions(ab_records(ratios), b_first)
    [row] = ab_rows(recs, margin=0.05)
    assert row.basis.startswith("crossover: 3 pair(s) A then B, 3 B then A")
    assert row.ratio == pytest.approx(1.0, abs=0.005)
    assert row.position[0] == pytest.approx(0.97, abs=0.005) and row.position[2] < 1
    assert row.verdict == "no significant difference" and row.equivalence == "within"
    assert any("position effect" in n and "significant" in n for n in row.notes)
    # the plain paired t on the same ratios: a far wider interval, inflated by the position effect
    plain = paired_ratio(ratios)
    assert (plain[2] - plain[1]) > 3 * (row.ci_high - row.ci_low)


def test_crossover_matches_the_textbook_formula():
    from chipbench.judging.paired import crossover

    d1, d2 = np.log([1.05, 1.07, 1.06]), np.log([1.12, 1.10])
    (ratio, lo, hi), (pos, _, _) = crossover(np.exp(d1), np.exp(d2))
    tau = (d1.mean() + d2.mean()) / 2
    s2 = (((d1 - d1.mean()) ** 2).sum() + ((d2 - d2.mean()) ** 2).sum()) / 3
    half = 3.182446305284263 * math.sqrt(s2 / 4 * (1 / 3 + 1 / 2))  # t(0.975, 3)
    assert (ratio, lo, hi) == pytest.approx((math.exp(tau), math.exp(tau - half), math.exp(tau + half)))
    assert pos == pytest.approx(math.exp((d1.mean() - d2.mean()) / 2))
    assert crossover([1.1, 1.2], []) is None and crossover([1.1], [1.2]) is None


def test_pairs_all_in_one_order_say_the_position_effect_is_confounded():
    [row] = ab_rows(_with_positions(ab_records([1.1, 1.12, 1.09]), set()))
    assert row.position is None and "cannot be told apart" in row.basis


def test_too_few_pairs_for_the_crossover_say_why_the_interval_is_wide():
    """Three pairs that agree (B 17-34% slower) leave the crossover one degree of freedom: no
    verdict, and the row says what would give one."""
    recs = _with_positions(ab_records([0.83, 0.74, 0.66]), {1})
    [row] = ab_rows(recs)
    assert row.basis.endswith("t with 1 df, position effect removed") and row.ci_low is None
    assert row.verdict == "insufficient data: 3 complete pair(s), no interval: one needs 4 or more, 1 more (--pairs 4)"
    assert any(n.startswith("3 pairs leave the crossover 1 degree(s) of freedom (t = 12.7)") for n in row.notes)
    [five] = ab_rows(_with_positions(ab_records([0.83, 0.74, 0.66, 0.8, 0.7]), {1, 3}))  # 3 df: an interval
    assert five.ci_low is not None and any("3 degree(s) of freedom" in n for n in five.notes)
    [six] = ab_rows(_with_positions(ab_records([0.83, 0.74, 0.66, 0.8, 0.7, 0.75]), {1, 3, 5}))
    assert not any("degree(s) of freedom" in n for n in six.notes) and six.verdict == "B slower"


def test_what_each_arm_cost_besides_time_is_said_beside_the_ratio():
    """A speedup bought with a second copy of the weights or a long compile (inductor freezing on
    the CPU: 1.32x faster, 1.2 GiB more RSS) is said under the table, as a range over the arm's trials."""
    recs = ab_records([1.3, 1.32, 1.31])
    for r in recs:
        b = r["ab_arm"] == "B"
        r.update(
            peak_mem_kind="process_rss_peak",
            peak_mem_bytes=int((2.86 if b else 1.70) * 2**30) + r["ab_pair"] * 2**24,
            compile_time_s=36.0 + r["ab_pair"] if b else 7.0,
            measured_mbu=0.66 if b else 0.5 + 0.01 * r["ab_pair"],
            compile_cache=("miss" if r["ab_pair"] == 0 else "hit") if b else None,
        )
    [row] = ab_rows(recs)
    md = to_markdown([row])
    assert (
        "A (arm A) ran cuda bf16 eager on Chip A; transformers 5.23, torch 2.13; peak RSS 1.70-1.73 GiB, "
        "compile 7.0 s, MBU 50-52% of the measured ceiling" in md
    )
    assert (
        "peak RSS 2.86-2.89 GiB, compile 36.0-38.0 s (inductor's cache: 1 miss, 2 hit), MBU 66% of the measured ceiling"
        in md
    )
    for r in recs:  # records that measured none of it say nothing rather than zero
        for k in ("peak_mem_bytes", "compile_time_s", "measured_mbu"):
            r.pop(k)
    [row] = ab_rows(recs)
    assert row.a_costs == row.b_costs == "" and "; peak" not in to_markdown([row])
