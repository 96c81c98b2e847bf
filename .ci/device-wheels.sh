#!/usr/bin/env bash
# Fetches, here (where pip reaches the registries), the wheels the lent GPU machine lacks: its image
# (Python 3.12, torch and transformers preinstalled; no registry) has no pydantic, which the record
# schema needs (with a typing-extensions new enough for it), nor jsonschema, which the tests use. They go to .whl/ (git-ignored through
# .git/info/exclude); the device run names .whl in `carry`, and .ci/device-check.sh installs them.
# Versions: the ones this project is tested with. Usage: bash .ci/device-wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "$(git rev-parse --git-dir)/info"
grep -qx '/.whl/' "$(git rev-parse --git-dir)/info/exclude" 2>/dev/null || echo /.whl/ >> "$(git rev-parse --git-dir)/info/exclude"
platforms=()
for n in 2_28 2_27 2_17 2014 1; do
  case $n in 2014|1) platforms+=(--platform "manylinux${n}_x86_64");; *) platforms+=(--platform "manylinux_${n}_x86_64");; esac
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
ls -1 .whl
du -sh .whl
