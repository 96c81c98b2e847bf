"""Reproduction bundles (issue 45, item 3): one archive that lets anyone re-derive a run's numbers
offline, without the device, and that catches one changed timestamp or field.

`chipbench bundle RUN... --out FILE` writes a gzip'd tar holding:
  records.jsonl     the records, with their raw per-token timestamps (token_times_s), device facts,
                    ceilings, self-test results and the weights' digest each case recorded
  baseline.jsonl    the baseline records, with --baseline (the comparison is re-derived from both)
  claims.toml       the claims file, with --claims (their verdicts are re-derived)
  chips.toml, prices.toml   the spec table and prices the roofline and costs were judged by
  environment.json  every installed distribution and its version, Python, the platform, chipbench's
                    git commit and any uncommitted diff of it
  commands.json     the commands that made the records (their `command` field) and the bundle's own
  derived.json      what chipbench derived when it bundled: each comparison row's verdict, each claim's
  manifest.json     the format, and every other file's SHA-256
  manifest.sig      with --sign KEY: an Ed25519 signature of manifest.json (`cryptography`)

`chipbench verify FILE [--key PUB]` reads the archive in memory (regular files of known names only,
each and all together under a size bound: a hostile archive writes nothing and cannot exhaust
memory), checks every file against the manifest and the signature against the given public key,
then re-derives from the raw data: every statistic of every record from its timestamps, its energy
per token from its energy and tokens, its roofline shares from its counts, times and ceilings
against the bundled spec table, and the comparison and claim verdicts from the records. Any
difference is a line naming the file, record and field; the exit status is 1. A record without raw
timestamps (a serving level, an imported file) is said to be unchecked, never passed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from chipbench import PROJECT_ROOT
from chipbench.errors import UsageError
from chipbench.judging.chips import CHIPS_FILE, load_chips
from chipbench.judging.roofline import stored_roofline
from chipbench.measuring.metrics import METRICS, Round
from chipbench.measuring.recordline import record_json
from chipbench.measuring.workload import Workload
from chipbench.stats import STAT_NAMES

FORMAT = "chipbench-bundle/1"
NAMES = (
    "records.jsonl",
    "baseline.jsonl",
    "claims.toml",
    "chips.toml",
    "prices.toml",
    "environment.json",
    "commands.json",
    "derived.json",
    "manifest.json",
    "manifest.sig",
)
MAX_MEMBER_BYTES = 512 * 2**20  # a bundle of thousands of records is tens of MB
MAX_TOTAL_BYTES = 1024 * 2**20
REL_TOL = 1e-9  # a re-derived float against the stored one: the same code on the same numbers
DIFF_LIMIT = 5 * 2**20
SHOWN_FIELDS = 3  # a record's mismatched statistics shown in full; the rest are named in one line


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def environment() -> dict:
    """Every installed distribution and version, the interpreter, the platform, and chipbench's git
    commit with any uncommitted diff (where chipbench runs from a git checkout)."""
    dists = {}
    for d in metadata.distributions():
        name = d.metadata.get("Name")
        if name:
            dists[name] = d.version
    out = {
        "captured_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "distributions": dict(sorted(dists.items(), key=lambda kv: kv[0].lower())),
        "git_commit": None,
        "git_diff": None,
        "git_note": None,
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=20, check=True
        ).stdout

    try:
        out["git_commit"] = git("rev-parse", "HEAD").strip()
        diff = git("diff", "HEAD")
        out["git_diff"] = diff[:DIFF_LIMIT]
        if len(diff) > DIFF_LIMIT:
            out["git_note"] = f"the uncommitted diff is {len(diff)} characters; its first {DIFF_LIMIT} are kept"
    except (OSError, subprocess.SubprocessError) as e:
        out["git_note"] = f"no git checkout of chipbench here ({type(e).__name__})"
    return out


# --- re-deriving ----------------------------------------------------------------------------


@dataclass
class Findings:
    mismatches: list[str] = field(default_factory=list)
    checked: dict = field(default_factory=dict)  # what was re-derived: name -> count
    unchecked: list[str] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n


def _close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-15)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


def _shown(x) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, list):
        return f"[{len(x)} values]"
    return repr(x)


def _label(rec: dict, where: str) -> str:
    return f"{where}: record {rec.get('record_id', '?')} ({rec.get('model')} {rec.get('workload')} B{rec.get('batch')})"


def restate(rec: dict, chips: list, where: str, found: Findings) -> None:
    """Re-derives one record's statistics, energy per token and roofline shares from its raw data."""
    from chipbench.measuring.runner import metric_fields

    label = _label(rec, where)
    times = rec.get("token_times_s")
    if rec.get("status") != "ok":
        return
    if not times or rec.get("kind") not in ("prefill", "decode", "generate"):
        found.unchecked.append(
            f"{label}: no raw per-token timestamps ({rec.get('kind')}): its statistics are not re-derived"
        )
        return
    try:
        w = Workload(rec["kind"], rec["prompt_tokens"], rec["gen_tokens"], rec["batch"])
        fresh = metric_fields([Round(tuple(t)) for t in times], w)
    except Exception as e:  # malformed timestamps: a finding, not a crash
        found.mismatches.append(f"{label}: token_times_s cannot be read ({type(e).__name__}: {e})")
        return
    fields = [f"{m}_{s}" for m in METRICS for s in STAT_NAMES] + [f"{m}_samples" for m in METRICS if m != "itl_s"]
    wrong = [f for f in fields if f in rec and not _close(rec[f], fresh.get(f))]
    for f in wrong[:SHOWN_FIELDS]:
        found.mismatches.append(
            f"{label}: {f} is {_shown(rec[f])} in the record, {_shown(fresh.get(f))} from its token_times_s"
        )
    if len(wrong) > SHOWN_FIELDS:
        found.mismatches.append(
            f"{label}: {len(wrong) - SHOWN_FIELDS} more statistics differ: {', '.join(wrong[SHOWN_FIELDS:])}"
        )
    found.count("statistics")
    rounds = len(times)
    energy = rec.get("energy_j")
    for f, tokens in (
        ("energy_per_output_token_j", rec["batch"] * rec["gen_tokens"] * rounds),
        ("energy_per_total_token_j", rec["batch"] * (rec["gen_tokens"] + rec["prompt_tokens"]) * rounds),
    ):
        if rec.get(f) is not None and (energy is None or not _close(rec[f], energy / tokens)):
            found.mismatches.append(
                f"{label}: {f} is {_shown(rec[f])} in the record, "
                f"{_shown(energy / tokens) if energy is not None else 'none (no energy_j)'} from energy_j over its tokens"
            )
    if energy is not None:
        found.count("energy figures")
    if rec.get("decode_bytes_per_step") is None:
        return
    chip = next((c for c in chips if c.name == rec.get("chip")), None) if rec.get("chip") else None
    try:
        roof = stored_roofline(rec, chip)
    except UsageError:
        return
    for f, v in roof.items():
        if f == "roofline_flag" or (f.startswith("spec_") and chip is None) or f not in rec:
            continue  # the flag weighs ceilings' steadiness, not stored; a hand-given spec row is not in the table
        if isinstance(v, (int, float)) and not _close(rec[f], v):
            found.mismatches.append(
                f"{label}: {f} is {_shown(rec[f])} in the record, {_shown(v)} from its counts and times"
            )
    found.count("rooflines")


