"""Reproduction bundles (issue 45, item 3): an archive of records, raw timestamps, environment,
commands and digests that anyone re-derives offline; one changed timestamp or field is caught and
named; a signature is checked against the signer's public key; a hostile archive is refused."""

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from chipbench.cli import main
from chipbench.errors import UsageError
from chipbench.models.build import build_random
from chipbench.models.zoo import get_model
from chipbench.publishing import bundle

ROOT = Path(__file__).resolve().parent.parent
H200 = ROOT / "results/measurements/2026-12-04-h200-issue9/runs.jsonl"
CLAIMS = ROOT / "results/measurements/2026-12-07-energy-method/claims.toml"


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def repack(files: dict[str, bytes], path: Path, redigest: bool = False) -> Path:
    """The archive rewritten as someone who changed it would; `redigest`: the manifest updated too."""
    if redigest:
        import hashlib

        manifest = json.loads(files["manifest.json"])
        for name in manifest["files"]:
            manifest["files"][name] = hashlib.sha256(files[name]).hexdigest()
        files = {**files, "manifest.json": json.dumps(manifest).encode()}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def edit_record(files: dict, index: int, change) -> dict:
    lines = files["records.jsonl"].decode().splitlines()
    rec = json.loads(lines[index])
    change(rec)
    lines[index] = json.dumps(rec)
    return {**files, "records.jsonl": ("\n".join(lines) + "\n").encode()}


def test_the_weights_digest_is_of_the_tensors_and_computed_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    spec = get_model("tiny-qwen3")
    a = build_random(spec, torch.float32, seed=0).digest
    assert a.startswith("blake2b-256:") and len(a) == len("blake2b-256:") + 64
    assert build_random(spec, torch.float32, seed=1).digest != a  # other weights, another digest
    assert build_random(spec, torch.bfloat16, seed=0).digest != a
    store = json.loads((tmp_path / "weights-digests.json").read_text())
    assert len(store) == 3 and a in store.values()
    key = next(k for k, v in store.items() if v == a)
    store[key] = "blake2b-256:cached"
    (tmp_path / "weights-digests.json").write_text(json.dumps(store))
    assert build_random(spec, torch.float32, seed=0).digest == "blake2b-256:cached"  # read, not hashed again
    monkeypatch.setenv("CHIPBENCH_WEIGHTS_DIGEST", "0")
    assert build_random(spec, torch.float32, seed=0).digest is None


ARGS = [
    "run",
    "--backend",
    "cpu",
    "--model",
    "tiny-qwen3",
    "--dtype",
    "fp32",
    "--workload",
    "pp16,tg8",
    "--rounds",
    "3",
]


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """A real run here: tiny-qwen3 on the CPU, two cases."""
    out = tmp_path_factory.mktemp("run") / "r.jsonl"
    assert main([*ARGS, "--out", str(out), "-q"]) == 0
    return out


def test_a_bundle_of_a_real_run_verifies_offline(cpu_run, tmp_path, capsys):
    out, base = tmp_path / "b.tar.gz", tmp_path / "base.jsonl"
    assert main([*ARGS, "--out", str(base), "-q"]) == 0  # a second invocation: the run's baseline
    assert main(["bundle", str(cpu_run), "--baseline", str(base), "--out", str(out)]) == 0
    files = members(out)
    assert set(files) == {
        "records.jsonl", "baseline.jsonl", "chips.toml", "prices.toml", "environment.json", "commands.json",
        "derived.json", "manifest.json",
    }  # fmt: skip
    env = json.loads(files["environment.json"])
    assert env["distributions"]["torch"] == torch.__version__ and "git_commit" in env
    records = [json.loads(x) for x in files["records.jsonl"].splitlines()]
    assert all(r["token_times_s"] and r["weights_digest"].startswith("blake2b-256:") for r in records)
    assert json.loads(files["commands.json"])["records"]  # the command that made the records
    assert len(json.loads(files["derived.json"])["comparisons"]) >= 2
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    said = capsys.readouterr().out
    assert "VERIFIED" in said and "4 statistics" in said and "signature: none" in said
    assert "comparisons" in said and "2 of 2 record(s) name the digest of the weights" in said


