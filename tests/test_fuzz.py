"""Property-based tests: no input reaches a traceback.

The loader, the claims parser and the CLI's data commands get hundreds of generated inputs each:
undecodable bytes, broken JSON, records with one field turned into any JSON value (NaN and
infinity included), claims with fields of any type or unknown keys (nested ones included). Each
must either work or be refused with a UsageError (exit 2 at the command line), never crash; and
whatever the loader accepts must tabulate, compare and decide claims without crashing.
"""

import contextlib
import io
import json
import math
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipbench.errors import UsageError
from chipbench.judging.cases import Account
from chipbench.judging.claims import check_all, parse_claims
from chipbench.judging.compare import compare_records
from chipbench.judging.paired import ab_rows
from chipbench.publishing import tables
from chipbench.publishing.record import read_records
from tests.records import make_record, make_trials

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

BASE = make_record(workload="tg8", rounds=3)
KEYS = sorted(BASE) + ["speed", "env_device_x", "tpot_s_ci95_low", "correct", "host_loaded", "trial_index"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)


@st.composite
def mutated_records(draw):
    rec = dict(BASE, record_id=draw(st.text(min_size=1, max_size=12)))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(KEYS))
        if draw(st.booleans()) and key in rec:
            del rec[key]
        else:
            rec[key] = draw(json_values)
    return rec


def lines_of(records) -> bytes:
    return b"\n".join(json.dumps(r, allow_nan=True).encode() for r in records) + b"\n"


def balanced(account: Account) -> bool:
    """Every input record in exactly one place: used, unmatched, left out, failed or a duplicate."""
    return account.inputs == (
        account.used + account.unmatched + account.left_out + account.failed + account.duplicates + account.filtered
    )


