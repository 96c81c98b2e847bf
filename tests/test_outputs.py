"""Outputs: no command overwrites its own input, follows a link onto one, or leaves half a file; a
bad output path is one line before any work; a full disk is one line saying what was kept."""

import errno
import json
import os
from pathlib import Path

import pytest

from chipbench.cli import main
from chipbench.publishing import outputs
from chipbench.publishing.outputs import OutputError, append_line, replace_file
from chipbench.publishing.record import RecordWriter, read_records
from tests.records import make_record


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "base.jsonl"
    w = RecordWriter(path)
    for seed in range(3):
        w.write(make_record(seed=seed))
    return path


def _refused(capsys, argv, *say):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("chipbench: error: "), err
    for text in say:
        assert text in err[0], err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "{base}", "--out", "{base}"],
        ["compare", "{base}", "--baseline", "{base}", "--out", "{base}"],
        ["claims", "{claims}", "{base}", "--out", "{base}"],
        ["claims", "{claims}", "{base}", "--out", "{claims}"],
        ["ab", "--from", "{base}", "--report", "{base}"],
        ["baseline", "{base}", "--out", "{base}"],
        ["merge", "{base}", "--out", "{base}"],
    ],
)
def test_no_command_writes_over_its_own_input(tmp_path, base, capsys, argv):
    claims = tmp_path / "claims.toml"
    claims.write_text('[[claim]]\nkind = "fits"\nmodel = "qwen3-0.6b"\ndtype = "bf16"\nchip = "NVIDIA H100 SXM"\n')
    before = base.read_bytes(), claims.read_bytes()
    argv = [a.format(base=base, claims=claims) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "one of this command's inputs" in err or "exists" in err, err
    assert (base.read_bytes(), claims.read_bytes()) == before


def test_a_link_onto_an_input_is_refused_and_a_link_elsewhere_is_replaced_not_followed(tmp_path, base, capsys):
    link = tmp_path / "table.md"
    link.symlink_to(base)
    before = base.read_bytes()
    _refused(capsys, ["report", str(base), "--out", str(link)], "one of this command's inputs", str(base))
    assert base.read_bytes() == before
    other = tmp_path / "elsewhere.md"
    other.write_text("keep me")
    link.unlink()
    link.symlink_to(other)
    assert main(["report", str(base), "--out", str(link)]) == 0
    assert other.read_text() == "keep me" and not link.is_symlink() and "qwen3-8b" in link.read_text()


def test_an_output_inside_an_input_folder_that_the_next_read_would_take_is_refused(tmp_path, base, capsys):
    _refused(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "table.json"), "--format", "json"],
             "inside the input folder")  # fmt: skip
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "table.md")]) == 0  # markdown is never read back


def test_bad_output_paths_are_one_line_before_any_work(tmp_path, base, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    _refused(capsys, ["report", str(base), "--out", str(tmp_path)], "is a folder")
    _refused(capsys, ["report", str(base), "--out", str(afile / "x.md")], "is a file, not a folder")
    _refused(capsys, ["report", str(base), "--out", ""], "is empty")
    _refused(capsys, ["run", "--model", "tiny-qwen3", "--out", "."], "is a folder")  # nothing ran: no self-test line
    _refused(capsys, ["run", "--model", "tiny-qwen3", "--out", str(afile / "r.jsonl")], "is a file, not a folder")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        _refused(capsys, ["report", str(base), "--out", str(locked / "t.md")], "cannot be written")


def test_a_replaced_file_is_whole_or_untouched(tmp_path, monkeypatch):
    path = tmp_path / "out.md"
    replace_file(path, "old\n")
    real = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "replace", full)
    with pytest.raises(OutputError, match="No space left on device; the file there before is unchanged"):
        replace_file(path, "new\n")
    monkeypatch.setattr(outputs.os, "replace", real)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.md"]  # no temp file left


