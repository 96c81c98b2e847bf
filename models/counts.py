"""Analytic facts of a model, from its architecture values alone (no weights needed).

Parameter counts exclude multi-token-prediction heads (transformers ignores them); tied
embeddings count once. These feed the roofline: a decode step reads the active weights plus
the KV cache (and, for hybrid models, the recurrent state) of every sequence in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from chipbench.models.zoo import ModelSpec

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
# llama.cpp's quantised types: bytes per weight of the block format (q8_0: 32 int8 + one fp16 scale
# in 34 bytes). The _M mixes keep some tensors in a wider type: their figure is the nominal one,
# and records of them carry the file's real tensor bytes instead (the adapter reads them).
QUANT_BYTES = {
    "q8_0": 34 / 32,
    "q6_K": 210 / 256,
    "q5_K_M": 176 / 256,
    "q4_K_M": 144 / 256,
    "q4_0": 18 / 32,
    # NNCF's weight compression modes (the OpenVINO plugin): int8 with a scale per row (and a u8 zero
    # point, asym), int4 with an fp16 scale per group of 128 (and a u4 zero point, asym). The int4
    # modes keep the embedding and output head in int8: records carry the IR's real bytes.
    "int8_sym": 1.0,
    "int8_asym": 1.0,
    "int4_sym": 0.5 + 2 / 128,
    "int4_asym": 0.5 + 2.5 / 128,
}
# every dtype a case may run in: chipbench counts its bytes and its correctness gate has a tolerance
# for it. A backend (a plugin's too) may offer only these; the others in DTYPE_BYTES are for claims.
RUN_DTYPES = ("fp32", "bf16", "fp16", *QUANT_BYTES)
# quantised weights leave the KV cache in a 16-bit type (llama.cpp: fp16), counted at 2 bytes
KV_DTYPE = {q: "fp16" for q in QUANT_BYTES}
RECURRENT_STATE_BYTES = 4  # DeltaNet recurrent state is kept in fp32 whatever the weights' dtype


@dataclass(frozen=True)
class ModelFacts:
    params_total: int
    params_active: int  # per token: shared weights plus the top-k experts
    embedding_params: int  # input embedding (also the output head when tied)
    kv_bytes_per_token_per_dtype_byte: int  # multiply by the KV dtype's bytes
    recurrent_state_bytes: int  # per sequence, fp32, hybrid models only
    conv_state_elems: int  # per sequence, hybrid models only (held in the model dtype)
    attention_layers: int
    linear_layers: int

    def weight_bytes(self, dtype: str) -> int:
        return int(self.params_total * weight_bytes_per_param(dtype))

    def active_weight_bytes(self, dtype: str) -> int:
        return int(self.params_active * weight_bytes_per_param(dtype))

    def kv_bytes_per_token(self, dtype: str) -> int:
        return self.kv_bytes_per_token_per_dtype_byte * DTYPE_BYTES[KV_DTYPE.get(dtype, dtype)]

    def conv_state_bytes(self, dtype: str) -> int:
        return self.conv_state_elems * DTYPE_BYTES[KV_DTYPE.get(dtype, dtype)]


def weight_bytes_per_param(dtype: str) -> float:
    return DTYPE_BYTES[dtype] if dtype in DTYPE_BYTES else QUANT_BYTES[dtype]


def _attention_params(s: ModelSpec) -> int:
    q = s.heads * s.head_dim
    kv = s.kv_heads * s.head_dim
    gate = q if s.is_hybrid else 0  # hybrid models' gated attention projects q and its gate together
    n = s.hidden * (q + gate) + 2 * s.hidden * kv + q * s.hidden
    if s.qkv_bias:
        n += q + 2 * kv
    if s.family != "qwen2":
        n += 2 * s.head_dim  # per-head q_norm / k_norm
    return n


def _linear_attention_params(s: ModelSpec) -> int:
    key_dim = s.linear_key_heads * s.linear_key_dim
    value_dim = s.linear_value_heads * s.linear_value_dim
    conv_dim = 2 * key_dim + value_dim
    in_qkvz = s.hidden * (2 * key_dim + 2 * value_dim)
    in_ba = s.hidden * 2 * s.linear_value_heads
    conv = conv_dim * s.conv_kernel
    out = value_dim * s.hidden
    vectors = 2 * s.linear_value_heads + s.linear_value_dim  # dt_bias, A_log, gated norm
    return in_qkvz + in_ba + conv + out + vectors


def _expert_params(s: ModelSpec) -> int:
    return 3 * s.hidden * s.moe_inter


def _mlp_params(s: ModelSpec) -> tuple[int, int]:
    """(total, active) parameters of one layer's MLP block."""
    if not s.is_moe:
        n = 3 * s.hidden * s.intermediate
        return n, n
    router = s.experts * s.hidden
    shared = 0
    if s.shared_expert_inter:
        shared = 3 * s.hidden * s.shared_expert_inter + s.hidden  # expert plus its sigmoid gate
    total = router + shared + s.experts * _expert_params(s)
    active = router + shared + s.top_k * _expert_params(s)
    return total, active


