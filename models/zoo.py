"""The Qwen model zoo: every model by a short name, with its published architecture values.

Values are those of each model's published config.json (see shared/reference/qwen-architectures.md).
A ModelSpec is plain data; models/build.py turns it into a transformers config and a module,
models/counts.py derives parameter, byte and FLOP counts from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from chipbench.errors import UsageError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # qwen2 | qwen3 | qwen3_moe | qwen3_next | qwen3_5 | qwen3_5_moe
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_pos: int
    rope_theta: float
    tied: bool
    intermediate: int  # dense MLP width (also the unused width of all-MoE models)
    qkv_bias: bool = False  # Qwen2/2.5 only
    # mixture of experts
    experts: int = 0
    top_k: int = 0
    moe_inter: int = 0
    shared_expert_inter: int = 0
    # hybrid (Gated DeltaNet + gated attention) models
    full_attention_interval: int = 0  # every Nth layer is full attention; 0 = all are
    partial_rotary: float = 1.0
    linear_key_heads: int = 0
    linear_value_heads: int = 0
    linear_key_dim: int = 0
    linear_value_dim: int = 0
    conv_kernel: int = 0
    tiny: bool = False
    notes: str = ""

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_hybrid(self) -> bool:
        return self.full_attention_interval > 0

    @property
    def layer_types(self) -> tuple[str, ...]:
        if not self.is_hybrid:
            return ("full_attention",) * self.layers
        n = self.full_attention_interval
        return tuple("full_attention" if (i + 1) % n == 0 else "linear_attention" for i in range(self.layers))

    @property
    def attention_layers(self) -> int:
        return self.layer_types.count("full_attention")

    @property
    def linear_layers(self) -> int:
        return self.layer_types.count("linear_attention")


def _dense_qwen3(name, hidden, inter, layers, heads, tied):
    return ModelSpec(
        name=name,
        family="qwen3",
        hidden=hidden,
        intermediate=inter,
        layers=layers,
        heads=heads,
        kv_heads=8,
        head_dim=128,
        vocab=151936,
        max_pos=40960,
        rope_theta=1e6,
        tied=tied,
    )


_HYBRID = dict(
    head_dim=256,
    partial_rotary=0.25,
    rope_theta=1e7,
    full_attention_interval=4,
    linear_key_heads=16,
    linear_value_heads=32,
    linear_key_dim=128,
    linear_value_dim=128,
    conv_kernel=4,
    tied=False,
)

_FULL: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="qwen2.5-0.5b",
        family="qwen2",
        hidden=896,
        intermediate=4864,
        layers=24,
        heads=14,
        kv_heads=2,
        head_dim=64,
        vocab=151936,
        max_pos=32768,
        rope_theta=1e6,
        tied=True,
        qkv_bias=True,
    ),
    ModelSpec(
        name="qwen2.5-7b",
        family="qwen2",
        hidden=3584,
        intermediate=18944,
        layers=28,
        heads=28,
        kv_heads=4,
        head_dim=128,
        vocab=152064,
        max_pos=131072,
        rope_theta=1e6,
        tied=False,
        qkv_bias=True,
    ),
    _dense_qwen3("qwen3-0.6b", 1024, 3072, 28, 16, True),
    _dense_qwen3("qwen3-1.7b", 2048, 6144, 28, 16, True),
    _dense_qwen3("qwen3-4b", 2560, 9728, 36, 32, True),
    _dense_qwen3("qwen3-8b", 4096, 12288, 36, 32, False),
    _dense_qwen3("qwen3-14b", 5120, 17408, 40, 40, False),
    _dense_qwen3("qwen3-32b", 5120, 25600, 64, 64, False),
    ModelSpec(
        name="qwen3-30b-a3b",
        family="qwen3_moe",
        hidden=2048,
        intermediate=6144,
        layers=48,
        heads=32,
        kv_heads=4,
        head_dim=128,
        vocab=151936,
        max_pos=40960,
        rope_theta=1e6,
        tied=False,
        experts=128,
        top_k=8,
        moe_inter=768,
    ),
    ModelSpec(
        name="qwen3-235b-a22b",
        family="qwen3_moe",
        hidden=4096,
        intermediate=12288,
        layers=94,
        heads=64,
        kv_heads=4,
        head_dim=128,
        vocab=151936,
        max_pos=40960,
        rope_theta=1e6,
        tied=False,
        experts=128,
        top_k=8,
        moe_inter=1536,
    ),
    ModelSpec(
        name="qwen3-next-80b-a3b",
        family="qwen3_next",
        hidden=2048,
        intermediate=5120,
        layers=48,
        heads=16,
        kv_heads=2,
        vocab=151936,
        max_pos=262144,
        experts=512,
        top_k=10,
        moe_inter=512,
        shared_expert_inter=512,
        **_HYBRID,
    ),
    ModelSpec(
        name="qwen3.5-9b",
        family="qwen3_5",
        hidden=4096,
        intermediate=12288,
        layers=32,
        heads=16,
        kv_heads=4,
        vocab=248320,
        max_pos=262144,
        **_HYBRID,
    ),
    ModelSpec(
        name="qwen3.5-27b",
        family="qwen3_5",
        hidden=5120,
        intermediate=17408,
        layers=64,
        heads=24,
        kv_heads=4,
        vocab=248320,
        max_pos=262144,
        **_HYBRID,
    ),
    ModelSpec(
        name="qwen3.5-35b-a3b",
        family="qwen3_5_moe",
        hidden=2048,
        intermediate=512,
        layers=40,
        heads=16,
        kv_heads=2,
        vocab=248320,
        max_pos=262144,
        experts=256,
        top_k=8,
        moe_inter=512,
        shared_expert_inter=512,
        **_HYBRID,
    ),
)


def _tiny(base: ModelSpec, name: str, **over) -> ModelSpec:
    """Same class and structure as `base`, small widths: fast enough for unit tests."""
    small = dict(hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16, vocab=512, max_pos=4096, tiny=True)
    if base.is_moe:
        small.update(experts=8, top_k=2, moe_inter=32)
        if base.shared_expert_inter:
            small.update(shared_expert_inter=32)
    if base.is_hybrid:
        small.update(
            linear_key_heads=2, linear_value_heads=4, linear_key_dim=16, linear_value_dim=16, layers=4
        )  # 3 DeltaNet + 1 attention
    else:
        small.update(layers=2)
    small.update(over)
    return replace(base, name=name, notes=f"tiny variant of {base.name}", **small)


_BY_NAME = {s.name: s for s in _FULL}
_TINY: tuple[ModelSpec, ...] = (
    _tiny(_BY_NAME["qwen2.5-0.5b"], "tiny-qwen2.5"),
    _tiny(_BY_NAME["qwen3-0.6b"], "tiny-qwen3"),
    _tiny(_BY_NAME["qwen3-8b"], "tiny-qwen3-untied"),
    _tiny(_BY_NAME["qwen3-30b-a3b"], "tiny-qwen3-moe"),
    _tiny(_BY_NAME["qwen3-next-80b-a3b"], "tiny-qwen3-next"),
    _tiny(_BY_NAME["qwen3.5-9b"], "tiny-qwen3.5"),
    _tiny(_BY_NAME["qwen3.5-35b-a3b"], "tiny-qwen3.5-moe"),
)

MODELS: dict[str, ModelSpec] = {s.name: s for s in (*_FULL, *_TINY)}


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}") from None
