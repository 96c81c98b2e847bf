"""matplotlib for the report's charts, on the headless Agg backend (reports are made on servers
and CI); imported only when a chart is drawn, since matplotlib takes seconds to load."""

from __future__ import annotations


def pyplot():
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    # a label is text, never mathtext: a device name with `$\foo$` in it is drawn as written
    # instead of stopping the report with a parse error
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt
