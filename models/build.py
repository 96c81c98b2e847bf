"""Turn a ModelSpec into a transformers model: seeded random weights, or real local weights.

Random weights are built at memory speed: the module is allocated on its device with every init
function switched off (no per-module default initialisation), then every matrix is filled chunk by
chunk. A chunk is 2^22 random bytes from its own counter-seeded generator (numpy's SFC64, seeded
by (seed, parameter name, chunk number)), made on the host and copied to the device, one byte per
weight; the device then maps each byte r to (r - 127.5) / 4096. The 256 values (a uniform
distribution over [-0.031, 0.031], standard deviation 0.018, like the configs' initializer_range
of 0.02) are exact in bf16, fp16 and fp32, so a given seed gives bit-identical weights on every
device and in every dtype, chunks can be made in parallel, and a depth-reduced copy of a model
shares its first layers with the full one. The host never holds more than a few chunks beyond the
weights themselves. Weights made this way are labelled `random(seed=N, u8)`; before 2026-12 the
harness drew normal(0, 0.02) values (`random(seed=N)`), slower to make and not exact in bf16.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from chipbench.errors import UsageError
from chipbench.models.counts import facts
from chipbench.stash import cache_root
from chipbench.models.zoo import ModelSpec

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

INIT_STD = 0.02  # the published configs' initializer_range (the models' own init of vectors uses it)
CHUNK = 1 << 22  # weights per independently seeded chunk: part of the weights' definition
WEIGHTS_SCHEME = "u8"  # the random-weight scheme, in the record's `weights` label


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise UsageError(f"unknown dtype {name!r}; valid dtypes: {', '.join(DTYPES)}") from None


def hf_config(spec: ModelSpec):
    """The transformers config of `spec`, built from the published architecture values."""
    import transformers as tf

    common = dict(
        vocab_size=spec.vocab,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_pos,
        rms_norm_eps=1e-6,
        tie_word_embeddings=spec.tied,
        initializer_range=INIT_STD,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
    )
    moe = dict(
        num_experts=spec.experts,
        num_experts_per_tok=spec.top_k,
        moe_intermediate_size=spec.moe_inter,
        norm_topk_prob=True,
    )
    hybrid = dict(
        head_dim=spec.head_dim,
        layer_types=list(spec.layer_types),
        linear_num_key_heads=spec.linear_key_heads,
        linear_num_value_heads=spec.linear_value_heads,
        linear_key_head_dim=spec.linear_key_dim,
        linear_value_head_dim=spec.linear_value_dim,
        linear_conv_kernel_dim=spec.conv_kernel,
    )
    if spec.is_hybrid:
        common["rope_parameters"]["partial_rotary_factor"] = spec.partial_rotary
    f = spec.family
    if f == "qwen2":
        # Qwen2's config derives head_dim = hidden / heads; the zoo value must agree.
        assert spec.hidden // spec.heads == spec.head_dim, spec.name
        return tf.Qwen2Config(**common)
    if f == "qwen3":
        return tf.Qwen3Config(head_dim=spec.head_dim, **common)
    if f == "qwen3_moe":
        return tf.Qwen3MoeConfig(head_dim=spec.head_dim, decoder_sparse_step=1, mlp_only_layers=[], **moe, **common)
    if f == "qwen3_next":
        return tf.Qwen3NextConfig(
            shared_expert_intermediate_size=spec.shared_expert_inter,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            **moe,
            **hybrid,
            **common,
        )
    if f == "qwen3_5":
        return tf.Qwen3_5TextConfig(**hybrid, **common)
    if f == "qwen3_5_moe":
        common.pop("intermediate_size")
        return tf.Qwen3_5MoeTextConfig(
            shared_expert_intermediate_size=spec.shared_expert_inter, **moe, **hybrid, **common
        )
    raise AssertionError(f"no config builder for family {f}")


def model_class(spec: ModelSpec):
    import transformers as tf

    return {
        "qwen2": tf.Qwen2ForCausalLM,
        "qwen3": tf.Qwen3ForCausalLM,
        "qwen3_moe": tf.Qwen3MoeForCausalLM,
        "qwen3_next": tf.Qwen3NextForCausalLM,
        "qwen3_5": tf.Qwen3_5ForCausalLM,
        "qwen3_5_moe": tf.Qwen3_5MoeForCausalLM,
    }[spec.family]


@dataclass(frozen=True)
class BuiltModel:
    module: torch.nn.Module
    spec: ModelSpec
    dtype: torch.dtype
    weights: str  # "random(seed=N, u8)" or "local:<dir>"
    build_time_s: float  # allocation plus weight fill or load, wall clock
    digest: str | None = None  # weights_digest(): the tensors as built, or None where not computed


# what makes the seeded weights: this file's source, so a changed generator never reuses an old digest
_GENERATOR = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8).hexdigest()
DIGEST_CHUNK = 1 << 26  # elements copied to the host and hashed at a time


def weights_digest(model: torch.nn.Module, key: str) -> str | None:
    """BLAKE2b-256 over every tensor of the model's state dict in order (its name, dtype and shape,
    then its bytes): the digest of the weights a case ran, recorded as `weights_digest` and checked
    by bundles. Computed once per `key` (what determines the bytes: model, dtype, seed and the
    generator's source; a local directory's files) and kept in the cache folder, since hashing a
    large model takes seconds. CHIPBENCH_WEIGHTS_DIGEST=0 skips it (None)."""
    if os.environ.get("CHIPBENCH_WEIGHTS_DIGEST") == "0":
        return None
    store = cache_root() / "weights-digests.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.blake2b(digest_size=32)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            flat = t.detach().reshape(-1)
            for i in range(0, flat.numel(), DIGEST_CHUNK):
                part = flat[i : i + DIGEST_CHUNK].to("cpu").contiguous()
                h.update(part.view(torch.uint8).numpy())  # the bytes as they are (numpy has no bfloat16)
    known[key] = f"blake2b-256:{h.hexdigest()}"
    _store_digests(store, known)
    return known[key]


def file_digest(path: str | Path) -> str | None:
    """BLAKE2b-256 of a weights file (a GGUF), cached by its path, size and modification time."""
    if os.environ.get("CHIPBENCH_WEIGHTS_DIGEST") == "0":
        return None
    path = Path(path)
    st = path.stat()
    key = f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    store = cache_root() / "weights-digests.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        h = hashlib.blake2b(digest_size=32)
        with path.open("rb") as f:
            while block := f.read(1 << 24):
                h.update(block)
        known[key] = f"blake2b-256:{h.hexdigest()}"
        _store_digests(store, known)
    return known[key]


def _store_digests(store: Path, known: dict) -> None:
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f"{store.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=0, sort_keys=True))
        tmp.replace(store)
    except OSError:
        pass  # a read-only cache: computed again next time


def allocate(
    spec: ModelSpec, dtype: torch.dtype, device: str | torch.device = "cpu", layers: int | None = None
) -> torch.nn.Module:
    """The model's module with uninitialised weights (no init functions run).

    `layers` builds a depth-reduced copy (the first N layers), for references on small hosts.
    """
    from transformers import initialization as hf_init

    config = hf_config(spec)
    if layers is not None:
        config.num_hidden_layers = layers
        if hasattr(config, "layer_types"):
            config.layer_types = config.layer_types[:layers]
    cls = model_class(spec)
    with hf_init.no_init_weights(), torch.device(device):
        model = cls._from_config(config, dtype=dtype)
    model.tie_weights()  # no_init_weights also skips the tying that post_init would do
    model.eval()
    model.requires_grad_(False)
    return model


def _tensor_seed(seed: int, name: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def chunk_bytes(key: int, chunk: int, n: int):
    """The n random bytes of one chunk of a tensor (numpy uint8, little-endian byte order)."""
    import numpy as np

    gen = np.random.SFC64(np.random.SeedSequence([key, chunk]))
    raw = gen.random_raw((n + 7) // 8).astype("<u8", copy=False)
    return raw.view(np.uint8)[:n]


def _fill_chunk_(flat: torch.Tensor, key: int, chunk: int) -> None:
    """Chunk `chunk` of a flat tensor: bytes made on the host, mapped to weights on its device."""
    start = chunk * CHUNK
    part = flat[start : start + CHUNK]
    part.copy_(torch.from_numpy(chunk_bytes(key, chunk, part.numel())))  # exact: 0..255
    part.sub_(127.5).mul_(1 / 4096)  # exact in bf16, fp16 and fp32: (r - 127.5) * 2^-12


@torch.no_grad()
def fill_random_(model: torch.nn.Module, seed: int, threads: int | None = None) -> None:
    """Seeded, deterministic, device- and dtype-independent random weights for an allocated model."""
    named = list(model.named_parameters())
    # Projections, embeddings, experts and convolutions are drawn at random; vectors (norm
    # weights, biases, DeltaNet's A_log / dt_bias) take the model's own init below.
    big = [(n, p) for n, p in named if p.ndim >= 2]
    small = [(n, p) for n, p in named if p.ndim < 2]
    tasks = [(p.view(-1), _tensor_seed(seed, n), c) for n, p in big for c in range(-(-p.numel() // CHUNK))]
    workers = threads or max(1, torch.get_num_threads())
    with ThreadPoolExecutor(max_workers=workers) as pool:  # torch and numpy release the GIL while filling
        list(pool.map(lambda t: _fill_chunk_(*t), tasks))
    for _, p in big:
        p._is_hf_initialized = True  # transformers' init functions skip flagged tensors
    # The vectors take the model's own init (ones / zeros for norms, zero biases, DeltaNet decay
    # ranges), computed on the CPU under a seeded generator so every device gets equal values.
    homes = {n: p.data for n, p in small}
    for _, p in small:
        p.data = torch.empty(p.shape, dtype=p.dtype, device="cpu")
    torch.manual_seed(seed)
    model.initialize_weights()
    for n, p in small:
        homes[n].copy_(p.data)
        p.data = homes[n]
        p._is_hf_initialized = True


HOST_MARGIN = 0.9  # of the host's memory a model built on it may take (as chipbench.backends.distributed.FIT_MARGIN)


def refuse_host_build(
    spec: ModelSpec,
    dtype: str,
    layers: int | None,
    purpose: str,
    memory_bytes: int | None = None,
    where: str = "this host",
) -> None:
    """An exporter builds the whole model on the host before writing it (a GGUF file, a model
    directory): a model that cannot fit the host's memory is refused before anything is allocated,
    since the kernel's OOM killer would take the whole run with it, every other case's results too.
    `memory_bytes` / `where`: another device's memory instead of the host's. Depth-reduced copies
    (`layers`) are sized by their callers."""

    if layers is not None:
        return
    need, memory = facts(spec).weight_bytes(dtype), memory_bytes or psutil.virtual_memory().total
    if need > HOST_MARGIN * memory:
        gib = 2**30
        raise MemoryError(
            f"{spec.name}: {purpose} needs its {dtype} weights on {'the host' if where == 'this host' else where}: "
            f"{need / gib:.1f} GiB, more than {HOST_MARGIN:.0%} of {where}'s {memory / gib:.1f} GiB of memory"
        )


def build_random(
    spec: ModelSpec, dtype: torch.dtype, device: str | torch.device = "cpu", seed: int = 0, layers: int | None = None
) -> BuiltModel:
    model_class(spec)  # import transformers' modeling module outside the timed build
    start = time.perf_counter()
    model = allocate(spec, dtype, device, layers=layers)
    fill_random_(model, seed)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    took = time.perf_counter() - start
    key = f"random:{spec.name}:{dtype}:seed{seed}:layers{layers}:{WEIGHTS_SCHEME}:{_GENERATOR}"
    return BuiltModel(model, spec, dtype, f"random(seed={seed}, {WEIGHTS_SCHEME})", took, weights_digest(model, key))


def load_local(
    spec: ModelSpec, directory: str | Path, dtype: torch.dtype, device: str | torch.device = "cpu"
) -> BuiltModel:
    """Real weights from a local directory of safetensors files; nothing is fetched, no code runs."""
    from safetensors import safe_open

    model_class(spec)
    start = time.perf_counter()
    files = check_weights_dir(spec, directory)
    root = Path(directory)
    model = allocate(spec, dtype, device)
    expected = dict(model.named_parameters())
    # Tied embeddings: the checkpoint may or may not carry lm_head.weight.
    seen: set[str] = set()
    experts: dict[str, set] = {}  # fused expert parameter -> the (expert, projection) pieces copied into it
    for path in files:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                piece = _EXPERT_KEY.match(key)
                if key not in expected and piece:  # published MoE checkpoints: one tensor per expert
                    _copy_expert(expected, piece, f.get_tensor(key), experts, root, spec)
                    continue
                if key not in expected:
                    if key.startswith("mtp.") or (spec.tied and key == "lm_head.weight"):
                        continue  # multi-token-prediction heads transformers ignores
                    raise UsageError(
                        f"weights in {str(root)!r} do not match {spec.name}: unexpected tensor {key!r} in {path.name}"
                    )
                tensor = f.get_tensor(key)
                if tuple(tensor.shape) != tuple(expected[key].shape):
                    raise UsageError(
                        f"weights in {str(root)!r} do not match {spec.name}: {key!r} has shape "
                        f"{tuple(tensor.shape)}, the architecture needs {tuple(expected[key].shape)}"
                    )
                with torch.no_grad():
                    expected[key].copy_(tensor)
                seen.add(key)
    for fused, pieces in experts.items():  # a fused parameter counts once every expert filled it
        if len(pieces) == expected[fused].shape[0] * (2 if fused.endswith("gate_up_proj") else 1):
            seen.add(fused)
    missing = [k for k in expected if k not in seen]
    if missing:
        raise UsageError(
            f"weights in {str(root)!r} do not match {spec.name}: {len(missing)} tensors missing, first {missing[0]!r}"
        )
    took = time.perf_counter() - start
    stamp = ",".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in sorted(root.glob("*.safetensors")))
    key = f"local:{root.resolve()}:{dtype}:{hashlib.blake2b(stamp.encode(), digest_size=16).hexdigest()}"
    return BuiltModel(model, spec, dtype, f"local:{root}", took, weights_digest(model, key))


_EXPERT_KEY = re.compile(r"^(?P<prefix>.*\.mlp\.experts)\.(?P<e>\d+)\.(?P<proj>gate_proj|up_proj|down_proj)\.weight$")


def _copy_expert(expected: dict, piece, tensor: torch.Tensor, experts: dict, root: Path, spec: ModelSpec) -> None:
    """One expert's projection from a per-expert checkpoint, copied into transformers' fused expert
    parameters: gate_up_proj [experts, 2 x inter, hidden] (gate first, as the module splits it)
    and down_proj [experts, hidden, inter]. No extra copy of the experts is held."""
    prefix, e, proj = piece["prefix"], int(piece["e"]), piece["proj"]
    fused = f"{prefix}.{'down_proj' if proj == 'down_proj' else 'gate_up_proj'}"
    if fused not in expected or e >= expected[fused].shape[0]:
        raise UsageError(f"weights in {str(root)!r} do not match {spec.name}: unexpected tensor {piece.string!r}")
    target = expected[fused][e]
    if proj != "down_proj":
        half = target.shape[0] // 2
        target = target[:half] if proj == "gate_proj" else target[half:]
    if tuple(tensor.shape) != tuple(target.shape):
        raise UsageError(
            f"weights in {str(root)!r} do not match {spec.name}: {piece.string!r} has shape "
            f"{tuple(tensor.shape)}, the architecture needs {tuple(target.shape)}"
        )
    with torch.no_grad():
        target.copy_(tensor)
    experts.setdefault(fused, set()).add((e, proj))


def check_weights_dir(spec: ModelSpec, directory: str | Path) -> list[Path]:
    """The directory's safetensors files, after checking it can hold `spec`'s weights (cheap:
    no tensor is read). Raises a one-line UsageError otherwise."""
    if not str(directory).strip():
        raise UsageError(
            f"the weights directory is empty; give a local directory holding {spec.name}'s *.safetensors files"
        )
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(
            f"weights directory {str(root)!r} does not exist; give a local directory "
            f"holding {spec.name}'s *.safetensors files"
        )
    files = sorted(root.glob("*.safetensors"))
    if not files:
        others = sorted(p.name for p in root.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt"})
        extra = f" (found {', '.join(others[:3])}: pickle formats are not read)" if others else ""
        raise UsageError(f"no *.safetensors files in {str(root)!r}{extra}; only safetensors weights are loaded")
    _check_config_json(spec, root)
    return files


_CONFIG_KEYS = {
    "hidden_size": "hidden",
    "num_hidden_layers": "layers",
    "num_attention_heads": "heads",
    "num_key_value_heads": "kv_heads",
    "vocab_size": "vocab",
}


CONFIG_MAX_BYTES = 16 * 2**20  # a model's config.json is kilobytes; a bigger one is not a config


def _check_config_json(spec: ModelSpec, root: Path) -> None:
    """The directory's config.json, if any, must describe `spec`: a one-line UsageError for one that
    is not a regular file, too big, not UTF-8 JSON, not an object, or another architecture."""
    path = root / "config.json"
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():  # a folder, a FIFO (whose read would hang), a device, a dangling link
        raise UsageError(f"{path} is not a regular file; a weights directory's config.json is a JSON file")
    if path.stat().st_size > CONFIG_MAX_BYTES:
        raise UsageError(f"{path} is {path.stat().st_size} bytes, not a model config (at most {CONFIG_MAX_BYTES})")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise UsageError(
            f"{path}: not valid JSON ({e if isinstance(e, json.JSONDecodeError) else 'nested too deep'})"
        ) from None
    except OSError as e:
        raise UsageError(f"{path} cannot be read ({e.strerror or e})") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"{path}: a model config is a JSON object, this is a {type(cfg).__name__}")
    text = cfg.get("text_config", cfg)
    if not isinstance(text, dict):
        raise UsageError(f"{path}: text_config is a {type(text).__name__}, not an object of the model's sizes")
    for key, attr in _CONFIG_KEYS.items():
        if key in text and text[key] != getattr(spec, attr):
            raise UsageError(
                f"{path} does not match {spec.name}: {key} is {text[key]!r}, the architecture has {getattr(spec, attr)}"
            )
