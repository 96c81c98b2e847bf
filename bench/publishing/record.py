"""Result records: one flat, versioned JSON object per trial of a case, appended to a JSON-lines file.

Each record is written and flushed (and fsynced) as soon as its trial finishes, so an
interrupted run keeps every finished one; a write never glues a record to a partial line left
by an earlier crash or a full disk. `read_records` validates every record against the declared
schema (bench/publishing/schema.py) and names the file, line and field of every bad value;
`load_records` reads any number of files or directories into one pandas DataFrame.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from chipbench.backends import distributed
from chipbench.errors import UsageError
from chipbench.judging.roofline import recount_prefill
from chipbench.measuring.metrics import METRICS
from chipbench.measuring.recordline import READABLE_VERSIONS, SCHEMA_VERSION, new_record_id, record_json  # noqa: F401  (re-exported)
from chipbench.publishing.outputs import OutputError, append_line, check_output, keep_elsewhere
from chipbench.publishing.schema import FIELDS, PATTERN_FIELDS, metric_field_types, validate
from chipbench.stats import STAT_NAMES

METRIC_FIELD_DOC = (
    "`<metric>_<stat>` for each metric in ("
    + ", ".join(METRICS)
    + ") and stat in ("
    + ", ".join(STAT_NAMES)
    + "); `<metric>_samples`: the per-round values (itl_s pools every "
    "inter-token gap of every round and has no per-round samples)"
)


def fields_markdown() -> str:
    """The docs' table of record fields (docs/records.md), made from the schema so the two never drift apart."""
    docs = [(k, u, m) for k, (_, u, m) in FIELDS.items()] + [(k, u, m) for k, (u, m) in PATTERN_FIELDS.items()]
    rows = [f"| `{k}` | {u} | {m.replace('|', '/')} |" for k, u, m in docs]
    return "\n".join(
        [
            "| field | unit | meaning |",
            "|---|---|---|",
            *rows,
            "| `<metric>_<stat>`, `<metric>_samples` | the metric's | see Metrics |",
        ]
    )


def metric_fields() -> set[str]:
    return set(metric_field_types())


def is_documented(field: str) -> bool:
    if field in FIELDS or field in metric_fields():
        return True
    return field.startswith("env_device_")


def default_path(root: str | Path = "results/runs") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"{stamp}-{socket.gethostname()}.jsonl"


class RecordWriter:
    """Appends records to a JSON-lines file, flushing and syncing each one to disk.

    A file whose last line is partial (a crash or a full disk during an earlier write) gets a
    newline first, so the fragment stays a bad line of its own (the reader names it) and the new
    record is whole on the next line.
    """

    def __init__(self, path: str | Path, inputs: Iterable[str | Path] = ()):
        self.path = check_output(path, inputs)  # a folder, a file for a folder, one of the inputs: one line
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out {str(path)!r}: cannot make its folder: {e.strerror or e}") from None
        self.count = 0

    def write(self, record: dict) -> None:
        """Append one record; on a write error (a full disk) the file is left whole and the record
        kept elsewhere, and OutputError says where, and what the file holds."""
        if not distributed.is_lead():  # tensor parallel: rank 0's record is the measurement
            return
        if "energy_meter" not in record and (record.get("kind") == "serve" or record.get("import_tool")):
            record = dict(record)
            energy_method_of_old(record)  # a serving level's or an imported file's: none, and why
        line = record_json(record)
        try:
            append_line(self.path, line)
        except OutputError as e:
            raise OutputError(
                f"{e}; the {self.count} record(s) written before it are kept there, whole; {keep_elsewhere(line)}"
            ) from None
        self.count += 1


def _files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix in (".jsonl", ".json") and q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"no such file or directory: {str(p)!r}")
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (records hold finite numbers or null)")


def _unique_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice")
        out[k] = v
    return out


def parse_json(text: str):
    """Strict JSON: no NaN / Infinity tokens, no repeated keys. Raises ValueError with the reason."""
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None


def check_record(rec, where: str) -> dict:
    """The record itself when it satisfies the schema; a UsageError naming `where` and the fields otherwise."""
    try:
        validate(rec)
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    return rec


