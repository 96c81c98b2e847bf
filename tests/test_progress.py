"""The main job a person can watch (issue 43): rounds sized to a budget, the self-test's long probe
sized to its device, what a run keeps for the next (self-test, ceilings), the progress it shows and
the summary that fits a terminal."""

import io
import json
import time

import pytest

from chipbench import stash
from chipbench.measuring.metrics import Round
from chipbench.measuring.runner import (
    ROUNDS_MAX,
    ROUNDS_MIN,
    WARMUP_TOKENS,
    Case,
    budget_rounds,
    full_round_pace,
    measure_case,
    rounds_fields,
    warmup_tokens,
)
from chipbench.measuring.selftest import LONG_MIN, TimingCheck, sized_prompt
from chipbench.measuring.workload import parse_workload
from chipbench.publishing.progress import Progress, clock


def sized(pace: float, budget: float = 15.0, warmup: int = 1) -> tuple[int, str]:
    case = Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg8"), warmup=warmup, rounds=ROUNDS_MAX, budget_s=budget)
    return budget_rounds(case, pace)


def test_rounds_fill_the_budget_at_the_warmups_pace_between_their_bounds():
    assert ROUNDS_MIN == 5  # the fixed count before rounds were sized: no case's interval got wider
    assert sized(2.0) == (7, "7: the 15 s budget at the warmup round's 2 s")
    assert sized(13.3) == (ROUNDS_MIN, "5 (the fewest): the 15 s budget at the warmup round's 13.3 s")
    assert sized(0.01) == (ROUNDS_MAX, "10 (the most): the 15 s budget at the warmup round's 0.01 s")
    n, why = sized(1.0, warmup=0)  # no warmup to pace by: the fewest, said
    assert n == ROUNDS_MIN and "no warmup round" in why
    fixed = Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg8"), rounds=4)
    assert rounds_fields(fixed, None, 4) == {"rounds_rule": "fixed", "rounds_reason": "4: as asked (--rounds)"}


def test_a_sized_decode_case_warms_up_on_its_first_tokens_where_its_backend_allows_it():
    from types import SimpleNamespace

    from chipbench.backends.cpu import create

    cpu, other = create(), SimpleNamespace(name="llamacpp")  # no short_warmup: the contract's default
    tg128 = parse_workload("tg128")
    sized_case = Case("cpu", "tiny-qwen3", "fp32", tg128, rounds=ROUNDS_MAX, budget_s=12.0)
    assert warmup_tokens(sized_case, cpu) == WARMUP_TOKENS == 16
    assert warmup_tokens(sized_case, other) == 128  # llama.cpp's KV cache outlives the round: whole rounds
    assert warmup_tokens(Case("cpu", "tiny-qwen3", "fp32", tg128, rounds=5), cpu) == 128  # fixed rounds: whole
    assert warmup_tokens(Case("cpu", "tiny-qwen3", "fp32", tg128, rounds=5, soak_s=60.0), cpu) == 128
    assert warmup_tokens(Case("cpu", "tiny-qwen3", "fp32", parse_workload("pp512"), budget_s=12.0), cpu) == 1


def test_a_short_warmup_paces_a_full_round():
    sized_case = Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg128"), rounds=ROUNDS_MAX, budget_s=12.0)
    # 16 tokens: the first at 1.0 s, then 0.1 s a step: a full round is the first plus 127 steps
    warm = Round(tuple(1.0 + 0.1 * i for i in range(16)))
    assert full_round_pace(sized_case, warm) == pytest.approx(13.7)
    assert full_round_pace(sized_case, None) == 0.0
    whole = Round(tuple(0.1 * (i + 1) for i in range(128)))
    assert full_round_pace(sized_case, whole) == pytest.approx(12.8)  # a full warmup: its own duration
    n, why = budget_rounds(sized_case, full_round_pace(sized_case, warm), 16)
    assert n == ROUNDS_MIN and "round's 13.7 s at the pace of the warmup's 16 tokens" in why


def test_the_warmup_round_generates_its_tokens_and_the_timed_rounds_the_workloads(monkeypatch):
    from chipbench.backends.cpu import create

    backend = create()
    asked = []
    generate = backend.generate

    def counting(handle, prompt, tokens, on_token):
        asked.append(tokens)
        return generate(handle, prompt, tokens, on_token)

    monkeypatch.setattr(backend, "generate", counting)
    case = Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg24"), rounds=ROUNDS_MIN, budget_s=0.01)
    rec = measure_case(backend, case)
    assert rec["status"] == "ok", rec.get("error")
    assert asked == [16] + [24] * ROUNDS_MIN and rec["warmup_tokens"] == 16
    assert len(rec["token_times_s"]) == ROUNDS_MIN and all(len(r) == 24 for r in rec["token_times_s"])
    assert "at the pace of the warmup's 16 tokens" in rec["rounds_reason"]