def derive(
    records: list[dict], baseline: list[dict], claims_text: str | None, chips_path: Path, prices_path: Path
) -> dict:
    """What chipbench concludes from the records: each comparison row's verdict (with a baseline)
    and each claim's verdict (with a claims file)."""
    from chipbench.judging.claims import check_all, parse_claims
    from chipbench.judging.compare import compare_records
    from chipbench.judging.prices import load_basis

    out: dict = {"comparisons": None, "claims": None}
    if baseline:
        comparison = compare_records(records, baseline)
        out["comparisons"] = [
            {
                "case": [r.get("model"), r.get("dtype"), r.get("workload"), r.get("batch"), str(r.get("exec_path"))],
                "metric": r.get("metric"),
                "ratio": r.get("ratio"),
                "verdict": r.get("verdict"),
            }
            for r in comparison.rows
        ]
    if claims_text is not None:
        chips = load_chips(chips_path)
        prices = load_basis(prices_path) if prices_path.is_file() else None
        claims = parse_claims(tomllib.loads(claims_text), "claims.toml", chips, prices=prices)
        out["claims"] = [{"id": v.claim.id, "verdict": v.verdict} for v in check_all(claims, records)]
    return out


# --- writing --------------------------------------------------------------------------------


def _records_text(records: list[dict]) -> bytes:
    lines = []
    for rec in records:
        rec = dict(rec)
        rec.pop("source_file", None)
        lines.append(record_json(rec))
    return ("\n".join(lines) + "\n").encode()