def _from_pytest_benchmark(data: dict, path: Path, on_error: str, warn) -> list[dict]:
    """Records embedded in a pytest-benchmark JSON file (--benchmark-json / --benchmark-autosave)."""
    out, foreign = [], 0
    benches = data.get("benchmarks")
    if not isinstance(benches, list):
        raise UsageError(f"{path}: not a pytest-benchmark JSON file ('benchmarks' is not a list)")
    for i, bench in enumerate(benches):
        extra = bench.get("extra_info") if isinstance(bench, dict) else None
        extra = extra if isinstance(extra, dict) else {}
        # chipbench_records: every trial of the case; chipbench_record: one (files written before trials)
        embedded = extra.get("chipbench_records", [extra["chipbench_record"]] if "chipbench_record" in extra else None)
        if embedded is None:
            foreign += 1
            continue
        name = bench.get("name", "?")
        if not isinstance(embedded, list):
            embedded = [embedded]  # check_record names what is wrong with it
        for j, rec in enumerate(embedded):
            try:
                out.append(check_record(rec, f"{path}: benchmark {i} ({name}) record {j}"))
            except UsageError as e:
                if on_error != "skip":
                    raise
                warn(f"skipped {e}")
    if foreign:
        warn(f"{path}: {foreign} benchmark(s) without a chipbench record (another suite's) left out")
    return out


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def _read_file(path: Path, on_error: str, warn) -> list[dict]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror or e})") from None
    if path.suffix == ".json":
        try:
            try:
                doc = parse_json(_decode(data, str(path)))
            except ValueError as e:
                raise UsageError(f"{path}: {e}") from None
            if not isinstance(doc, dict) or "benchmarks" not in doc:
                raise UsageError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
            return _from_pytest_benchmark(doc, path, on_error, warn)
        except UsageError as e:
            if on_error != "skip":
                raise
            warn(f"skipped {e}")
            return []
    records = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        where = f"{path}:{lineno}"
        try:
            line = _decode(raw, where)
            if not line.strip():
                continue
            try:
                rec = parse_json(line)
            except ValueError as e:
                cut = line.lstrip().startswith("{") and not line.rstrip().endswith("}")
                hint = (
                    "; the line is cut short (a run stopped while writing it?): --on-error skip reads the "
                    "file's other records"
                    if cut and on_error != "skip"
                    else ""
                )
                raise UsageError(f"{where}: not a JSON record: {e}{hint}") from None
            records.append(check_record(rec, where))
        except UsageError as e:
            if on_error != "skip":
                raise
            warn(f"skipped {e}")
    return records


OLD_METER_CHECK = "not checked: recorded before chipbench checked its meters (2026-12-07); meter and per-token figures derived on reading"


def energy_method_of_old(rec: dict) -> bool:
    """Gives a record made before 2026-12-07 its energy method, from what it stored; True when it did.
    A serving level and an imported result are metered by nothing: "none", and why.

    Such a record sampled telemetry (telemetry_sources) but named no meter. Its meter follows from
    its sources, as chipbench then read them: NVML's total-energy counter alone (the power was not
    integrated), RAPL's top-level powercap zones summed (its CPU packages; a psys zone, where the
    host had one, was summed in too). Its counter was not checked, and the record says so. Joules
    per output and per total token are its energy_j over the timed rounds' tokens. Nothing measured
    is changed; the host's energy was not read then and stays unknown (absent, not "none")."""
    if "energy_meter" in rec:
        return False
    if rec.get("kind") == "serve" or rec.get("import_tool"):  # no sampler ran beside these
        why = (
            f"energy: the imported {rec['import_tool']} file holds none"
            if rec.get("import_tool")
            else "energy: a serving level is timed at the client; the server's meters are not read"
        )
        missing = rec.get("telemetry_not_metered")
        rec.update(energy_meter="none", telemetry_not_metered=f"{missing}; {why}" if missing else why)
        return True
    if "telemetry_sources" not in rec or rec.get("status") != "ok":
        return False
    sources = rec.get("telemetry_sources") or ""
    if "nvml" in sources:
        meter, domain = "nvml-energy-counter", "device"
    elif "rapl" in sources:
        meter, domain = "rapl", "cpu-package"
    else:
        meter, domain = "none", None
    energy = rec.get("energy_j")
    rounds, batch = rec.get("rounds"), rec.get("batch")
    gen, prompt = rec.get("gen_tokens"), rec.get("prompt_tokens")
    out_tokens = batch * gen * rounds if rounds and batch and gen else None
    all_tokens = batch * (gen + prompt) * rounds if rounds and batch and gen and prompt else None
    rec.update(
        energy_meter=meter,
        energy_domain=domain,
        energy_check=OLD_METER_CHECK if meter != "none" else None,
        energy_sample_hz=rec.get("telemetry_rate_hz") if meter != "none" else None,
        energy_per_output_token_j=energy / out_tokens if energy is not None and out_tokens else None,
        energy_per_total_token_j=energy / all_tokens if energy is not None and all_tokens else None,
    )
    return True


def read_records(*paths: str | Path, on_error: str = "fail", warn=None) -> list[dict]:
    """Records from JSON-lines files, pytest-benchmark JSON files and directories of either.

    Every record is validated against the schema. on_error="fail" raises a UsageError naming the
    file, line and field(s) of the first bad record; "skip" leaves bad lines out (undecodable
    bytes included) and reports each through `warn` (stderr by default).
    """

    warn = warn or (lambda msg: print(f"chipbench: {msg}", file=sys.stderr))
    files = _files(paths)
    if not files:
        raise UsageError(f"no record files (*.jsonl, *.json) in {', '.join(map(str, paths))}")

    records = []
    for path in files:
        for rec in _read_file(path, on_error, warn):
            recount_prefill(rec)  # records made before the prefill's output head was counted once
            energy_method_of_old(rec)  # records made before the energy method was recorded
            rec["source_file"] = str(path)
            records.append(rec)
    if not records:
        raise UsageError(f"no records in {', '.join(map(str, files))} (empty, or every line was skipped)")
    return records


def load_records(*paths: str | Path, on_error: str = "fail"):
    """Every record in the given files and directories (JSON lines or pytest-benchmark JSON) as
    one DataFrame, with a `source_file` column."""
    import pandas as pd

    return pd.DataFrame(read_records(*paths, on_error=on_error))