def test_the_long_probe_is_sized_to_about_a_second_of_prefill():
    def decode(first_s: float) -> TimingCheck:
        return TimingCheck(True, 0.0, 0.01, 0.2, 32, 16, first_s=first_s)

    assert sized_prompt(decode(0.001), 2048, 1.0) == 2048  # an accelerator: the whole 2,048 tokens
    assert sized_prompt(decode(0.1), 2048, 1.0) == 320  # 320 tokens/s: a second's worth, in steps of 64
    assert sized_prompt(decode(1.4), 2048, 1.0) == LONG_MIN  # a slow path: never below the floor
    assert sized_prompt(decode(0.1), 100, 1.0) == 100  # a model's shorter context: its own length


def test_a_kept_value_is_reused_only_for_the_same_key_while_young(tmp_path, monkeypatch):
    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("CHIPBENCH_FRESH", raising=False)
    kept = stash.Stash("demo", lifetime_s=60)
    key = {"device": "cpu", "torch": "2.13"}
    assert kept.get(key) is None
    kept.put(key, {"x": 1.5})
    value, made = kept.get(key)
    assert value == {"x": 1.5} and made.endswith("+00:00")
    assert kept.get({**key, "torch": "2.12"}) is None  # other software: measured again
    monkeypatch.setenv("CHIPBENCH_FRESH", "1")
    assert kept.get(key) is None  # --fresh reads nothing
    monkeypatch.delenv("CHIPBENCH_FRESH")
    monkeypatch.setattr(time, "time", lambda: 10**12)
    assert kept.get(key) is None  # too old
    monkeypatch.undo()
    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("CHIPBENCH_FRESH", raising=False)
    path = next((tmp_path / "demo").glob("*.json"))
    for hostile in ("{not json", json.dumps({"key": key, "value": 1}), "[]", "x" * (stash.MAX_BYTES + 1)):
        path.write_text(hostile)
        assert kept.get(key) is None  # not what this module wrote: absent, never an error
    path.write_text(json.dumps({"key": {"device": "cpu"}, "made_unix": time.time(), "made_utc": "", "value": 2}))
    assert kept.get(key) is None  # a file under another key's name
    (tmp_path / "demo").chmod(0o500)
    try:
        kept.put({"other": 1}, 3)  # a cache that cannot be written costs the reuse, never the run
    finally:
        (tmp_path / "demo").chmod(0o700)


def test_plain_progress_is_a_line_per_stage_and_quiet_is_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("CHIPBENCH_FRESH", raising=False)
    out = io.StringIO()
    shown = Progress(out, machine={"host": "h"})
    shown.plan(["a", "b"])
    shown.start_case("a")
    with shown.stage("timing self-test of cpu"):
        pass
    shown.phase("timed", 3)
    for _ in range(3):
        shown.tick()
    shown.end_case("a", "9.4 t/s, 3 rounds, correct")
    lines = out.getvalue().splitlines()
    assert lines[0] == "2 case(s) to run"
    assert lines[1:3] == ["[1/2] a: timing self-test of cpu ...", "[1/2] a: 3 timed rounds ..."]
    assert lines[3].startswith("[1/2] a: 9.4 t/s, 3 rounds, correct (0:0")
    again = Progress(io.StringIO(), machine={"host": "h"})  # the next run knows case a's duration
    again.plan(["a", "b"])
    assert again._known["a"] is not None and again._known["b"] is None
    assert again.left() == (pytest.approx(again._known["a"], abs=1.0), False)  # b never ran here: a lower bound
    quiet = io.StringIO()
    q = Progress(quiet, quiet=True)
    q.plan(["a"])
    q.start_case("a")
    with q.stage("x"):
        q.phase("timed", 2)
        q.tick()
    q.end_case("a", "done")
    assert quiet.getvalue() == ""


