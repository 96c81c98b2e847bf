"""The zoo: architecture facts, analytic counts against the reference table, fast seeded builds."""

import json

import pytest
import torch

from chipbench.errors import UsageError
from chipbench.models.build import allocate, build_random, load_local
from chipbench.models.counts import decode_step_bytes, facts, flops_per_token, least_decode_step_bytes, prefill_flops
from chipbench.models.zoo import MODELS, get_model

# shared/reference/qwen-architectures.md, "Derived figures": total, active, bf16 GB, KV KiB/token
REFERENCE = {
    "qwen2.5-0.5b": (494.0e6, None, 0.99, 12),
    "qwen2.5-7b": (7.616e9, None, 15.23, 56),
    "qwen3-0.6b": (596.0e6, None, 1.19, 112),
    "qwen3-1.7b": (1.721e9, None, 3.44, 112),
    "qwen3-4b": (4.022e9, None, 8.04, 144),
    "qwen3-8b": (8.191e9, None, 16.38, 144),
    "qwen3-14b": (14.768e9, None, 29.54, 160),
    "qwen3-32b": (32.762e9, None, 65.52, 256),
    "qwen3-30b-a3b": (30.532e9, 3.353e9, 61.06, 96),
    "qwen3-235b-a22b": (235.09e9, 22.19e9, 470.2, 188),
    "qwen3-next-80b-a3b": (79_674_391_296, 3_874_929_408, 159.3, 24),
}


def _close(value, ref, rel):
    return abs(value - ref) <= rel * ref


@pytest.mark.parametrize("name", REFERENCE)
def test_counts_match_the_reference_table(name):
    total, active, gb, kv_kib = REFERENCE[name]
    f = facts(get_model(name))
    # the table rounds to 4 significant figures; it is exact where it gives every digit (ints)
    rel = 0 if isinstance(total, int) else 6e-4
    assert _close(f.params_total, total, rel)
    assert _close(f.params_active, active or total, rel)
    assert _close(f.weight_bytes("bf16") / 1e9, gb, 6e-3)
    assert f.kv_bytes_per_token("bf16") == kv_kib * 1024


def test_qwen3_next_recurrent_state_is_72_mib_plus_1_7_mib_conv():
    f = facts(get_model("qwen3-next-80b-a3b"))
    assert f.recurrent_state_bytes == 72 * 2**20
    assert _close(f.conv_state_bytes("bf16") / 2**20, 1.7, 0.01)


@pytest.mark.parametrize("name", list(MODELS))
def test_analytic_count_equals_the_transformers_module(name):
    spec = get_model(name)
    module = allocate(spec, torch.bfloat16, "meta")  # real classes, no memory
    assert sum(p.numel() for p in module.parameters()) == facts(spec).params_total


def test_tied_models_share_embedding_and_head():
    m = allocate(get_model("qwen3-0.6b"), torch.bfloat16, "meta")
    assert m.lm_head.weight is m.model.embed_tokens.weight


def test_flops_are_two_per_active_parameter_plus_attention():
    spec = get_model("qwen3-8b")
    f = facts(spec)
    base = flops_per_token(spec, 0)
    assert base == 2 * (f.params_active - f.embedding_params)  # untied: embedding lookup is free
    assert flops_per_token(spec, 1000) - base == 36 * 4 * 32 * 128 * 1000


def test_a_prefill_runs_the_output_head_once_per_sequence():
    """Only the last position's logits are computed in a prefill: the head's product counts once
    per sequence, not once per prompt token (a third of qwen3-0.6b's per-token FLOPs otherwise)."""
    spec = get_model("qwen3-0.6b")
    head = 2 * spec.vocab * spec.hidden
    assert prefill_flops(spec, 1) == flops_per_token(spec, 0)  # one token: one full forward
    body = flops_per_token(spec, 256) - head
    assert prefill_flops(spec, 512, batch=2) == 2 * (512 * body + head)
    assert 512 * flops_per_token(spec, 256) / prefill_flops(spec, 512) == pytest.approx(1.33, abs=0.01)