def test_a_full_disk_mid_record_leaves_no_partial_line_and_keeps_the_record(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    w = RecordWriter(path)
    w.write(make_record(seed=0))
    real = os.write

    def half(fd, data):  # the disk under r.jsonl fills halfway through the record
        if os.readlink(f"/proc/self/fd/{fd}") == str(path):
            real(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(outputs.os, "write", half)
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path / "spare"))
    (tmp_path / "spare").mkdir()
    lost = make_record(seed=1)
    with pytest.raises(OutputError) as e:
        w.write(lost)
    monkeypatch.setattr(outputs.os, "write", real)
    text = str(e.value)
    assert "No space left on device" in text and "the 1 record(s) written before it are kept there, whole" in text
    assert "this record was saved to" in text
    assert path.read_text().count("\n") == 1 and len(read_records(path)) == 1  # the file as it was: no fragment
    [spare] = (tmp_path / "spare").iterdir()
    assert json.loads(spare.read_text())["record_id"] == lost["record_id"]


def test_a_run_onto_a_full_device_is_one_line_and_exit_1(capsys, tmp_path, monkeypatch):
    """/dev/full answers every write with ENOSPC: a full disk, for real."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path))
    argv = ["run", "--backend", "cpu", "--model", "tiny-qwen3", "--dtype", "fp32", "--workload", "tg4", "--rounds", "1"]
    assert main([*argv, "--no-check", "--ceiling-window", "0", "--out", "/dev/full"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("chipbench: error: could not append to '/dev/full': No space left on device"), err
    assert "kept there" in err and str(tmp_path) in err
    assert len(read_records(*tmp_path.glob("chipbench-unsaved-*.jsonl"))) == 1


def test_appending_after_a_fragment_starts_a_new_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"partial": ')
    append_line(path, '{"whole": 1}')
    assert path.read_text().splitlines() == ['{"partial": ', '{"whole": 1}']


def test_a_file_compared_with_itself_is_told_so(base, capsys):
    _refused(capsys, ["compare", str(base), "--baseline", str(base)], "every baseline record is one of the run's own")


HOSTILE = "$\\foo$ [x](http://evil.test) ![i](http://evil.test/t.png) \x1b[31mRED\x07\r\n# head | cell <script>alert(1)</script>"


def test_hostile_record_strings_stay_text_in_every_output(tmp_path, capsys, monkeypatch):
    """A device name that tries mathtext, a link, a remote image, terminal escapes, a new line, a
    heading, a new cell and a script: Markdown, the job summary, HTML with charts, and the
    terminal all show it as text."""
    path = tmp_path / "hostile.jsonl"
    w = RecordWriter(path)
    for seed in range(3):
        w.write(make_record(device=HOSTILE, seed=seed))
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["report", str(path), "--github-summary"]) == 0
    md = capsys.readouterr().out
    for text in (md, summary.read_text()):
        assert "\\[x\\](http://evil.test)" in text and "!\\[i\\](http://evil.test/t.png)" in text  # no link, no image
        assert "<script>" not in text and "&lt;script&gt;" in text
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text
        assert "\n# head" not in text and "head \\| cell" in text  # no heading, no new cell
    assert main(["report", str(path), "--format", "html", "--out", str(tmp_path / "r.html")]) == 0  # mathtext off
    page = (tmp_path / "r.html").read_text()
    assert "<script>alert" not in page and "$\\foo$" in page
    capsys.readouterr()
    assert main(["baseline", str(path)]) == 0
    out = capsys.readouterr()
    assert "\x1b" not in out.out + out.err and "\\x1b[31mRED\\x07" in out.out  # shown, not acted on


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 64 KiB tmpfs: a disk that really fills. Needs the right to mount (root in a container);
    skipped where the machine does not give it."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_disk_that_fills_keeps_whole_records_and_says_so(full_tmpfs, tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path))
    path = full_tmpfs / "r.jsonl"
    w = RecordWriter(path)
    written = 0
    with pytest.raises(OutputError, match="No space left on device") as e:
        for seed in range(100):  # each record is about 8 KiB: the disk fills within ten
            w.write(make_record(seed=seed))
            written += 1
    assert 0 < written < 100 and f"the {written} record(s) written before it are kept there, whole" in str(e.value)
    assert len(read_records(path)) == written  # every line whole: no fragment of the one that did not fit
    assert len(read_records(*tmp_path.glob("chipbench-unsaved-*.jsonl"))) == 1
    table = full_tmpfs / "table.md"
    with pytest.raises(OutputError, match="nothing was written"):
        replace_file(table, "x" * 200_000)
    assert not table.exists() and [p.name for p in full_tmpfs.iterdir()] == ["r.jsonl"]