def test_the_live_line_says_case_round_elapsed_and_left():
    shown = Progress(io.StringIO())
    shown.plan(["cpu-qwen3-0.6b-bf16-tg128-b1"])
    shown.start_case("cpu-qwen3-0.6b-bf16-tg128-b1")
    shown.phase("timed", 3)
    shown.tick()
    shown.round_started -= 10  # the first round has run 10 s
    shown.tick()
    status = shown.status()
    assert status.startswith("[1/1] cpu-qwen3-0.6b-bf16-tg128-b1 · timed round 2 of 3 · ")
    assert "timed round 2 of 3" in status and "elapsed" in status and "about 0:2" in status  # ~20 s left
    assert clock(3725) == "1:02:05" and clock(65) == "1:05"


def test_the_compact_summary_fits_120_columns_and_wide_has_every_column():
    from chipbench.publishing.record import read_records
    from chipbench.publishing.report import summary_table

    recs = read_records(
        "results/measurements/2026-11-22-cpu-default-suite.jsonl",
        "results/measurements/2026-11-22-h100-default-suite.jsonl",
        "results/measurements/2026-11-22-h100-moe-hybrid.jsonl",
    )
    compact = summary_table(recs, wide=False).splitlines()
    assert max(map(len, compact)) <= 120
    assert any("NVIDIA H100" in line for line in compact)  # the devices differ: each row names its own
    wide = summary_table(recs).splitlines()
    assert max(map(len, wide)) > 120 and "trials×rounds" in wide[0]