def make(
    runs: list[str],
    out: Path,
    baseline: list[str] = (),
    claims: str | None = None,
    sign_key: str | None = None,
    argv: list[str] | None = None,
) -> dict:
    """Writes the bundle of `runs` to `out`; returns its manifest."""
    from chipbench.judging.prices import PRICES_FILE
    from chipbench.publishing.record import read_records

    records = read_records(*runs)
    base = read_records(*baseline) if baseline else []
    claims_text = Path(claims).read_text(encoding="utf-8") if claims else None
    files: dict[str, bytes] = {"records.jsonl": _records_text(records)}
    if base:
        files["baseline.jsonl"] = _records_text(base)
    if claims_text is not None:
        files["claims.toml"] = claims_text.encode()
    files["chips.toml"] = CHIPS_FILE.read_bytes()
    if PRICES_FILE.is_file():
        files["prices.toml"] = PRICES_FILE.read_bytes()
    files["environment.json"] = json.dumps(environment(), indent=1).encode()
    commands = list(dict.fromkeys(r["command"] for r in [*records, *base] if r.get("command")))
    files["commands.json"] = json.dumps({"records": commands, "bundle": argv or sys.argv}, indent=1).encode()
    with tempfile.TemporaryDirectory() as tmp:
        chips_path, prices_path = Path(tmp) / "chips.toml", Path(tmp) / "prices.toml"
        chips_path.write_bytes(files["chips.toml"])
        if "prices.toml" in files:
            prices_path.write_bytes(files["prices.toml"])
        # the records as the verifier will read them (recounted, energy method given on reading)
        again = _parse_records(files["records.jsonl"], "records.jsonl")
        again_base = _parse_records(files["baseline.jsonl"], "baseline.jsonl") if base else []
        derived = derive(again, again_base, claims_text, chips_path, prices_path)
    files["derived.json"] = json.dumps(derived, indent=1, allow_nan=False).encode()
    manifest = {
        "format": FORMAT,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "records": len(records),
        "baseline_records": len(base),
        "files": {name: _sha256(data) for name, data in sorted(files.items())},
    }
    files["manifest.json"] = json.dumps(manifest, indent=1).encode()
    if sign_key:
        files["manifest.sig"] = sign(files["manifest.json"], sign_key)
    _write_tar(files, out)
    return manifest