def test_one_changed_timestamp_or_field_fails_with_the_field_named(cpu_run, tmp_path, capsys):
    out = tmp_path / "b.tar.gz"
    bundle.make([str(cpu_run)], out)
    files = members(out)

    def later(rec):
        rec["token_times_s"][0][-1] += 0.5  # the first round's last token, half a second later

    changed = edit_record(files, 1, later)
    report = bundle.verify(repack(changed, tmp_path / "t.tar.gz"))
    assert (
        not report.ok
        and "MISMATCH: records.jsonl: its SHA-256 is not the manifest's: the file was changed" in report.lines
    )
    # with the manifest's digest updated too, the numbers still give it away, field by field
    report = bundle.verify(repack(changed, tmp_path / "t2.tar.gz", redigest=True))
    assert not report.ok and not any("SHA-256" in line for line in report.lines)
    named = " ".join(line for line in report.lines if line.startswith("MISMATCH: records.jsonl: record "))
    assert "e2e_s_mean" in named and "e2e_s_samples" in named and "from its token_times_s" in named
    field = edit_record(files, 0, lambda r: r.update(ttft_s_median=r["ttft_s_median"] * 0.9))
    report = bundle.verify(repack(field, tmp_path / "t3.tar.gz", redigest=True))
    assert any(
        line.startswith("MISMATCH: records.jsonl: record ") and ": ttft_s_median is" in line for line in report.lines
    )
    assert report.lines[-1].startswith("FAILED: ")  # the field, and the roofline figures made from it
    assert main(["verify", str(tmp_path / "t3.tar.gz")]) == 1


def test_a_verdict_changed_in_the_bundle_is_caught(tmp_path):
    out = tmp_path / "b.tar.gz"
    bundle.make([str(H200)], out, claims=str(CLAIMS))
    assert bundle.verify(out).ok
    files = members(out)
    derived = json.loads(files["derived.json"])
    assert [c["verdict"] for c in derived["claims"]] == ["confirmed", "inconclusive", "inconclusive"]
    derived["claims"][1]["verdict"] = "confirmed"
    report = bundle.verify(repack({**files, "derived.json": json.dumps(derived).encode()}, tmp_path / "t.tar.gz", True))
    assert (
        "MISMATCH: derived.json: claim qwen3-8b-h200-cost-2: verdict 'confirmed' when bundled, 'inconclusive' from the records"
        in report.lines
    )


def test_a_signed_bundle_verifies_with_its_key_only(tmp_path, capsys):
    pytest.importorskip("cryptography", reason="signing needs cryptography (pip install chipbench[sign])")
    key, other = tmp_path / "k", tmp_path / "other"
    assert main(["keygen", "--out", str(key)]) == 0 and main(["keygen", "--out", str(other)]) == 0
    assert (key.stat().st_mode & 0o777) == 0o600
    with pytest.raises(UsageError, match="exists: a key is never overwritten"):
        bundle.keygen(key)
    out = tmp_path / "b.tar.gz"
    assert main(["bundle", str(H200), "--out", str(out), "--sign", str(key)]) == 0
    assert "manifest.sig" in members(out)
    ok = bundle.verify(out, str(key) + ".pub")
    assert ok.ok and f"signature: valid, by the key in {key}.pub" in ok.lines
    wrong = bundle.verify(out, str(other) + ".pub")
    assert not wrong.ok and "MISMATCH: manifest.sig: the signature is not this key's over manifest.json" in wrong.lines
    assert "signature: present, not checked (give --key with the signer's public key)" in bundle.verify(out).lines
    files = members(out)  # a re-signed manifest by someone else's key: caught by the key
    forged = repack({**files, "manifest.sig": bundle.sign(files["manifest.json"], str(other))}, tmp_path / "f.tar.gz")
    assert not bundle.verify(forged, str(key) + ".pub").ok
    unsigned = bundle.verify(
        repack({k: v for k, v in files.items() if k != "manifest.sig"}, tmp_path / "u.tar.gz"), str(key) + ".pub"
    )
    assert "MISMATCH: manifest.sig: missing, and a key was given: the bundle is not signed" in unsigned.lines


def hostile(path: Path, add) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tar: tar.addfile(tarfile.TarInfo("../escape"), io.BytesIO(b"")), "unexpected member '../escape'"),
        (
            lambda tar: tar.addfile(
                tarfile.TarInfo("records.jsonl") if False else _link("records.jsonl", "/etc/passwd")
            ),
            "member 'records.jsonl' is not a regular file",
        ),
        (lambda tar: tar.addfile(_sized("records.jsonl", 2**40)), "past the size bound"),
    ],
)
def test_a_hostile_archive_is_refused_in_one_line_and_writes_nothing(tmp_path, make, message):
    before = set(tmp_path.iterdir())
    path = hostile(tmp_path / "h.tar.gz", make)
    with pytest.raises(UsageError, match=message):
        bundle.verify(path)
    assert set(tmp_path.iterdir()) == before | {path}


def _link(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _sized(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def test_what_is_not_a_bundle_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    assert main(["verify", str(junk)]) == 2
    assert capsys.readouterr().err.startswith("chipbench: error: ")
    assert main(["verify", str(tmp_path / "absent.tar.gz")]) == 2
    empty = repack({"records.jsonl": b""}, tmp_path / "e.tar.gz")
    with pytest.raises(UsageError, match="no manifest.json: not a chipbench bundle"):
        bundle.verify(empty)
