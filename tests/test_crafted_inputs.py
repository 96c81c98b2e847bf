"""Crafted inputs are one line and a non-zero exit, never a traceback or a hang: weights-directory
configs that are not what they claim, claims nested past any parser's depth, peaks past a float's
range, sizes below one, an empty path."""

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chipbench.cli import main
from chipbench.errors import UsageError
from chipbench.judging.chips import user_chip
from chipbench.judging.claims import load_claims
from chipbench.models.build import check_weights_dir
from chipbench.models.zoo import get_model
from tests.test_fuzz import FUZZ


@pytest.mark.parametrize(
    "config, says",
    [
        (b"[1, 2, 3]", "a model config is a JSON object, this is a list"),
        (b'{"text_config": 5}', "text_config is a int"),
        (b'{"hidden_size": "\xff\xfe"}', "not UTF-8 text (byte 0xff"),
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
        (b'{"hidden_size": 12}', "does not match tiny-qwen3: hidden_size is 12"),
        (b"{", "not valid JSON"),
    ],
)
def test_a_weights_directorys_config_is_checked_as_data(tmp_path, config, says):
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_bytes(config)
    with pytest.raises(UsageError, match=None) as e:
        check_weights_dir(get_model("tiny-qwen3"), tmp_path)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling link"])
def test_a_config_that_is_no_regular_file_is_refused_without_reading_it(tmp_path, kind):
    (tmp_path / "model.safetensors").write_bytes(b"")
    config = tmp_path / "config.json"
    if kind == "folder":
        config.mkdir()
    elif kind == "fifo":
        os.mkfifo(config)  # a read would wait for a writer forever
    else:
        config.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(UsageError, match="is not a regular file"):
        check_weights_dir(get_model("tiny-qwen3"), tmp_path)


def test_claims_nested_past_the_parsers_depth_are_one_line(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text("a = " + "[" * 100000 + "]" * 100000 + "\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_claims(path)


@pytest.mark.parametrize("value", [float("1e309"), float("nan"), 0.0, -3.0])
def test_peaks_must_be_finite_and_positive(value):
    with pytest.raises(UsageError, match="finite positive number"):
        user_chip(None, value)
    with pytest.raises(UsageError, match="finite positive number"):
        user_chip(value, None)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["selftest", "--long-prompt", "-5"], "--long-prompt must be a number of tokens >= 1"),
        (["run", "--model", "tiny-qwen3", "--weights", ""], "the weights directory is empty"),
        (["run", "--model", "tiny-qwen3", "--peak-tflops", "1e309"], "finite positive number"),
    ],
)
def test_bad_sizes_and_paths_on_the_command_line_are_one_line(capsys, argv, says):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


def test_any_json_as_a_weights_config_is_accepted_or_one_line(tmp_path_factory):
    """Fuzzed: any JSON document (and any bytes) as config.json passes or raises a one-line UsageError."""
    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3), max_leaves=12)  # fmt: skip
    keys = st.sampled_from(["hidden_size", "num_hidden_layers", "vocab_size", "text_config", "x"])
    configs = values | st.dictionaries(keys, values, max_size=4)
    spec = get_model("tiny-qwen3")

    @FUZZ
    @given(configs.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64))
    def check(data):
        root = tmp_path_factory.mktemp("w")
        (root / "model.safetensors").write_bytes(b"")
        (root / "config.json").write_bytes(data)
        try:
            check_weights_dir(spec, root)
        except UsageError as e:
            assert "\n" not in str(e)

    check()