def survives_downstream(records):
    """What the loader accepted must tabulate, compare, decide claims and pair A/B trials, or be refused
    in one line; and each of them accounts for every record once."""

    def table():
        t = tables.build(records)
        tables.to_markdown(t), tables.to_csv(t)
        return [t.account]

    def compared():
        c = compare_records(records, [dict(r, record_id=str(i)) for i, r in enumerate(records)], threshold=0.95)
        return list(c.accounts.values())

    def claimed():
        account = Account()
        check_all(CLAIMS, records, account)
        return [account]

    def paired():
        account = Account()
        ab_rows(
            [dict(r, ab_id="x", ab_arm="AB"[i % 2], ab_pair=i // 2) for i, r in enumerate(records)],
            ("headline", "tpot_s"),
            margin=0.05,
            account=account,
        )
        return [account]

    for build in (table, compared, claimed, paired):
        try:
            accounts = build()
        except UsageError:
            continue
        for account in accounts:
            assert balanced(account), (build.__name__, account)


CLAIMS = parse_claims(
    tomllib.loads("""
[[claim]]
id = "m"
statement = "s"
source = "x"
kind = "metric"
metric = "decode_tok_per_s"
value = 40
model = "qwen3-8b"
workload = "tg8"
chip = "NVIDIA H100 SXM"
stack = "vllm"
[[claim]]
id = "r"
statement = "s"
source = "x"
kind = "ratio"
metric = "decode_tok_per_s"
value = 1
compare = "about"
model = "qwen3-8b"
workload = "tg8"
numerator = { chip = "NVIDIA H100 SXM" }
denominator = { chip = "NVIDIA H20" }
[[claim]]
id = "f"
statement = "s"
source = "x"
kind = "fits"
model = "qwen3-8b"
chip = "NVIDIA H100 SXM"
context = 8
[[claim]]
id = "n"
statement = "s"
source = "x"
kind = "metric"
metric = "tpot_s"
value = 0.02
compare = "about"
model = "qwen3-8b"
workload = "tg8"
chips = 2
""")
)


@FUZZ
@given(st.binary(max_size=400))
def test_the_loader_survives_any_bytes(tmp_path, data):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    with contextlib.suppress(UsageError):
        read_records(path)
    try:
        read_records(path, on_error="skip", warn=lambda m: None)
    except UsageError as e:
        assert "no records" in str(e)


@FUZZ
@given(st.lists(mutated_records(), min_size=1, max_size=3))
def test_the_loader_accepts_only_valid_records_and_they_survive_downstream(tmp_path, records):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(lines_of(records))
    try:
        got = read_records(path)
    except UsageError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        got = read_records(path, on_error="skip", warn=lambda m: None) if any(_valid(r) for r in records) else []
    for rec in got:
        for key, value in rec.items():
            assert not (isinstance(value, float) and not math.isfinite(value)), key
    if got:
        survives_downstream(got)


def _valid(rec) -> bool:
    from chipbench.publishing.schema import validate

    try:
        validate(json.loads(json.dumps(rec, allow_nan=True)))
        return not any(isinstance(v, float) and not math.isfinite(v) for v in rec.values())
    except ValueError:
        return False


CLAIM = {
    "id": "c",
    "statement": "s",
    "source": "x",
    "kind": "ratio",
    "metric": "decode_tok_per_s",
    "value": 1.0,
    "compare": "about",
    "model": "qwen3-8b",
    "workload": "tg8",
    "numerator": {"chip": "NVIDIA H100 SXM"},
    "denominator": {"chip": "NVIDIA H20"},
}
CLAIM_KEYS = sorted(CLAIM) + ["chp", "unit", "tolerance", "context", "batch", "dtype", "stack", "chip", "chips", "date"]
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["qwen3-8b", "tg8", "bf16", "NVIDIA H20", "x", "ms", "metric", "fits", "at_most", "decode_tok_per_s"]
    ),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(CLAIM_KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated_claims(draw):
    claim = json.loads(json.dumps(CLAIM))
    for _ in range(draw(st.integers(1, 3))):
        target = claim
        if draw(st.booleans()):
            target = claim.get(draw(st.sampled_from(["numerator", "denominator"])))
            if not isinstance(target, dict):
                target = claim
        key = draw(st.sampled_from(CLAIM_KEYS))
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = draw(toml_values)
    return {"claim": [claim]} if draw(st.integers(0, 9)) else draw(st.sampled_from([{}, {"claim": claim}, {"x": 1}]))


@FUZZ
@given(mutated_claims())
def test_the_claims_parser_refuses_in_one_line_or_yields_decidable_claims(data):
    try:
        claims = parse_claims(data, "fuzz.toml")
    except UsageError as e:
        assert str(e).startswith("fuzz.toml: ") and "\n" not in str(e)
        return
    records = make_trials(2, model="qwen3-8b", workload="tg8", device="NVIDIA H100 80GB HBM3")
    for verdict in check_all(claims, records):
        assert verdict.category in ("confirmed", "refuted", "physically implausible", "inconclusive")


@FUZZ
@given(st.binary(max_size=300))
def test_the_claims_file_reader_survives_any_bytes(tmp_path, data):
    from chipbench.judging.claims import load_claims

    path = tmp_path / "c.toml"
    path.write_bytes(data)
    with contextlib.suppress(UsageError):
        load_claims(path)


def run_cli(argv) -> int:
    from chipbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own usage errors
            code = e.code
    assert "Traceback" not in err.getvalue()
    return code


COMMANDS = st.sampled_from(
    [
        ["report", "{fuzz}"],
        ["report", "{fuzz}", "--format", "csv"],
        ["report", "{fuzz}", "--format", "json"],
        ["report", "{fuzz}", "--format", "html"],
        ["report", "{fuzz}", "--transpose"],
        ["report", "{fuzz}", "--on-error", "skip"],
        ["merge", "{fuzz}", "{good}", "--out", "{out}"],
        ["baseline", "{fuzz}"],
        ["baseline", "{fuzz}", "--out", "{out}"],
        ["compare", "{fuzz}", "--baseline", "{good}"],
        ["compare", "{good}", "--baseline", "{fuzz}"],
        ["compare", "{fuzz}", "--baseline", "{good}", "--fail-below", "0.95"],
        ["compare", "{fuzz}", "--baseline", "{good}", "--across", "devices"],
        ["compare", "{fuzz}", "--baseline", "{fuzz}", "--on-error", "skip"],
        ["claims", "{claims}", "{fuzz}"],
        ["claims", "{fuzz}"],
        ["claims", "{claims}", "{good}", "{fuzz}", "--format", "json"],
    ]
)
EXTRA = st.lists(
    st.sampled_from(
        [
            "--metrics",
            "speed",
            "--model",
            "qwen3-8b",
            "--fail-below",
            "1.5",
            "--format",
            "xml",
            "--unmatched",
            "--workload",
            "tg8",
            "-1",
            "",
            "--across",
            "chips",
        ]
    ),
    max_size=3,
)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.jsonl"
    path.write_bytes(lines_of(make_trials(2, workload="tg8")))
    return str(path)


@FUZZ
@given(
    COMMANDS,
    EXTRA,
    st.one_of(st.binary(max_size=200), st.lists(mutated_records(), min_size=1, max_size=2).map(lines_of)),
)
def test_the_cli_data_commands_exit_0_1_or_2_never_a_traceback(tmp_path, good, command, extra, data):
    fuzz = tmp_path / "fuzz.jsonl"
    fuzz.write_bytes(data)
    out = tmp_path / "merged.jsonl"
    out.unlink(missing_ok=True)
    claims = tmp_path / "c.toml"
    claims.write_text(
        '[[claim]]\nid = "x"\nstatement = "s"\nsource = "s"\nkind = "fits"\nmodel = "qwen3-8b"\nchip = "NVIDIA H20"\n'
    )
    argv = [a.format(out=out, good=good, claims=claims, fuzz=fuzz) for a in command] + extra
    assert run_cli(argv) in (0, 1, 2)


@FUZZ
@given(wall=st.floats(0.001, 1000), other=st.floats(0, 1), stolen=st.floats(0, 0.5), seen=st.booleans())
def test_host_load_is_flagged_only_beyond_the_counters_slack_and_never_cleared_unseen(wall, other, stolen, seen):
    """Whatever the trial's length and shares: a flag names its reason and is beyond the counters'
    slack; a clear needs the other processes' share read; the same shares over a 100x longer
    trial are never judged less surely (a flag stays a flag, a clear stays a clear)."""
    from collections import namedtuple

    import psutil

    from chipbench.measuring import hostload

    cpus = psutil.cpu_count() or 1
    Times = namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")

    def facts(w):
        cpu_s = w * cpus
        own = cpu_s * (1 - stolen) * (1 - other)
        b, t, s = hostload._machine_times(Times(cpu_s * (1 - stolen), 0, 0, 0, 0, 0, 0, cpu_s * stolen, 0, 0))
        z = hostload._machine_times(Times(0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        before = hostload.HostSample(0.0, z[0], z[1], z[2], 0.0 if seen else None, None, None)
        return hostload.facts(before, hostload.HostSample(w, b, t, s, own if seen else None, None, None))

    short, long = facts(wall), facts(wall * 100)
    for f in (short, long):
        if f["host_loaded"] is True:
            assert "other processes used" in f["host_load_note"] or "the hypervisor stole" in f["host_load_note"]
        if not seen:
            assert f["host_loaded"] is not False and f["host_other_cpu_frac"] is None
    if short["host_loaded"] is not None:
        assert long["host_loaded"] is short["host_loaded"]
