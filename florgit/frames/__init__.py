"""Reading runs back as polars frames: ``dataframe``, ``scan``, ``query``, ``runs``.

polars is imported on first use so that ``import florgit`` stays fast.
"""

from florgit.frames.public import dataframe, query, runs, scan

__all__ = ["dataframe", "query", "runs", "scan"]