def test_the_least_a_decode_step_reads_gathers_an_untied_embedding():
    tied, untied = get_model("qwen3-0.6b"), get_model("qwen3-8b")
    assert least_decode_step_bytes(tied, "bf16", 100, 2) == decode_step_bytes(tied, "bf16", 100, 2)  # the head reads it
    f = facts(untied)
    gathered = decode_step_bytes(untied, "bf16", 100, 2) - least_decode_step_bytes(untied, "bf16", 100, 2)
    assert gathered == 2 * f.embedding_params - 2 * 2 * untied.hidden  # the table, less the two rows it gathers


def test_decode_bytes_are_active_weights_plus_cache():
    spec = get_model("qwen3-30b-a3b")
    f = facts(spec)
    assert decode_step_bytes(spec, "bf16", 4096, batch=2) == f.active_weight_bytes(
        "bf16"
    ) + 2 * 4096 * f.kv_bytes_per_token("bf16")


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(UsageError, match="unknown model 'qwen9'.*qwen3-0.6b"):
        get_model("qwen9")


TINY = [n for n, s in MODELS.items() if s.tiny]


@pytest.mark.parametrize("name", TINY)
def test_tiny_variant_uses_its_familys_class_and_gives_finite_logits(name):
    spec = get_model(name)
    full = next(s for s in MODELS.values() if s.family == spec.family and not s.tiny)
    built = build_random(spec, torch.float32, seed=3)
    assert type(built.module).__name__ == type(allocate(full, torch.float32, "meta")).__name__
    logits = built.module(input_ids=torch.randint(0, spec.vocab, (2, 9))).logits
    assert logits.shape == (2, 9, spec.vocab) and torch.isfinite(logits).all()


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_random_weights_are_deterministic_by_seed_and_differ_across_seeds():
    spec = get_model("tiny-qwen3-next")
    a, b = (
        _params(build_random(spec, torch.float32, seed=7).module),
        _params(build_random(spec, torch.float32, seed=7).module),
    )
    c = _params(build_random(spec, torch.float32, seed=8).module)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])


def test_random_weights_follow_the_models_own_init_for_vectors():
    p = _params(build_random(get_model("tiny-qwen3-next"), torch.float32, seed=0).module)
    assert torch.equal(p["model.norm.weight"], torch.zeros_like(p["model.norm.weight"]))  # 1-centred norm
    q = _params(build_random(get_model("tiny-qwen3"), torch.float32, seed=0).module)
    assert torch.equal(q["model.norm.weight"], torch.ones_like(q["model.norm.weight"]))
    w = q["model.layers.0.mlp.up_proj.weight"]
    assert abs(w.std().item() - 0.018) < 0.002 and abs(w.mean().item()) < 0.002


def test_random_weights_are_the_same_values_in_every_dtype():
    spec = get_model("tiny-qwen3-moe")
    want = _params(build_random(spec, torch.float32, seed=3).module)
    for dtype in (torch.bfloat16, torch.float16):
        got = _params(build_random(spec, dtype, seed=3).module)
        big = [n for n in want if want[n].ndim >= 2]
        assert big and all(torch.equal(got[n].float(), want[n]) for n in big)  # exact, not rounded


def test_a_tensor_is_made_of_independently_seeded_chunks():
    from chipbench.models.build import CHUNK, chunk_bytes

    # a chunk depends only on (key, chunk number): chunks can be made in any order, on any thread
    assert (chunk_bytes(7, 3, 100) == chunk_bytes(7, 3, CHUNK)[:100]).all()
    assert not (chunk_bytes(7, 3, 100) == chunk_bytes(7, 4, 100)).all()


def test_depth_reduced_copy_shares_the_first_layers_weights():
    spec = get_model("tiny-qwen3-next")
    full = _params(build_random(spec, torch.float32, seed=1).module)
    short = _params(build_random(spec, torch.float32, seed=1, layers=2).module)
    assert short and all(torch.equal(short[n], full[n]) for n in short)


def test_build_reports_its_time(cpu):
    built = build_random(get_model("tiny-qwen3"), torch.bfloat16, seed=0)
    assert 0 < built.build_time_s < 60 and built.weights == "random(seed=0, u8)"


