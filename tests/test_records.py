"""Result records: documented fields, one flushed line per case, nothing lost on interruption."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chipbench.errors import UsageError
from chipbench.publishing.record import FIELDS, SCHEMA_VERSION, RecordWriter, is_documented, load_records
from chipbench.judging.trial import run_case
from chipbench.measuring.runner import Case
from chipbench.measuring.workload import parse_workload

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def record():
    from chipbench.backends.cpu import create

    return run_case(create(), Case("cpu", "tiny-qwen3", "fp32", parse_workload("pp8+tg4"), rounds=2))


def test_every_field_of_a_record_is_documented(record):
    undocumented = [k for k in record if not is_documented(k)]
    assert not undocumented


def test_the_docs_document_every_field():
    from chipbench.publishing.record import fields_markdown

    page = (ROOT / "docs" / "records.md").read_text()
    assert fields_markdown() in page  # regenerate the block with chipbench.publishing.record.fields_markdown()
    assert all(f"`{f}`" in page for f in FIELDS)


def test_records_carry_environment_and_provenance(record):
    assert record["schema_version"] == SCHEMA_VERSION
    for key in (
        "device_name",
        "env_torch",
        "env_transformers",
        "env_cpu_model",
        "env_cpu_cores",
        "harness_version",
        "timestamp_utc",
        "seed",
        "exec_path",
    ):
        assert record[key] is not None, key


def test_written_records_load_into_one_dataframe(tmp_path, record):
    w = RecordWriter(tmp_path / "a" / "run.jsonl")
    w.write(record)
    w.write({**record, "record_id": "second"})
    RecordWriter(tmp_path / "b.jsonl").write(record)
    df = load_records(tmp_path)  # a directory: every *.jsonl below it
    assert len(df) == 3 and set(df["model"]) == {"tiny-qwen3"}
    assert df["decode_tok_per_s_median"].notna().all()


def test_non_finite_numbers_are_written_as_null(tmp_path):
    path = tmp_path / "r.jsonl"
    RecordWriter(path).write({"schema_version": SCHEMA_VERSION, "x": float("nan"), "y": [1.0, float("inf")]})
    assert json.loads(path.read_text()) == {"schema_version": SCHEMA_VERSION, "x": None, "y": [1.0, None]}


def test_a_malformed_line_is_named_by_file_and_line(tmp_path, record):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n{oops\n" + json.dumps(record) + "\n")
    with pytest.raises(UsageError, match=r"bad.jsonl:2: not a JSON record"):
        load_records(path)


def test_malformed_lines_can_be_skipped_with_a_warning(tmp_path, record):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n{oops\n" + json.dumps({"schema_version": 1}) + "\n")
    warnings = []
    from chipbench.publishing.record import read_records

    assert len(read_records(path, on_error="skip", warn=warnings.append)) == 1
    assert "bad.jsonl:2: not a JSON record" in warnings[0]
    assert "bad.jsonl:3: field record_id: is required" in warnings[1]


def test_an_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="no record files"):
        load_records(tmp_path)


def test_an_unknown_schema_version_is_refused(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"schema_version": 99}) + "\n")
    with pytest.raises(UsageError, match="schema_version 99 is not supported"):
        load_records(path)


def test_a_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_records(tmp_path / "none.jsonl")


KILLED_RUN = """
import os, signal, sys
from chipbench.backends.cpu import create
from chipbench.publishing.record import RecordWriter
from chipbench.judging.trial import run_case
from chipbench.measuring.runner import Case
from chipbench.measuring.workload import parse_workload

class DiesMidCase:
    def __init__(self):
        self.inner = create(); self.name = "cpu"
    def __getattr__(self, a):
        return getattr(self.inner, a)
    def generate(self, handle, prompt, n, on_token):
        if handle.spec.name == "tiny-qwen3-moe":
            os.kill(os.getpid(), signal.SIGKILL)  # power cut in the middle of the third case
        return self.inner.generate(handle, prompt, n, on_token)

