"""The backend adapters and their contract (base.py), the registry that finds them, the sensors they read."""

if __name__ != "chipbench.backends":  # this checkout's folder imported by its old top-level name: one copy, one notice
    import importlib
    import sys

    sys.stderr.write(
        f"chipbench: '{__name__}' is the old import name of chipbench.backends; import chipbench.backends instead (the old name will go)\n"
    )
    sys.modules[__name__] = importlib.import_module("chipbench.backends")