# --- real weights from a local directory ---


def _save_tiny(tmp_path, name="tiny-qwen3-untied"):
    from safetensors.torch import save_file

    spec = get_model(name)
    module = build_random(spec, torch.float32, seed=5).module
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": spec.hidden, "num_hidden_layers": spec.layers}))
    return spec, module


def test_local_weights_load_exactly(tmp_path):
    spec, module = _save_tiny(tmp_path)
    loaded = load_local(spec, tmp_path, torch.float32)
    want = module.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in loaded.module.state_dict().items())
    assert loaded.weights == f"local:{tmp_path}"


def test_missing_weights_directory_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_local(get_model("tiny-qwen3"), tmp_path / "nope", torch.float32)


def test_pickle_weights_are_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(UsageError, match="pickle formats are not read"):
        load_local(get_model("tiny-qwen3"), tmp_path, torch.float32)


def test_weights_of_another_architecture_are_refused(tmp_path):
    _save_tiny(tmp_path, "tiny-qwen3-untied")
    (tmp_path / "config.json").unlink()
    with pytest.raises(UsageError, match="do not match tiny-qwen3-moe"):
        load_local(get_model("tiny-qwen3-moe"), tmp_path, torch.float32)


def test_config_json_that_disagrees_is_refused(tmp_path):
    _save_tiny(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 4096}))
    with pytest.raises(UsageError, match="hidden_size is 4096"):
        load_local(get_model("tiny-qwen3-untied"), tmp_path, torch.float32)


def test_local_weights_in_the_published_per_expert_layout_load_into_the_fused_experts(tmp_path, monkeypatch):
    """Published Qwen MoE checkpoints hold one tensor per expert and projection; transformers'
    modules fuse them. The seeded model written by save_pretrained has that published layout."""
    from safetensors.torch import load_file, save_file

    from chipbench.models.build import build_random, load_local
    from chipbench.models.hf_export import export_dir

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path / "cache"))
    spec = get_model("tiny-qwen3-moe")
    src = export_dir(spec, "fp32", 0)
    weights = load_file(str(src / "model.safetensors"))
    assert "model.layers.0.mlp.experts.7.up_proj.weight" in weights  # the per-expert layout
    got = load_local(spec, src, torch.float32).module.state_dict()
    want = build_random(spec, torch.float32, seed=0).module.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    # one expert's projection missing: refused, never loaded half-filled
    partial = tmp_path / "partial"
    partial.mkdir()
    weights.pop("model.layers.1.mlp.experts.3.gate_proj.weight")
    save_file(weights, str(partial / "model.safetensors"))
    with pytest.raises(UsageError, match="tensors missing, first 'model.layers.1.mlp.experts.gate_up_proj'"):
        load_local(spec, partial, torch.float32)


def test_an_exporter_refuses_a_model_the_host_cannot_hold_before_building_it(tmp_path, monkeypatch):
    """qwen3-32b's GGUF export on this 24 GiB machine built 61 GiB of bf16 weights on the host: the
    kernel killed the whole run, every backend's results with it. Now it is refused, with the sizes."""
    import collections

    import psutil

    from chipbench.models import build, gguf_export, hf_export

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: collections.namedtuple("vm", "total")(2**30))
    monkeypatch.setattr(build, "build_random", lambda *a, **k: pytest.fail("built a model that cannot fit"))
    with pytest.raises(
        MemoryError,
        match=r"qwen3-0.6b: exporting its GGUF file needs its bf16 weights on the "
        r"host: 1.1 GiB, more than 90% of this host's 1.0 GiB of memory",
    ):
        gguf_export.export(get_model("qwen3-0.6b"), "q4_0", seed=0)  # quantised from the bf16 file it would build
    with pytest.raises(MemoryError, match="exporting its model directory"):
        hf_export.export_dir(get_model("qwen3-0.6b"), "bf16", seed=0)
    build.refuse_host_build(get_model("tiny-qwen3"), "fp32", None, "exporting")  # a model that fits: nothing said
    build.refuse_host_build(get_model("qwen3-0.6b"), "bf16", 2, "exporting")  # a depth-reduced copy: its caller's
