"""Execution modes: eager and compiled (a static KV cache and a torch.compile'd decode step)."""

import json

import pytest

from chipbench.errors import UsageError
from chipbench.judging.trial import run_case
from chipbench.measuring.runner import Case
from chipbench.measuring.workload import parse_workload, prompt_ids
from chipbench.models.zoo import get_model


@pytest.fixture(scope="module")
def compiled_case(cpu):
    return run_case(
        cpu, Case("cpu", "tiny-qwen3", "fp32", parse_workload("pp8+tg6", batch=2), rounds=2, mode="compiled")
    )


def test_a_compiled_case_records_its_path_and_its_compile_time_apart(compiled_case):
    rec = compiled_case
    assert rec["status"] == "ok", rec.get("error")
    assert rec["exec_path"] == "compiled" and rec["stack"].endswith(" compiled")
    assert rec["compile_time_s"] > 0 and rec["exec_note"] is None
    # the compile happened before the rounds: no round took as long as compiling
    assert max(rec["e2e_s_samples"]) < rec["compile_time_s"]
    # the whole step is one graph, never recompiled while timed; CPU has no CUDA graphs to capture
    assert (rec["compiled_graphs"], rec["graph_breaks"], rec["cuda_graphs"], rec["compile_flags"]) == (1, 0, None, None)
    assert rec["compile_cache"] in ("hit", "miss")  # whichever inductor's on-disk cache held before this test
    assert rec["rerun"].startswith("chipbench run ")  # inductor's defaults: no settings to carry


def test_a_compiled_prefill_test_times_a_compiled_prefill(cpu):
    """Compiled mode compiles the prefill too (the prompt length dynamic), so a ppN test's compiled
    row is its own figure, not the eager prefill again; its compile time is part of the build's."""
    rec = run_case(
        cpu, Case("cpu", "tiny-qwen3", "fp32", parse_workload("pp8"), rounds=1, mode="compiled"), check=False
    )
    assert rec["status"] == "ok" and rec["exec_path"] == "compiled", rec.get("error")
    assert (rec["prefill_path"], rec["exec_note"]) == ("compiled", None)
    assert 0 < rec["prefill_compile_time_s"] < rec["compile_time_s"]


def test_one_prefill_graph_serves_every_prompt_length_and_a_one_token_prompt_is_a_step(tiny_module):
    """One graph for every prompt of two tokens or more, never recompiled for a new length; a
    one-token prompt (tg128's) goes through the compiled decode step at position 0. The tokens are
    the eager loop's at every length."""
    import torch

    from chipbench.backends import torch_loop

    dec = _decoder(tiny_module, batch=2, max_len=48, prefill=False)  # a tg case's: its prompt is one token
    assert dec.prefill is None and dec.prefill_compile_time_s is None
    step_s = dec.compile_time_s
    torch_loop.add_prefill(dec, "cpu", lambda: None)  # a later case with a longer prompt
    assert (dec.prefill is not None, dec.prefill_graphs, dec.prefill_breaks, dec.prefill_failed) == (True, 1, {}, None)
    assert dec.compile_time_s == step_s + dec.prefill_compile_time_s
    for n in (1, 3, 17, 40):
        prompt = torch.randint(0, tiny_module.config.vocab_size, (2, n), generator=torch.Generator().manual_seed(n))
        got = torch_loop.generate_static(dec, prompt, 6, lambda t: None)
        assert got == torch_loop.generate(tiny_module, prompt, 6, lambda t: None), n
        assert dec.prefill_ran == "compiled", n
    assert dec.recompiles == 0 and dec.problems() is None


def test_a_prefill_that_does_not_compile_runs_eager_and_says_why(tiny_module, monkeypatch):
    import torch

    from chipbench.backends import torch_loop

    def refused(fn, *args, **kwargs):
        if fn.__name__ == "prefill":

            def fails(*a):
                raise RuntimeError("inductor said no\nsecond line")

            return fails
        return real(fn, *args, **kwargs)

    real = torch.compile
    monkeypatch.setattr(torch, "compile", refused)
    dec = _decoder(tiny_module, max_len=30)
    monkeypatch.undo()
    assert dec.prefill is None and dec.prefill_failed == "RuntimeError: inductor said no"
    prompt = torch.tensor([[5, 6, 7, 8]])
    assert torch_loop.generate_static(dec, prompt, 4, lambda t: None) == torch_loop.generate(
        tiny_module, prompt, 4, lambda t: None
    )
    assert dec.facts()["prefill_path"] == "eager"
    assert "the prefill did not compile (RuntimeError: inductor said no): it ran eager" in dec.problems()


