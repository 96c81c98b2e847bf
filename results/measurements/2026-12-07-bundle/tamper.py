"""Changes one timestamp of the bundle's first record (the first round's last token, 1 ms later) and
writes two copies: tampered.tar.gz as is, tampered-redigested.tar.gz with the manifest's SHA-256
updated as a forger would (its signature then no longer matches)."""

import hashlib
import io
import json
import sys
import tarfile

src = sys.argv[1]
with tarfile.open(src) as tar:
    files = {m.name: tar.extractfile(m).read() for m in tar}
lines = files["records.jsonl"].decode().splitlines()
rec = json.loads(lines[0])
rec["token_times_s"][0][-1] += 0.001
lines[0] = json.dumps(rec)
files["records.jsonl"] = ("\n".join(lines) + "\n").encode()


def write(path, fs):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in fs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


write("tampered.tar.gz", files)
manifest = json.loads(files["manifest.json"])
manifest["files"]["records.jsonl"] = hashlib.sha256(files["records.jsonl"]).hexdigest()
write("tampered-redigested.tar.gz", {**files, "manifest.json": json.dumps(manifest).encode()})
print(f"changed {rec['model']} {rec['workload']} record {rec['record_id']}: token_times_s[0][-1] + 1 ms")
