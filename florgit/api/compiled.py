"""The compiled hot path (api/_hotpath.c), where it is in use: built by ``pip install``
(with a C compiler) and not turned off with ``FLORGIT_C_HOT_PATH=0``."""

from __future__ import annotations

from florgit import envflags


def compiled(name: str) -> object | None:
    """``florgit.api._hotpath.<name>``, or None where the Python code runs instead."""
    if not envflags.enabled(envflags.C_HOT_PATH, True):
        return None
    try:
        from florgit.api import _hotpath
    except ImportError:
        return None
    return getattr(_hotpath, name)