def _benchmark_json(rec: dict) -> dict:
    return {
        "machine_info": {"node": "x"},
        "benchmarks": [
            {"name": "test_case[cpu-x]", "stats": {"mean": 0.1}, "extra_info": {"chipbench_records": [rec]}}
        ],
    }


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def test_any_pytest_benchmark_json_is_read_or_one_line(tmp_path_factory):
    """Fuzzed: a pytest-benchmark JSON file whose parts are replaced by any JSON (the benchmarks,
    one benchmark, its extra_info, the embedded records, one field of a record) is read, or refused
    in one line naming the file."""
    from chipbench.publishing.record import read_records
    from tests.records import make_record

    rec = make_record()
    paths = [("benchmarks",), ("benchmarks", 0), ("benchmarks", 0, "extra_info"),
             ("benchmarks", 0, "extra_info", "chipbench_records"), ("benchmarks", 0, "extra_info", "chipbench_records", 0)]  # fmt: skip
    fields = st.sampled_from(sorted(rec))

    @FUZZ
    @given(st.sampled_from(paths), _json, st.none() | fields)
    def check(where, value, field):
        doc = _benchmark_json(dict(rec))
        target = doc
        for key in where[:-1]:
            target = target[key]
        if field is not None and where[-1] == 0 and len(where) == 5:
            target[0][field] = value  # one field of the embedded record
        else:
            target[where[-1]] = value
        path = tmp_path_factory.mktemp("bj") / "bench.json"
        path.write_text(json.dumps(doc))
        try:
            out = read_records(path)
        except UsageError as e:
            assert "\n" not in str(e) and str(path) in str(e)
        else:
            assert all(isinstance(r, dict) for r in out)

    check()


def test_any_suite_options_plan_or_are_one_line():
    """Fuzzed: the values `chipbench run` and `pytest --benchmark` take (as typed on the command
    line, any text) plan a suite or are refused in one line, before anything runs."""
    from chipbench.backends.registry import discover
    from chipbench.measuring.suite import plan, suite_options

    entries = discover()
    text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
        ["cpu", "tiny-qwen3", "fp32", "bf16", "tg4", "pp8+tg4", "0", "-1", "1,2", "eager", "compiled", "nope", ""]
    )
    ints = st.none() | st.integers(-3, 1000)

    @FUZZ
    @given(st.fixed_dictionaries({
        "backend": st.none() | text, "model": st.none() | text, "dtype": st.none() | text,
        "workload": st.none() | text, "batch": text, "mode": st.none() | text, "weights": st.none() | text,
        "rounds": ints, "warmup": st.integers(-2, 5), "seed": st.integers(0, 5), "repeats": st.integers(-1, 3),
        "soak": st.none() | st.floats(-1, 100),
    }))  # fmt: skip
    def check(values):
        try:
            plan(suite_options(values.get), dict(entries))
        except UsageError as e:
            assert "\n" not in str(e)

    check()


def test_any_serving_sweep_options_give_levels_or_one_line():
    """Fuzzed: `chipbench serve`'s load options (levels as typed, any numbers) make checked load
    levels or are refused in one line, before any request is sent."""
    from types import SimpleNamespace

    from chipbench.commands.serve import _levels

    text = (
        st.none()
        | st.text(st.characters(codec="utf-8"), max_size=10)
        | st.sampled_from(["1,2,4", "0.5,1", "0", "-1", "inf", "nan", "1e309"])
    )
    nums = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 10**6)

    @FUZZ
    @given(
        text,
        text,
        st.integers(-3, 100),
        st.integers(-3, 5000),
        st.integers(-3, 5000),
        nums,
        nums,
        nums,
        st.integers(-2, 4),
    )
    def check(concurrency, rate, requests, prompt, gen, max_duration, slo_ttft, slo_tpot, repeats):
        args = SimpleNamespace(concurrency=concurrency, rate=rate, requests=requests, prompt=prompt, gen=gen, seed=0,
                               max_duration=max_duration, slo_ttft=slo_ttft, slo_tpot=slo_tpot, repeats=repeats)  # fmt: skip
        try:
            levels = _levels(args)
        except UsageError as e:
            assert "\n" not in str(e)
        else:
            assert levels and all(0 < x.max_duration_s < float("inf") and x.requests > 0 for x in levels)

    check()
