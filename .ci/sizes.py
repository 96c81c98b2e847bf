"""Line counts of the largest modules and functions of a chipbench tree (issue 41's figures).

python .ci/sizes.py [TREE]     (default: this checkout)"""

import ast
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
mods, funcs = [], []
for top in ("bench", "models", "backends"):
    for p in sorted((root / top).rglob("*.py")):
        text = p.read_text()
        rel = str(p.relative_to(root))
        mods.append((len(text.splitlines()), rel))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                funcs.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
mods.sort(reverse=True)
funcs.sort(reverse=True)
print(
    f"{len(mods)} modules, {sum(n for n, _ in mods)} lines; functions over 60 lines: {sum(1 for n, _ in funcs if n > 60)}"
)
for n, m in mods[:8]:
    print(f"  {n:5d}  {m}")
print("largest functions:")
for n, f in funcs[:10]:
    print(f"  {n:5d}  {f}")
