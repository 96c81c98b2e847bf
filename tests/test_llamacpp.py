"""llama.cpp as a backend: the seeded weights exported to GGUF run the same model as torch.

These need the `llamacpp` extra (the test command installs it through the `test` extra)."""

import pytest
import torch

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from chipbench.backends import torch_loop  # noqa: E402
from chipbench.judging.correctness import check  # noqa: E402
from chipbench.judging.trial import run_case  # noqa: E402
from chipbench.measuring.runner import Case
from chipbench.measuring.workload import parse_workload  # noqa: E402
from chipbench.models import gguf_export  # noqa: E402
from chipbench.models.build import build_random  # noqa: E402
from chipbench.models.zoo import get_model  # noqa: E402

FAMILIES = ["tiny-qwen3", "tiny-qwen2.5", "tiny-qwen3-untied", "tiny-qwen3-moe"]
HOST = 24 * 2**30


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    import os

    from chipbench.backends.llamacpp import create

    old = os.environ.get("CHIPBENCH_CACHE")
    os.environ["CHIPBENCH_CACHE"] = str(tmp_path_factory.mktemp("gguf-cache"))
    yield create()
    if old is None:
        os.environ.pop("CHIPBENCH_CACHE")
    else:
        os.environ["CHIPBENCH_CACHE"] = old


def test_the_real_vocabulary_is_padded_to_the_embedding_rows():
    v = gguf_export.qwen_vocab(151936)
    assert len(v.tokens) == len(v.types) == 151936
    assert v.tokens[151643] == "<|endoftext|>" and v.eos == 151643
    assert v.tokens[-1] == "[PAD151935]"
    assert len(v.merges) == 151387  # every merge of the BPE kept


def test_a_tiny_vocabulary_keeps_only_merges_among_its_tokens():
    v = gguf_export.qwen_vocab(512)
    kept = set(v.tokens)
    assert len(v.tokens) == 512 and v.eos == 511 and v.tokens[511] == "<|endoftext|>"
    assert v.merges and all(a in kept and b in kept and a + b in kept for a, b in (m.split(" ", 1) for m in v.merges))


def test_the_gguf_file_holds_every_weight_under_llama_cpp_names(llama):
    import gguf

    spec = get_model("tiny-qwen3-moe")
    path = gguf_export.export(spec, "fp32", 0).path
    r = gguf.GGUFReader(str(path))
    names = {t.name for t in r.tensors}
    assert {
        "token_embd.weight",
        "output.weight",
        "output_norm.weight",
        "blk.1.attn_q_norm.weight",
        "blk.1.ffn_gate_exps.weight",
        "blk.1.ffn_up_exps.weight",
        "blk.1.ffn_down_exps.weight",
        "blk.1.ffn_gate_inp.weight",
    } <= names
    arch = r.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "qwen3moe"
    again = gguf_export.export(spec, "fp32", 0)
    assert again.cached and again.path == path  # the second export is the cached file


@pytest.mark.parametrize("model", FAMILIES)
def test_llama_cpp_generates_the_torch_fp32_tokens(llama, model):
    spec = get_model(model)
    ids = torch.randint(0, spec.vocab, (2, 12), generator=torch.Generator().manual_seed(3))
    h = llama.load(spec, "fp32", seed=0)
    try:
        got = llama.generate(h, llama.prompt(h, ids), 6, lambda t: None).tokens
    finally:
        llama.close(h)
    ref = build_random(spec, torch.float32, seed=0).module
    assert got == torch_loop.generate(ref, ids, 6, lambda t: None)


@pytest.mark.parametrize(
    "model,dtype",
    [
        ("tiny-qwen3", "fp32"),
        ("tiny-qwen2.5", "bf16"),
        ("tiny-qwen3-untied", "q8_0"),
        ("tiny-qwen3-moe", "q4_K_M"),
        ("tiny-qwen3", "fp16"),
    ],
)
def test_the_correctness_gate_passes_llama_cpp(llama, model, dtype):
    r = check(llama, get_model(model), dtype, 0, HOST)
    assert r.correct, r.note
    assert r.rel_err < r.tolerance


def test_the_gate_catches_a_wrong_export(llama, monkeypatch):
    """Gate and up swapped in the exported MLP: llama.cpp runs, fast and wrong; the gate says so."""
    real = gguf_export._tensors

    def swapped(spec, state, layers):
        for name, t in real(spec, state, layers):
            yield name.replace("ffn_gate", "ffn_TMP").replace("ffn_up", "ffn_gate").replace("ffn_TMP", "ffn_up"), t

    monkeypatch.setattr(gguf_export, "_tensors", swapped)
    monkeypatch.setattr(gguf_export, "EXPORT_VERSION", -1)  # a file of its own, not the cached good one
    r = check(llama, get_model("tiny-qwen3"), "fp32", 0, HOST)
    assert r.correct is False and r.rel_err > r.tolerance


def test_a_quantised_record_carries_the_files_bytes_and_its_verdict(llama):
    case = Case("llamacpp", "tiny-qwen3-untied", "q8_0", parse_workload("pp16+tg8", batch=2), warmup=1, rounds=2)
    rec = run_case(llama, case)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["engine"] == "llama.cpp" and rec["exec_path"].startswith("ggml cpu")
    assert "fp16 KV" in rec["exec_path"]
    assert rec["correct"] is True and rec["correctness_tolerance"] >= 0.02
    # q8_0 is 34 bytes per 32 weights; the norms stay fp32: just over the nominal 1.0625 bytes a weight
    assert 1.0625 <= rec["weight_bytes"] / rec["params_total"] < 1.2
    assert len(rec["token_times_s"]) == 2 and all(len(t) == 8 for t in rec["token_times_s"])


def test_the_timing_self_test_passes_on_llama_cpp(llama):
    from chipbench.measuring.selftest import check_timing_waits

    result = check_timing_waits(llama)
    assert result.passed, result.describe()


def test_a_family_the_exporter_does_not_write_is_refused_by_name():
    from chipbench.backends.registry import discover
    from chipbench.errors import UsageError
    from chipbench.measuring.suite import SuiteOptions, plan

    with pytest.raises(UsageError, match="cannot run model 'tiny-qwen3.5'"):
        plan(SuiteOptions(backends=("llamacpp",), models=("tiny-qwen3.5",)), discover())


def test_weight_repacking_is_off_where_ggml_has_its_amx_path(llama, monkeypatch):
    """ggml's AMX matmul segfaults in a q8_0 prefill on AMX CPUs (ggml-org/llama.cpp#20824): builds
    with it load without extra buffer types, and the records say so; the setting overrides."""
    import llama_cpp

    from chipbench.backends.llamacpp import EXTRA_BUFTS_ENV, extra_buffers
    from chipbench.errors import UsageError

    monkeypatch.delenv(EXTRA_BUFTS_ENV, raising=False)
    amx = "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode()
    assert extra_buffers() is (not amx)
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "0")
    h = llama.load(get_model("tiny-qwen3"), "q8_0", seed=0)
    try:
        assert h.exec_path.endswith("no weight repacking")
    finally:
        llama.close(h)
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "1")
    assert extra_buffers() is True
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "yes")
    with pytest.raises(UsageError, match="must be 1 .repack. or 0"):
        extra_buffers()
