"""The harness's seeded model, exported to OpenVINO once and cached by content.

The graph (one, for prefill and decode alike) takes input_ids [batch, n], position_ids [batch, n]
and, per layer, the key and value caches [batch, kv_heads, past, head_dim] in fp32; it returns the
logits [batch, n, vocab] in fp32 and every layer's caches grown by the n new tokens. At load, each
cache's input and output become one of OpenVINO's states (make_stateful), kept between calls. A bf16 model
keeps bf16 weights and computes in bf16 inside; its caches are declared fp32 at the boundary (numpy has
no bfloat16), and the CPU keeps them in its inference precision (state_dtype reads which). It is traced from transformers' own Qwen modules by OpenVINO's converter
(openvino.convert_model) and saved as IR under chipbench's cache folder, keyed by the weights'
digest, the dtype, the OpenVINO version and this file's source.

Weight compression (the dtypes int8_sym, int8_asym, int4_sym, int4_asym) is NNCF's data-free
`compress_weights` applied to the fp32 export, OpenVINO's own tool for it, with NNCF's defaults for an
LLM: int4 in groups of 128 along each row (a narrower layer gets the largest group that divides
it) with the embedding and output head in int8_asym; every matrix of an int8 mode in that mode. It is cached
beside the export, keyed also by NNCF's version. `decompressed` reads the compressed weights back as
the runtime holds them, so the correctness gate's floor is what the compression did to this model.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

EXPORT_VERSION = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8).hexdigest()
PRECISION = {"fp32": "f32", "bf16": "bf16"}
COMPRESSIONS = ("int8_sym", "int8_asym", "int4_sym", "int4_asym")  # NNCF's names for its modes
GROUP_SIZE = 128  # NNCF's default group for int4
_COMPRESSED_TYPES = {"u8", "i8", "u4", "i4"}


@dataclass
class Compiled:
    compiled: object
    layers: int
    kv_dtype: object
    digest: str | None
    cached: bool
    weight_file_bytes: int  # the IR's weight file: every constant the runtime holds
    compression: str | None  # what compress_weights did, in words; None: uncompressed
    cache_dtype: str | None  # what the compiled model keeps the caches in (its states' precision)


@dataclass
class Exported:
    model: object  # openvino.Model, stateless
    layers: int
    digest: str | None
    cached: bool
    where: Path


def _cache_dir() -> Path:
    from chipbench.stash import cache_root

    return cache_root() / "openvino"


def _step_module(model, dtype):
    import torch
    from transformers import DynamicCache

    layers = model.config.num_hidden_layers

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, position_ids, past):
            cache = DynamicCache(config=self.model.config)
            for i in range(layers):  # the caches given, as the layers' own (no lazy empty start)
                layer = cache.layers[i]
                layer.keys, layer.values = past[2 * i].to(dtype), past[2 * i + 1].to(dtype)
                layer.is_initialized, layer.device, layer.dtype = True, past[0].device, dtype
            out = self.model(input_ids=input_ids, position_ids=position_ids, past_key_values=cache, use_cache=True)
            grown = []
            for i in range(layers):
                grown += [out.past_key_values.layers[i].keys.float(), out.past_key_values.layers[i].values.float()]
            return out.logits.float(), tuple(grown)

    return Step(), layers


def make_stateful(ov_model, layers: int) -> None:
    """Turns each layer's cache input and grown-cache output into one state OpenVINO keeps between
    calls (its own transformation, as optimum-intel applies it): a decode step then passes one token
    and its position, not every cache in and out. The graph keeps one output, the logits."""
    from openvino._offline_transformations import apply_make_stateful_transformation

    pairs = {}
    for k in range(2 * layers):
        past, present = ov_model.inputs[2 + k], ov_model.outputs[1 + k]
        past.get_tensor().set_names({f"past.{k}"})
        present.get_tensor().set_names({f"present.{k}"})
        pairs[f"past.{k}"] = f"present.{k}"
    apply_make_stateful_transformation(ov_model, pairs)


def export(spec, dtype: str, seed: int, layers_limit: int | None) -> Exported:
    """The harness's seeded model in `dtype` as OpenVINO IR, made once and cached by content; a
    compressed dtype is made from the fp32 export."""
    if dtype in COMPRESSIONS:
        return _compressed(spec, dtype, seed, layers_limit)
    import openvino as ov
    import torch

    from chipbench.models.build import build_random

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    built = build_random(spec, torch_dtype, "cpu", seed=seed, layers=layers_limit)
    model = built.module.eval()
    layers = model.config.num_hidden_layers
    key = hashlib.blake2b(
        json.dumps([spec.name, dtype, seed, layers_limit, built.digest, ov.__version__, EXPORT_VERSION]).encode(),
        digest_size=16,
    ).hexdigest()
    where = _cache_dir() / f"{spec.name}-{dtype}-s{seed}-{key}"
    xml = where / "model.xml"
    cached = xml.is_file() and built.digest is not None  # without a digest the cache cannot be trusted
    if cached:
        ov_model = ov.Core().read_model(xml)
    else:
        step, _ = _step_module(model, torch_dtype)
        batch, past, n = 2, 3, 4
        example = (
            torch.randint(0, spec.vocab, (batch, n)),
            torch.arange(past, past + n).expand(batch, n),
            tuple(torch.zeros(batch, spec.kv_heads, past, spec.head_dim) for _ in range(2 * layers)),
        )
        with torch.no_grad():
            ov_model = ov.convert_model(step, example_input=example)
        _save(ov_model, where)
    digest = built.digest  # the tensors the export was made from, as the harness built them
    del built, model
    _trim()
    return Exported(ov_model, layers, digest, cached, where)


def _save(ov_model, where: Path) -> None:
    import openvino as ov

    where.mkdir(parents=True, exist_ok=True)
    tmp = where / "model.part.xml"
    ov.save_model(ov_model, tmp, compress_to_fp16=False)  # the weights as built, not halved
    tmp.with_suffix(".bin").replace(where / "model.bin")
    tmp.replace(where / "model.xml")


def _trim() -> None:
    gc.collect()
    try:  # the torch build's pages back to the OS, so the process's resident set is the runtime's
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def _compressed(spec, dtype: str, seed: int, layers_limit: int | None) -> Exported:
    import openvino as ov

    base = export(spec, "fp32", seed, layers_limit)
    version = _nncf_version()
    where = base.where.with_name(f"{base.where.name}-{dtype}-nncf{version}")
    xml = where / "model.xml"
    if base.cached and xml.is_file():
        return Exported(ov.Core().read_model(xml), base.layers, base.digest, True, where)
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    nncf.set_log_level(logging.ERROR)  # its table and progress bar are not the benchmark's output
    options = {}
    if dtype.startswith("int4"):
        options = {
            "group_size": GROUP_SIZE,
            "ratio": 1.0,
            "advanced_parameters": AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST),
        }
    quiet = io.StringIO()  # its progress bar writes to the console whatever the log level
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        model = nncf.compress_weights(base.model, mode=nncf.CompressWeightsMode(dtype), **options)
    _save(model, where)
    return Exported(model, base.layers, base.digest, False, where)


def _nncf_version() -> str:
    try:
        return metadata.version("nncf")
    except metadata.PackageNotFoundError:
        from chipbench.errors import UsageError

        raise UsageError(
            "weight compression needs NNCF: pip install 'nncf>=3.0' (or the plugin's [compress] extra)"
        ) from None


def compression_summary(ov_model) -> str | None:
    """What the compressed weights are, read from the model itself: each mode's matrices and, for
    grouped ones, their group sizes. None when no weight is compressed."""
    kinds: dict[str, set] = {}
    for op in _compressed_constants(ov_model):
        shape = list(op.get_output_partial_shape(0).to_shape())
        kind = op.get_element_type().get_type_name()
        group = shape[-1] if len(shape) == 3 else None
        kinds.setdefault(kind, set()).add(group)
    if not kinds:
        return None
    parts = []
    for kind, groups in sorted(kinds.items()):
        grouped = sorted(g for g in groups if g)
        per = ("groups of " + "/".join(map(str, grouped))) if grouped else "per row"
        if None in groups and grouped:
            per += " and per row"
        parts.append(f"{kind} {per}")
    return ", ".join(parts)


def _compressed_constants(ov_model):
    for op in ov_model.get_ops():
        if (
            op.get_type_name() == "Constant"
            and op.get_element_type().get_type_name() in _COMPRESSED_TYPES
            and not op.get_friendly_name().endswith("zero_point")
            and len(op.get_output_partial_shape(0)) >= 2
        ):
            yield op


def decompressed(ov_model) -> dict:
    """{torch parameter name: fp32 numpy array} of every compressed weight, decompressed by OpenVINO
    itself: each weight's decompression subgraph (convert, zero point, scale, reshape) is evaluated
    on the CPU in fp32, exactly the values its matrix products consume."""
    import openvino as ov

    heads, names = [], []
    for op in _compressed_constants(ov_model):
        node = op
        while True:  # down the chain to the node whose output feeds the matrix product or gather
            users = [t.get_node() for t in node.output(0).get_target_inputs()]
            if len(users) != 1 or users[0].get_type_name() not in ("Convert", "Subtract", "Multiply", "Reshape"):
                break
            node = users[0]
        heads.append(node.output(0))
        names.append(op.get_friendly_name().removeprefix("self.model."))
    if not heads:
        return {}
    graph = ov.Model([ov.opset13.result(h) for h in heads], [], "decompressed")
    out = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request().infer({})
    return {name: np.asarray(out[i], dtype=np.float32) for i, name in enumerate(names)}


def compile_model(spec, dtype: str, seed: int, layers_limit: int | None, device: str) -> Compiled:
    import openvino as ov

    made = export(spec, dtype, seed, layers_limit)
    ov_model = made.model
    compression = compression_summary(ov_model) if dtype in COMPRESSIONS else None
    file_bytes = (made.where / "model.bin").stat().st_size
    make_stateful(ov_model, made.layers)
    # uncompressed: the dtype is the inference precision. Compressed: the device's own choice
    # (bf16 where the CPU has it, else f32), recorded as it is
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if dtype in PRECISION:
        config["INFERENCE_PRECISION_HINT"] = PRECISION[dtype]
    compiled = ov.Core().compile_model(ov_model, device, config)
    return Compiled(
        compiled, made.layers, np.float32, made.digest, made.cached, file_bytes, compression, state_dtype(compiled)
    )


_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def state_dtype(compiled) -> str | None:
    """The precision the compiled model keeps its states (the caches) in, as its runtime graph says:
    the states are declared fp32 at the graph's boundary, but the CPU keeps them in its inference
    precision (bf16 where it computes in bf16). None when the graph does not say, or says several."""
    seen = set()
    try:
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) == "MemoryInput" and "outputPrecisions" in info:
                seen.add(info["outputPrecisions"].astype(str))
    except Exception:  # a device whose runtime graph carries no such facts
        return None
    return _PRECISIONS.get(seen.pop()) if len(seen) == 1 else None