writer = RecordWriter(sys.argv[1])
for model in ("tiny-qwen3", "tiny-qwen2.5", "tiny-qwen3-moe", "tiny-qwen3.5"):
    writer.write(run_case(DiesMidCase(), Case("cpu", model, "fp32", parse_workload("tg4"), rounds=1)))
"""


def test_an_interrupted_run_keeps_every_finished_record(tmp_path):
    out = tmp_path / "run.jsonl"
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(out)], cwd=ROOT, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    df = load_records(out)
    assert list(df["model"]) == ["tiny-qwen3", "tiny-qwen2.5"] and (df["status"] == "ok").all()


def test_field_names_carry_their_units():
    unitless_ok = re.compile(
        r"^(schema_version|record_id|status|error|traceback|backend|backend_kind|device_name|"
        r"model|family|dtype|weights|workload|kind|exec_path|linear_attn_path|"
        r"peak_mem_kind|env_.*|harness_version|git_commit|timestamp_utc|seed|command|rerun|"
        r"chip|chip_confidence|spec_check|roofline_flag|correct|correctness_reference|"
        r"correctness_note|backend_dist|backend_dist_version|series_id|trial_index|ab_id|ab_arm|ab_pair|ab_position|ab_label|"
        r"trial_process|engine|engine_version|stack|parallel|host_loaded|host_bound|host_load_note|exec_note|graph_breaks|cuda_graphs|compile_flags|compile_cache|prefill_path|timing_selftest|telemetry_sources|throttle_reasons|telemetry_not_metered|timing_method|energy_scope|weights_digest|energy_meter|energy_domain|energy_check|host_energy_meter|host_energy_domain|host_energy_check|host_energy_scope|"
        r"serve_errors|serve_partial|prefix_caching|ceiling_matmul_dtype|ceiling_kept_from|ceiling_revalidation|rounds_rule|rounds_reason|dtype_reason|prefix_cached_fraction|loadgen_scenario|loadgen_valid|loadgen_early_stopping|loadgen_result|loadgen_checks|loadgen_recommendations|loadgen_log_dir|serve_driver|driver_log|serve_prompts|client_capacity_share|client_bound|client_capacity_note|client_contends|client_cpu_note|import_tool|import_tool_version|import_file|import_sha256|import_missing|import_note)$"
    )
    for name, (_, unit, _) in FIELDS.items():
        assert unit or unitless_ok.match(name), name
        if unit == "s":
            assert name.endswith("_s"), name
        if unit == "bytes":
            assert "bytes" in name, name


def test_an_empty_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UsageError, match="no records in .*empty.jsonl"):
        load_records(tmp_path / "empty.jsonl")


def test_another_suites_pytest_benchmark_file_is_named_not_misread(tmp_path, record):
    from chipbench.publishing.record import read_records

    path = tmp_path / "bench.json"
    path.write_text(
        json.dumps(
            {
                "benchmarks": [
                    {"name": "test_sort", "extra_info": {}},
                    {"name": "test_case", "extra_info": {"chipbench_record": record}},
                ]
            }
        )
    )
    warnings = []
    assert len(read_records(path, warn=warnings.append)) == 1
    assert "1 benchmark(s) without a chipbench record" in warnings[0]


# --- strict records: the declared schema ---------------------------------------------------------


def test_a_write_never_glues_a_record_to_a_partial_line(tmp_path, record):
    path = tmp_path / "r.jsonl"
    RecordWriter(path).write(record)
    with path.open("a") as f:
        f.write('{"schema_version": 2, "record_id": "frag')  # a full disk cut the last write short
    RecordWriter(path).write({**record, "record_id": "next"})
    warnings = []
    from chipbench.publishing.record import read_records

    got = read_records(path, on_error="skip", warn=warnings.append)
    assert [r["record_id"] for r in got] == [record["record_id"], "next"]
    assert len(warnings) == 1 and "r.jsonl:2: not a JSON record" in warnings[0]
    with pytest.raises(
        UsageError,
        match=r"r.jsonl:2: not a JSON record: .*; the line is cut short \(a run stopped "
        r"while writing it\?\): --on-error skip reads the file's other records",
    ):
        read_records(path)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"batch": "1"}, "field batch: Input should be a valid integer (got '1')"),
        ({"batch": 1.5}, "field batch: Input should be a valid integer"),
        ({"batch": 0}, "field batch: Input should be greater than or equal to 1"),
        ({"ttft_s_stdev": -0.1}, "field ttft_s_stdev: Input should be greater than or equal to 0"),
        ({"decode_tok_per_s_samples": [1.0, "fast"]}, "field decode_tok_per_s_samples.1:"),
        ({"token_times_s": [[0.1, -1.0]]}, "field token_times_s.0.1: Input should be greater than or equal to 0"),
        ({"status": "great"}, "field status: Input should be 'ok' or 'failed'"),
        ({"correct": "yes"}, "field correct: Input should be a valid boolean"),
        ({"tpot_s_ci95_low": 2.0, "tpot_s_ci95_high": 1.0}, "tpot_s_ci95_low: 2.0 is above tpot_s_ci95_high 1.0"),
        ({"speed": 3}, "unknown field 'speed'"),
        ({"env_device_sm_clock": [1, 2]}, "device facts are single values"),
    ],
)
def test_every_bad_value_is_named_by_file_line_and_field(tmp_path, record, change, message):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, **change}) + "\n")
    with pytest.raises(UsageError) as e:
        load_records(path)
    assert str(e.value).startswith(f"{path}:2: ") and message in str(e.value)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_on_reading(tmp_path, record, token):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record).replace('"rounds": 2', f'"rounds": 2, "ttft_s_mean": {token}', 1) + "\n")
    with pytest.raises(UsageError, match=f"r.jsonl:1: not a JSON record: {token} is not a JSON number"):
        load_records(path)


def test_undecodable_bytes_cost_only_their_line_with_skip(tmp_path, record):
    from chipbench.publishing.record import read_records

    path = tmp_path / "r.jsonl"
    path.write_bytes(
        json.dumps(record).encode() + b"\n\xff\xfe garbage\n" + json.dumps({**record, "record_id": "b"}).encode()
    )
    warnings = []
    assert len(read_records(path, on_error="skip", warn=warnings.append)) == 2
    assert "r.jsonl:2: not UTF-8 text (byte 0xff" in warnings[0]
    with pytest.raises(UsageError, match="r.jsonl:2: not UTF-8"):
        read_records(path)


def test_records_of_schema_version_1_are_still_read():
    df = load_records(*sorted((ROOT / "results" / "measurements").glob("2026-11-22-*.jsonl")))
    assert set(df["schema_version"]) == {1} and len(df) >= 8


def test_the_published_json_schemas_are_current():
    from chipbench.judging.claims import claims_json_schema
    from chipbench.publishing.schema import json_schema, json_schema_text

    # regenerate with `chipbench schema records --out results/schema/record.schema.json` (and claims)
    assert (ROOT / "results/schema/record.schema.json").read_text() == json_schema_text(json_schema())
    assert (ROOT / "results/schema/claims.schema.json").read_text() == json_schema_text(claims_json_schema())


def test_others_can_validate_records_with_the_json_schema_alone(record):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "results/schema/record.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(json.loads(json.dumps(record))))
    bad = {**json.loads(json.dumps(record)), "batch": 1.5, "speed": 3, "ttft_s_stdev": -1}
    paths = {tuple(e.path) for e in validator.iter_errors(bad)} | {e.validator for e in validator.iter_errors(bad)}
    assert ("batch",) in paths and ("ttft_s_stdev",) in paths and "additionalProperties" in paths