def test_a_compiled_record_with_an_eager_prefill_is_its_own_path():
    """TTFT through an eager prefill is other work than through a compiled one: compiled records
    made before the prefill was compiled (no prefill_path) and hybrids' are "compiled, eager prefill"."""
    from chipbench.judging.cases import path_key

    rec = {"exec_path": "compiled", "parallel": "none"}
    assert path_key({**rec, "prefill_path": "compiled"}) == "compiled"
    assert path_key(rec) == path_key({**rec, "prefill_path": "eager"}) == "compiled, eager prefill"
    assert path_key({"exec_path": "eager", "parallel": "none"}) == "eager"


def test_an_eager_case_has_no_compile_facts(cpu):
    rec = run_case(cpu, Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg4"), rounds=1), check=False)
    assert rec["status"] == "ok", rec.get("error")
    assert (rec["compiled_graphs"], rec["graph_breaks"], rec["cuda_graphs"], rec["exec_note"]) == (None,) * 4


def _decoder(model, batch=1, max_len=24, prefill=True):
    from chipbench.backends import torch_loop

    return torch_loop.build_static_decoder(model, batch, max_len, "cpu", lambda: None, prefill=prefill)


@pytest.fixture(scope="module")
def tiny_module():
    import torch

    from chipbench.models.build import build_random

    return build_random(get_model("tiny-qwen3"), torch.float32, "cpu", seed=0).module


def test_a_graph_break_in_the_compiled_step_is_counted_and_said(tiny_module, monkeypatch):
    import torch

    norm = type(tiny_module.model.norm)
    forward = norm.forward

    def breaking(self, x):
        torch._dynamo.graph_break()  # what an untraceable op in a model's code does
        return forward(self, x)

    monkeypatch.setattr(norm, "forward", breaking)
    dec = _decoder(tiny_module)
    facts, why = dec.facts(), dec.problems()
    assert facts["graph_breaks"] >= 1 and facts["compiled_graphs"] >= 2, facts
    assert why.startswith("the decode step has ") and "graph break" in why


def test_skipped_cuda_graphs_are_said(tiny_module, monkeypatch):
    """Inductor refuses CUDA graphs for a CPU graph: reduce-overhead asked for on the CPU is the
    skip a CUDA step would meet (mutated inputs, CPU ops), seen through the same counters."""
    from chipbench.backends import torch_loop

    monkeypatch.setattr(torch_loop, "compile_mode", lambda device: "reduce-overhead")
    dec = _decoder(tiny_module)
    assert dec.facts()["cuda_graphs"] == "skipped"
    assert "inductor skipped CUDA graphs for 1 graph(s)" in dec.problems()


def test_a_recompile_while_generating_is_counted(tiny_module):
    import torch

    from chipbench.backends import torch_loop

    dec = _decoder(tiny_module)
    torch.compiler.reset()  # the compiled code is gone: the prefill and the step compile again
    torch_loop.generate_static(dec, torch.tensor([[1, 2, 3]]), 4, lambda t: None)
    assert dec.recompiles == 2 and dec.facts()["compiled_graphs"] == 3
    assert "recompiled 2 time(s) after their build" in dec.problems()


def test_the_compile_time_says_whether_inductor_compiled_anew_or_read_its_cache(tiny_module, tmp_path, monkeypatch):
    """A compile of the same step takes 31 s cold and 7 s once inductor's on-disk cache holds it
    (qwen3-0.6b on a 2-core Xeon), so compile_time_s alone cannot be compared across runs: the
    record says which it was. A fresh cache directory misses; the same step built again reads it."""
    from chipbench.backends import torch_loop

    assert torch_loop.cache_outcome((0, 0, 0), (0, 0, 0)) is None
    assert torch_loop.cache_outcome((1, 2, 0), (3, 2, 0)) == "hit"
    assert torch_loop.cache_outcome((0, 0, 0), (1, 2, 1)) == "1 hit, 2 miss, 1 bypass"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    first = _decoder(tiny_module, max_len=31)
    second = _decoder(tiny_module, max_len=31)  # torch.compiler.reset() between: only the disk cache is left
    assert (first.fx_cache, second.fx_cache) == ("miss", "hit")
    assert first.facts()["compile_cache"] == "miss"


def test_many_compiled_steps_in_one_process_all_compile(tiny_module):
    """dynamo stops compiling a function after `recompile_limit` (8) recompiles and runs it eagerly:
    the ninth decoder in a process (a suite's ninth compiled case) must still be compiled. With the
    limit at 2, the third decoder is that one."""
    import torch

    with torch._dynamo.config.patch(recompile_limit=2):
        for n in range(3):
            dec = _decoder(tiny_module, max_len=20 + n)
    facts = dec.facts()
    assert facts.pop("prefill_compile_time_s") > 0
    assert facts == {
        "compiled_graphs": 1,
        "graph_breaks": 0,
        "cuda_graphs": None,
        "compile_flags": None,
        "compile_cache": dec.fx_cache,
        "prefill_path": "compiled",
    } and dec.fx_cache in ("hit", "miss")
    assert dec.problems() is None


def test_the_compiled_step_skips_dynamos_guard_checks_once_built(tiny_module):
    """Every call of a compiled function checks its guards (about 1 ms a step on qwen3-0.6b here):
    a decoder whose step is one graph was checked at its build, and its generation and its gate's
    logits skip the checks, with no recompile; a step in pieces keeps them."""
    import torch
    import torch._dynamo.eval_frame as frames

    from chipbench.backends import torch_loop

    dec = _decoder(tiny_module)
    compiled, seen = dec.step, []

    def step(*args):
        seen.append(frames._stance.skip_guard_eval_unsafe)
        return compiled(*args)

    dec.step = step
    tokens = torch_loop.generate_static(dec, torch.tensor([[1, 2, 3]]), 4, lambda t: None)
    assert seen == [True] * 3 and not frames._stance.skip_guard_eval_unsafe and dec.recompiles == 0
    graphs = torch_loop.compile_counters()[0]
    ids = torch.tensor([[1, 2, 3] + [t[0] for t in tokens]])
    logits = torch_loop.teacher_forced_logits_static(dec, ids, 3)  # the gate's path: the same step, no recompile
    assert logits[:-1].argmax(-1).tolist() == [t[0] for t in tokens[1:]] and seen[3:] == [True] * 3
    assert torch_loop.compile_counters()[0] == graphs
    dec.breaks = {"a graph break": 1}  # a step in pieces: its entries are told apart by their guards
    seen.clear()
    torch_loop.generate_static(dec, torch.tensor([[1, 2, 3]]), 3, lambda t: None)
    assert seen == [False, False]


def test_inductor_settings_from_the_environment_name_the_compiled_path(tiny_module, monkeypatch):
    """A step compiled under TORCHINDUCTOR_* settings that change its kernels is other code than
    the default's: the record says which, its path carries them, its rerun sets them again, and a
    failed trial stays in the same cell. Caches, logs and the compiler's own workers do not count."""
    from chipbench.backends.torch_loop import inductor_flags
    from chipbench.judging.cases import path_key
    from chipbench.measuring.runner import failed_record

    assert (
        inductor_flags(
            {
                "TORCHINDUCTOR_FREEZING": "1",
                "TORCHINDUCTOR_CACHE_DIR": "/tmp/x",
                "TORCH_LOGS": "+dynamo",
                "TORCHINDUCTOR_COORDINATE_DESCENT_TUNING": "1",
                "TORCHINDUCTOR_COMPILE_THREADS": "1",
                "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
            }
        )
        == "coordinate_descent_tuning=1, freezing=1"
    )
    assert inductor_flags({"OMP_NUM_THREADS": "1"}) is None
    monkeypatch.setenv("TORCHINDUCTOR_COORDINATE_DESCENT_TUNING", "1")  # read as the step is built
    flags = _decoder(tiny_module).facts()["compile_flags"]
    assert flags == "coordinate_descent_tuning=1"
    rec = {"exec_path": "compiled", "parallel": "none", "compile_flags": flags, "prefill_path": "compiled"}
    assert (
        path_key(rec) == "compiled, coordinate_descent_tuning=1"
        and path_key({**rec, "compile_flags": None}) == "compiled"
    )
    failed = failed_record(Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg4"), mode="compiled"), "boom", {}, {})
    assert path_key(failed) == "compiled, coordinate_descent_tuning=1"
    assert failed["rerun"].startswith("TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 chipbench run "), failed["rerun"]
    eager = failed_record(Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg4")), "boom", {}, {})
    assert path_key(eager) == "eager" and eager["rerun"].startswith("chipbench run ")


def test_the_correctness_gate_checks_the_compiled_path(compiled_case):
    assert compiled_case["correct"] is True and compiled_case["correctness_rel_err"] < 1e-4


@pytest.mark.parametrize("model", ["tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-next"])
def test_compiled_and_eager_give_the_same_greedy_tokens(cpu, model):
    from chipbench.backends import torch_loop

    spec = get_model(model)
    if refused := cpu.ops.compile_refuses(spec):  # this torch would abort the test process
        pytest.skip(refused)
    w = parse_workload("pp12+tg10", batch=2)
    tokens = {}
    for mode in ("eager", "compiled"):
        handle = cpu.load(spec, "fp32", seed=1, mode=mode)
        try:
            prompt = cpu.prompt(handle, prompt_ids(w, spec.vocab))
            cpu.prepare(handle, w.batch, w.prompt_tokens + w.gen_tokens, w.prompt_tokens)  # as the runner does
            tokens[mode] = cpu.generate(handle, prompt, w.gen_tokens, lambda t: None).tokens
            assert handle.exec_path == mode
            if mode == "compiled":  # the hybrids' chunked linear-attention prefill stays eager, and says so
                hybrid = model == "tiny-qwen3-next"
                assert handle.decoder.prefill_ran == ("eager" if hybrid else "compiled")
                assert (
                    (handle.decoder.problems() == torch_loop.HYBRID_PREFILL)
                    if hybrid
                    else handle.decoder.problems() is None
                )
        finally:
            cpu.close(handle)
    assert tokens["compiled"] == tokens["eager"]


def test_a_device_that_cannot_compile_runs_eager_and_says_why():
    from chipbench.backends.cpu import create
    from dataclasses import replace

    from chipbench.backends.torch_device import TorchBackend

    backend = TorchBackend("nocompile", replace(create().ops, compile_unsupported="not verified here"))
    rec = run_case(backend, Case("nocompile", "tiny-qwen3", "fp32", parse_workload("tg4"), rounds=1, mode="compiled"))
    assert rec["status"] == "ok" and rec["exec_path"] == "eager" and rec["compile_time_s"] is None
    assert rec["exec_note"] == "compiled mode asked for, ran eager: not verified here"


def test_hybrids_run_eager_where_this_torch_miscompiles_them_on_the_cpu(monkeypatch):
    """torch 2.11 / 2.12's inductor corrupts memory in a DeltaNet hybrid's compiled CPU decode step (a
    process abort that would lose every later case): there the hybrid runs eager and says why."""
    import torch

    from chipbench.backends.cpu import compile_refuses, create

    for version, refused in (("2.11.0+cu130", True), ("2.12.1", True), ("2.13.0+cpu", False), ("2.14.0", False)):
        assert (compile_refuses(get_model("tiny-qwen3.5"), version) is not None) is refused, version
        assert compile_refuses(get_model("tiny-qwen3-moe"), version) is None
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    cpu = create()
    rec = run_case(cpu, Case("cpu", "tiny-qwen3-next", "fp32", parse_workload("tg4"), rounds=1, mode="compiled"))
    assert rec["status"] == "ok" and rec["exec_path"] == "eager" and rec["compile_time_s"] is None
    assert rec["exec_note"].startswith("compiled mode asked for, ran eager: torch 2.11.0+cu130's inductor")
    rec = run_case(cpu, Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg4"), rounds=1, mode="compiled"))
    assert rec["exec_path"] == "compiled" and rec["exec_note"] is None


def test_modes_are_checked_before_anything_runs():
    from chipbench.backends.registry import discover
    from chipbench.measuring.suite import SuiteOptions, plan

    entries = discover()
    with pytest.raises(UsageError, match="unknown execution mode 'jit'; valid modes: eager, compiled"):
        plan(SuiteOptions(backends=("cpu",), modes=("jit",)), entries)
    cases = [
        p.case
        for p in plan(
            SuiteOptions(backends=("cpu",), models=("tiny-qwen3",), workloads=("tg4",), modes=("eager", "compiled")),
            entries,
        )
    ]
    assert [(c.mode, c.id) for c in cases] == [
        ("eager", "cpu-tiny-qwen3-bf16-tg4-b1"),
        ("compiled", "cpu-tiny-qwen3-bf16-tg4-b1-compiled"),
    ]


def test_cuda_runs_eager_and_compiled_by_default_and_the_cpu_eager():
    """A GPU's default suite times both the host-bound eager loop and the chip-bound compiled step;
    --bench-mode still decides when given."""
    from chipbench.backends.base import Probe
    from chipbench.backends.registry import Entry
    from chipbench.measuring.suite import SuiteOptions, plan
    from tests.adapters import Wrapped

    entries = {n: Entry(n, "builtin", Wrapped(n), Probe.ok()) for n in ("cpu", "cuda")}
    small = dict(models=("tiny-qwen3",), dtypes=("fp32",), workloads=("tg4",))
    cases = [p.case for p in plan(SuiteOptions(**small), entries)]
    assert [(c.backend, c.mode) for c in cases] == [("cpu", "eager"), ("cuda", "eager"), ("cuda", "compiled")]
    cases = [p.case for p in plan(SuiteOptions(modes=("eager",), **small), entries)]
    assert [(c.backend, c.mode) for c in cases] == [("cpu", "eager"), ("cuda", "eager")]
    # compiled mode compiles the prefill too: a prefill test runs both ways by default
    pp = dict(small, workloads=("pp16", "tg4"))
    cases = [p.case for p in plan(SuiteOptions(backends=("cuda",), **pp), entries)]
    assert [(c.workload.name, c.mode) for c in cases] == [
        ("pp16", "eager"),
        ("pp16", "compiled"),
        ("tg4", "eager"),
        ("tg4", "compiled"),
    ]

    class EagerOnly(Wrapped):
        def supported_modes(self):
            return ("eager",)

    entries["cuda"] = Entry("cuda", "builtin", EagerOnly("cuda"), Probe.ok())  # a default it cannot run is not asked
    assert [p.case.mode for p in plan(SuiteOptions(backends=("cuda",), **small), entries)] == ["eager"]


def test_an_adapter_that_knows_only_eager_refuses_compiled():
    from chipbench.backends.base import Probe
    from chipbench.backends.registry import Entry
    from chipbench.measuring.suite import SuiteOptions, plan

    class EagerOnly:
        name = "eageronly"

        def supported_dtypes(self):
            return ("fp32",)

    entries = {"eageronly": Entry("eageronly", "x", EagerOnly(), Probe.ok())}
    with pytest.raises(UsageError, match="backend 'eageronly' cannot run mode 'compiled'; it runs: eager"):
        plan(
            SuiteOptions(backends=("eageronly",), models=("tiny-qwen3",), dtypes=("fp32",), modes=("compiled",)),
            entries,
        )
    # not named, and no other backend runs it: nothing would run, which is an error too
    with pytest.raises(UsageError, match="no available backend can run this suite: eageronly: cannot run mode"):
        plan(SuiteOptions(models=("tiny-qwen3",), dtypes=("fp32",), modes=("compiled",)), entries)


def test_eager_and_compiled_are_separate_cases_in_tables_and_comparisons(compiled_case, cpu):
    from chipbench.judging.compare import compare_records
    from chipbench.publishing import tables

    eager = run_case(cpu, Case("cpu", "tiny-qwen3", "fp32", parse_workload("pp8+tg6", batch=2), rounds=2))
    t = tables.build([eager, compiled_case])
    assert sorted(c[4] for c in t.cases) == ["compiled", "eager"]
    c = compare_records([compiled_case], [eager])
    assert not c.rows and len(c.unmatched_run) == 1  # never compared with each other by default


def test_pytest_benchmark_runs_both_modes(pytester, monkeypatch):
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), str(root)]))
    out = pytester.path / "r.jsonl"
    res = pytester.runpytest_subprocess(
        "--benchmark",
        "--bench-backend=cpu",
        "--bench-model=tiny-qwen3",
        "--bench-dtype=fp32",
        "--bench-workload=tg4",
        "--bench-rounds=2",
        "--bench-mode=eager,compiled",
        "--bench-no-check",
        f"--bench-out={out}",
    )
    res.assert_outcomes(passed=2)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["exec_path"] for r in records] == ["eager", "compiled"]
    res.stdout.fnmatch_lines(["*tiny-qwen3*", "cpu*tg4*compiled*"])