def _write_tar(files: dict[str, bytes], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    tmp.replace(out)


# --- signing --------------------------------------------------------------------------------


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise UsageError("signing needs cryptography: pip install 'chipbench[sign]'") from None
    return serialization, ed25519, InvalidSignature


def keygen(path: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair: the private key at `path` (PEM, mode 600), the public one beside it (.pub)."""
    serialization, ed25519, _ = _crypto()
    if path.exists():
        raise UsageError(f"{path} exists: a key is never overwritten")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(private)
    pub = path.with_name(path.name + ".pub")
    pub.write_bytes(public)
    return path, pub


def sign(data: bytes, key_path: str) -> bytes:
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"{key_path}: not an unencrypted PEM private key ({type(e).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UsageError(f"{key_path}: not an Ed25519 key (chipbench keygen makes one)")
    return key.sign(data)


def check_signature(data: bytes, signature: bytes, pub_path: str) -> str | None:
    """None when `signature` is the key's over `data`; else why not."""
    serialization, ed25519, InvalidSignature = _crypto()

    try:
        key = serialization.load_pem_public_key(Path(pub_path).read_bytes())
    except (OSError, ValueError) as e:
        raise UsageError(f"{pub_path}: not a PEM public key ({type(e).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise UsageError(f"{pub_path}: not an Ed25519 public key")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return "the signature is not this key's over manifest.json"
    return None


# --- reading and verifying ------------------------------------------------------------------


def read_bundle(path: Path) -> dict[str, bytes]:
    """The archive's files in memory: regular files of known names only, each and all together
    under a bound; anything else is a one-line UsageError."""
    try:
        tar = tarfile.open(path, "r:gz")
    except FileNotFoundError:
        raise UsageError(f"bundle {path} does not exist") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UsageError(f"{path}: not a chipbench bundle (a gzip'd tar): {e}") from None
    files: dict[str, bytes] = {}
    total = 0
    with tar:
        try:
            for member in tar:
                if member.name not in NAMES:
                    raise UsageError(f"{path}: unexpected member {member.name!r}; a bundle holds {', '.join(NAMES)}")
                if not member.isreg():
                    raise UsageError(f"{path}: member {member.name!r} is not a regular file")
                if member.name in files:
                    raise UsageError(f"{path}: member {member.name!r} appears twice")
                if member.size > MAX_MEMBER_BYTES or total + member.size > MAX_TOTAL_BYTES:
                    raise UsageError(
                        f"{path}: member {member.name!r} is past the size bound ({MAX_MEMBER_BYTES} bytes)"
                    )
                data = tar.extractfile(member).read(member.size + 1)
                if len(data) != member.size:
                    raise UsageError(f"{path}: member {member.name!r} is not the size its header says")
                total += len(data)
                files[member.name] = data
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise UsageError(f"{path}: a damaged archive ({type(e).__name__}: {e})") from None
    return files


def _parse_records(data: bytes, name: str) -> list[dict]:
    from chipbench.publishing.record import read_records

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / name
        f.write_bytes(data)
        records = read_records(f)
    for r in records:
        r.pop("source_file", None)
    return records


@dataclass
class Report:
    ok: bool
    lines: list[str]


def verify(path: Path, public_key: str | None = None) -> Report:
    """Checks a bundle's files, signature and every number it holds (see the module doc)."""
    files = read_bundle(path)
    found = Findings()
    lines: list[str] = []
    if "manifest.json" not in files:
        raise UsageError(f"{path}: no manifest.json: not a chipbench bundle")
    try:
        manifest = json.loads(files["manifest.json"])
        listed = dict(manifest["files"])
        assert manifest.get("format") == FORMAT
    except Exception:
        raise UsageError(f"{path}: manifest.json is not a {FORMAT} manifest") from None
    for name in sorted(set(listed) | (set(files) - {"manifest.json", "manifest.sig"})):
        if name not in files:
            found.mismatches.append(f"{name}: listed in the manifest, missing from the archive")
        elif name not in listed:
            found.mismatches.append(f"{name}: in the archive, not in the manifest")
        elif _sha256(files[name]) != listed[name]:
            found.mismatches.append(f"{name}: its SHA-256 is not the manifest's: the file was changed")
    found.count("file digests", len(listed))
    if "manifest.sig" in files:
        if public_key:
            why = check_signature(files["manifest.json"], files["manifest.sig"], public_key)
            if why:
                found.mismatches.append(f"manifest.sig: {why}")
            else:
                lines.append(f"signature: valid, by the key in {public_key}")
        else:
            lines.append("signature: present, not checked (give --key with the signer's public key)")
    elif public_key:
        found.mismatches.append("manifest.sig: missing, and a key was given: the bundle is not signed")
    else:
        lines.append("signature: none")
    if "records.jsonl" not in files:
        raise UsageError(f"{path}: no records.jsonl")
    records = _parse_records(files["records.jsonl"], "records.jsonl")
    base = _parse_records(files["baseline.jsonl"], "baseline.jsonl") if "baseline.jsonl" in files else []
    with tempfile.TemporaryDirectory() as tmp:
        chips_path, prices_path = Path(tmp) / "chips.toml", Path(tmp) / "prices.toml"
        if "chips.toml" in files:
            chips_path.write_bytes(files["chips.toml"])
        else:
            chips_path.write_bytes(CHIPS_FILE.read_bytes())
            lines.append("chips.toml: not in the bundle; this chipbench's spec table is used")
        if "prices.toml" in files:
            prices_path.write_bytes(files["prices.toml"])
        chips = load_chips(chips_path)
        for where, recs in (("records.jsonl", records), ("baseline.jsonl", base)):
            for rec in recs:
                restate(rec, chips, where, found)
        claims_text = files["claims.toml"].decode("utf-8", "replace") if "claims.toml" in files else None
        derived_now = derive(records, base, claims_text, chips_path, prices_path)
    try:
        stored = json.loads(files.get("derived.json", b"{}"))
    except ValueError:
        stored = {}
        found.mismatches.append("derived.json: not JSON")
    for what, key in (("comparisons", "verdict"), ("claims", "verdict")):
        then, now = stored.get(what), derived_now[what]
        if then is None and now is None:
            continue
        if then is None or now is None or len(then) != len(now):
            found.mismatches.append(f"derived.json: its {what} are not those the bundle's records give")
            continue
        for a, b in zip(then, now):
            if a.get(key) != b.get(key) or ("ratio" in a and not _close(a.get("ratio"), b.get("ratio"))):
                name = a.get("id") or " ".join(str(x) for x in a.get("case", [])) + f" {a.get('metric')}"
                found.mismatches.append(
                    f"derived.json: {what[:-1]} {name}: {key} {a.get(key)!r} when bundled, {b.get(key)!r} from the records"
                )
        found.count(what, len(now))
    env = {}
    try:
        env = json.loads(files.get("environment.json", b"{}"))
    except ValueError:
        found.mismatches.append("environment.json: not JSON")
    lines.insert(
        0,
        f"bundle {path}: {len(records)} record(s)"
        + (f", {len(base)} baseline record(s)" if base else "")
        + f"; made with chipbench at {str(env.get('git_commit') or 'an unknown commit')[:12]}"
        + (" with uncommitted changes" if env.get("git_diff") else "")
        + f", {len(env.get('distributions') or {})} distributions recorded",
    )
    lines.append("re-derived: " + ", ".join(f"{n} {k}" for k, n in found.checked.items()))
    digests = {r.get("weights_digest") for r in records if r.get("status") == "ok"}
    named = sum(1 for r in records if r.get("weights_digest"))
    lines.append(
        f"weights: {named} of {len(records)} record(s) name the digest of the weights they ran "
        f"({len(digests - {None})} distinct); re-deriving them needs the weights, not done here"
    )
    lines += [f"unchecked: {u}" for u in found.unchecked]
    if found.mismatches:
        lines += [f"MISMATCH: {m}" for m in found.mismatches]
        lines.append(f"FAILED: {len(found.mismatches)} finding(s)")
    else:
        lines.append("VERIFIED: every file matches the manifest and every number re-derives")
    return Report(not found.mismatches, lines)
