"""Importing polars with transparent huge pages on for its memory allocator.

A query over 10M records allocates gigabytes, and the kernel faults each new 4 KB page in
on first touch: in a virtual machine that cost a quarter of a 100M-record query. polars'
bundled jemalloc takes settings from ``_RJEM_MALLOC_CONF`` when polars loads (polars adds
them to its own), so florgit asks for huge pages there. Measured here:
``dataframe("loss")`` over 10M records 1.27-1.41 s -> 0.99-1.05 s, over 100M records
15.2-15.4 s -> 10.9-11.9 s, for ~10% more peak memory.

The query functions import polars through :func:`import_polars`, which sets the variable
for the import only. ``git flor`` sets it for its whole process (:func:`for_this_process`):
its commands import polars from many places, and only where needed (a plain
``git flor log`` from its memo imports none). Nothing changes when the process imported
polars before florgit did, when the user set ``_RJEM_MALLOC_CONF`` themselves, or with
``FLORGIT_HUGE_PAGES=0``; on a kernel with transparent huge pages off it has no effect.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from florgit import envflags

HUGE_PAGES = "FLORGIT_HUGE_PAGES"
CONF_VAR = "_RJEM_MALLOC_CONF"
CONF = "thp:always,metadata_thp:always"


def _wanted() -> bool:
    return "polars" not in sys.modules and CONF_VAR not in os.environ and envflags.enabled(HUGE_PAGES, True)


def import_polars() -> ModuleType:
    """polars, imported with huge pages when florgit is the first to import it."""
    if _wanted():
        os.environ[CONF_VAR] = CONF
        try:
            import polars
        finally:
            os.environ.pop(CONF_VAR, None)  # polars' settings stay its own: no child inherits ours
    import polars

    return polars


def for_this_process() -> None:
    """Huge pages for polars whenever this process imports it (``git flor``)."""
    if _wanted():
        os.environ[CONF_VAR] = CONF
