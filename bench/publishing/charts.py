"""matplotlib for the report's charts, on the headless Agg backend (reports are made on servers
and CI); imported only when a chart is drawn, since matplotlib takes seconds to load."""

from __future__ import annotations


def pyplot():
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
