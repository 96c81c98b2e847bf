"""The Qwen architectures the harness builds with seeded weights, their counts and exports."""

if __name__ != "chipbench.models":  # this checkout's folder imported by its old top-level name: one copy, one notice
    import importlib
    import sys

    sys.stderr.write(
        f"chipbench: '{__name__}' is the old import name of chipbench.models; import chipbench.models instead (the old name will go)\n"
    )
    sys.modules[__name__] = importlib.import_module("chipbench.models")