def facts(s: ModelSpec) -> ModelFacts:
    mlp_total, mlp_active = _mlp_params(s)
    norms = 2 * s.hidden
    per_layer_common = norms
    attn = _attention_params(s)
    lin = _linear_attention_params(s) if s.is_hybrid else 0
    a, lin_layers = s.attention_layers, s.linear_layers
    embed = s.vocab * s.hidden
    head = 0 if s.tied else s.vocab * s.hidden
    shared = embed + head + s.hidden  # embeddings, output head, final norm
    total = shared + a * attn + lin_layers * lin + s.layers * (per_layer_common + mlp_total)
    active = shared + a * attn + lin_layers * lin + s.layers * (per_layer_common + mlp_active)
    key_dim = s.linear_key_heads * s.linear_key_dim
    value_dim = s.linear_value_heads * s.linear_value_dim
    return ModelFacts(
        params_total=total,
        params_active=active,
        embedding_params=embed,
        kv_bytes_per_token_per_dtype_byte=a * 2 * s.kv_heads * s.head_dim,
        recurrent_state_bytes=lin_layers
        * s.linear_value_heads
        * s.linear_key_dim
        * s.linear_value_dim
        * RECURRENT_STATE_BYTES,
        conv_state_elems=lin_layers * (2 * key_dim + value_dim) * (s.conv_kernel - 1) if s.is_hybrid else 0,
        attention_layers=a,
        linear_layers=lin_layers,
    )


def flops_per_token(s: ModelSpec, context: int) -> int:
    """Forward FLOPs to process one token with `context` tokens already in the cache.

    2 FLOPs per multiply-add of every active matrix that the token passes through (the input
    embedding is a lookup, not a product; a tied embedding still does its product as the output
    head), plus attention over the context (QK^T and AV: 4 * heads * head_dim per cached token
    per attention layer), plus the DeltaNet state update and read-out (about 3 multiply-adds per
    state element per linear-attention layer). Norms and activations are left out (<1%).
    """
    f = facts(s)
    matmul_params = f.params_active - (0 if s.tied else f.embedding_params)
    attention = f.attention_layers * 4 * s.heads * s.head_dim * context
    state = f.linear_layers * 6 * s.linear_value_heads * s.linear_key_dim * s.linear_value_dim
    return 2 * matmul_params + attention + state


def prefill_flops(s: ModelSpec, prompt_tokens: int, batch: int = 1) -> int:
    """Forward FLOPs of a prefill of `prompt_tokens` per sequence: every token through every layer,
    attending on average to half the prompt, and the output head once per sequence, since a prefill
    needs only the last position's logits (the harness's loop, llama.cpp and vLLM compute no more).
    Counting the head for every prompt token would overstate a small model's prefill: by a third for
    qwen3-0.6b, whose 151,936 x 1,024 head is a quarter of its per-token FLOPs."""
    head = 2 * s.vocab * s.hidden
    per_token = flops_per_token(s, prompt_tokens // 2)
    return batch * (prompt_tokens * (per_token - head) + head) if prompt_tokens else 0


def decode_step_bytes(s: ModelSpec, dtype: str, context: int, batch: int = 1) -> int:
    """Bytes a decode step reads by the common definition of MBU: active weights once, plus every
    sequence's cache."""
    f = facts(s)
    per_seq = f.kv_bytes_per_token(dtype) * context + f.recurrent_state_bytes + f.conv_state_bytes(dtype)
    return f.active_weight_bytes(dtype) + batch * per_seq


def least_decode_step_bytes(s: ModelSpec, dtype: str, context: int, batch: int = 1) -> int:
    """The fewest bytes a decode step can read: decode_step_bytes, less an untied input embedding,
    of which a step gathers one row per sequence (a tied one is read whole as the output head).
    The common definition of MBU counts the whole table (qwen3-8b: 16.4 GB a step, 15.1 GB at
    least; qwen3-30b-a3b: 9% more than the least), so a verdict that a claim breaks physics rests on
    this count, or a speed 5% past the common roofline would read as impossible when it is not."""
    common = decode_step_bytes(s, dtype, context, batch)
    if s.tied:
        return common
    per_param = weight_bytes_per_param(dtype)
    return common - int(facts(s).embedding_params * per_param) + int(batch * s.hidden * per_param)