def test_a_second_run_reuses_the_self_test_and_ceilings_and_fresh_does_not(tmp_path, monkeypatch, capsys):
    from chipbench.cli import main
    from chipbench.publishing.record import read_records

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHIPBENCH_CEILING_WINDOW_S", "0.2")  # a window: the kept ceilings are checked by quick rounds
    monkeypatch.delenv("CHIPBENCH_FRESH", raising=False)
    args = ["run", "--backend", "cpu", "--model", "tiny-qwen3", "--dtype", "fp32", "--workload", "tg4"]
    for i, extra in enumerate(([], [], ["--fresh"])):
        assert main([*args, *extra, "--out", str(tmp_path / f"r{i}.jsonl")]) == 0
        err = capsys.readouterr().err
        assert "took " in err and "next:" in err and "chipbench report" in err
    first, second, fresh = (read_records(tmp_path / f"r{i}.jsonl")[0] for i in range(3))
    assert "(kept:" not in first["timing_selftest"] and first["ceiling_kept_from"] is None
    assert "(kept: made" in second["timing_selftest"] and "kept 7 days" in second["timing_selftest"]
    assert second["rounds_rule"] == "budget" and ROUNDS_MIN <= second["rounds"] <= ROUNDS_MAX
    if second["ceiling_kept_from"] is not None:  # kept when the quick rounds agreed with them
        assert second["ceiling_revalidation"] >= 0.85
        assert second["ceiling_gb_per_s"] >= first["ceiling_gb_per_s"]
    assert "(kept:" not in fresh["timing_selftest"] and fresh["ceiling_kept_from"] is None
    assert main([*args, "-q", "--out", str(tmp_path / "q.jsonl")]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [f"1 record(s) appended to {tmp_path / 'q.jsonl'}"]


def test_kept_ceilings_are_used_only_while_quick_rounds_agree_with_them(tmp_path, monkeypatch):
    """The shared ceilings an earlier run measured on this machine are kept when 3 quick rounds now
    read at least 0.85 of them (raised where the quick rounds read more: a ceiling is the best rate
    seen); a slower machine now (a busy neighbour) is measured again, and the new ones are kept."""
    from chipbench.backends.base import DeviceInfo
    from chipbench.backends.ceilings import Ceilings
    from chipbench.session import Session

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CHIPBENCH_CEILING_WINDOW_S", "1")
    monkeypatch.delenv("CHIPBENCH_FRESH", raising=False)

    class Fake:
        name = "fake"
        rate = 10.0
        calls: list = []

        def info(self):
            return DeviceInfo("fake", "cpu", "Fake CPU", 1, 2**30)

        def ceilings(self, dtype, **rounds):
            self.calls.append(rounds)
            return Ceilings("cpu", dtype, self.rate, self.rate / 10, 1, 1, window_s=rounds.get("window", 1.0))

    fake = Fake()
    session = Session([], {}, writer=None, host={"env_hostname": "h", "env_torch": "t"})
    first = session.kept_or_measured(fake, "fp32")
    assert first.kept_from is None and fake.calls == [{}]  # measured over the window
    fake.rate = 9.5  # quick rounds read 0.95 of them: kept
    kept = session.kept_or_measured(fake, "fp32")
    assert kept.kept_from is not None and kept.revalidation == 0.95 and kept.bandwidth_gb_per_s == 10.0
    assert fake.calls[-1] == {"window": 0, "repeats": 3}
    fake.rate = 12.0  # quick rounds above them: kept, raised to the best rate seen
    raised = session.kept_or_measured(fake, "fp32")
    assert raised.kept_from is not None and raised.bandwidth_gb_per_s == 12.0 and raised.revalidation == 1.2
    fake.rate = 6.0  # slower now: measured again over the window, and kept for the next run
    again = session.kept_or_measured(fake, "fp32")
    assert again.kept_from is None and again.bandwidth_gb_per_s == 6.0 and fake.calls[-1] == {}
    assert session.kept_or_measured(fake, "fp32").kept_from is not None
    from chipbench.session import CEILINGS

    key = session._ceilings_key(fake, "fp32")
    for bad in (-1.0, float("nan"), "fast"):  # a kept file edited by hand: measured again, never trusted
        CEILINGS.put(key, {**CEILINGS.get(key)[0], "bandwidth_gb_per_s": bad})
        assert session.kept_or_measured(fake, "fp32").kept_from is None and fake.calls[-1] == {}


def test_the_correctness_reference_is_kept_for_the_same_software(tmp_path, monkeypatch, cpu):
    """The CPU fp32 reference (and the dtype's own error on the CPU) is computed once and kept on
    disk: the next process on the same software reads it and reaches the same verdict; another
    seed, --fresh or a damaged file computes it again."""
    from chipbench.judging import correctness
    from chipbench.models.zoo import get_model

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("CHIPBENCH_FRESH", raising=False)
    computed = []
    real = correctness._compute_reference
    monkeypatch.setattr(correctness, "_compute_reference", lambda *a: computed.append(a[2:]) or real(*a))
    spec = get_model("tiny-qwen3")

    def gate(dtype="bf16", seed=0):
        correctness._REFERENCES.clear()  # as a new process would start
        return correctness.check(cpu, spec, dtype, seed, 2**34).fields()

    first = gate()
    assert gate() == first and len(computed) == 1  # read back: the same verdict, nothing recomputed
    gate(seed=1)
    assert len(computed) == 2  # another seed: another reference
    monkeypatch.setenv("CHIPBENCH_FRESH", "1")
    gate()
    assert len(computed) == 3
    monkeypatch.delenv("CHIPBENCH_FRESH")
    for kept in (tmp_path / "reference").glob("*.safetensors"):
        kept.write_bytes(b"\x00" * 64)  # damaged: computed again, never an error
    assert gate() == first and len(computed) == 4


def test_a_cpu_without_bf16_matmul_instructions_times_fp32_by_default_and_says_why(monkeypatch):
    from chipbench.backends import cpu
    from chipbench.backends.registry import discover
    from chipbench.measuring.suite import SuiteOptions, plan

    assert cpu.default_dtype("avx2 fma")[0] == "fp32"
    assert "no bf16 matmul instructions" in cpu.default_dtype("avx2 fma")[1]
    assert cpu.default_dtype("avx2 fma avx512f avx512_bf16") is None  # bf16 in hardware: the suite's bf16
    assert cpu.default_dtype("asimd sve bf16") is None and cpu.default_dtype("avx2 amx_bf16") is None
    assert cpu.default_dtype("") is None  # flags unreadable: no opinion

    def cases(**opts):
        return [p.case for p in plan(SuiteOptions(backends=("cpu",), **opts), discover()) if p.case]

    monkeypatch.setattr(cpu, "matmul_isa", lambda: "avx2 fma")
    chosen = cases()
    assert {c.dtype for c in chosen} == {"fp32"} and all("--dtype bf16" in c.dtype_reason for c in chosen)
    asked = cases(dtypes=("bf16",))
    assert {c.dtype for c in asked} == {"bf16"} and all(c.dtype_reason is None for c in asked)
    monkeypatch.setattr(cpu, "matmul_isa", lambda: "avx2 fma avx512f avx512_bf16")
    assert {(c.dtype, c.dtype_reason) for c in cases()} == {("bf16", None)}


def test_a_note_several_rows_share_is_said_once_in_the_compact_summary():
    from chipbench.publishing.report import compact_summary
    from tests.records import make_record

    why = "fp32 by default: this CPU reports no bf16 matmul instructions"
    recs = [make_record(workload=w, dtype="fp32", dtype_reason=why) for w in ("pp64", "tg16")]
    text = compact_summary(recs)
    assert text.count(why) == 1 and text.count("[1]") == 3  # two rows point at the one note below
