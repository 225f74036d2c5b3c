"""Importing polars with transparent huge pages for its memory allocator, when asked to.

A query over 10M records allocates gigabytes, and the kernel faults each new 4 KB page in
on first touch. polars asks its bundled jemalloc for huge pages with ``POLARS_THP=1``
(older versions: jemalloc reads ``_RJEM_MALLOC_CONF``). ``FLORGIT_HUGE_PAGES=1`` makes
florgit set those while polars loads. It is off by default: on this machine (a virtual
machine, ``defrag`` ``madvise``) they made queries slower on average and far less steady,
though the kernel counted no compaction stalls and no fallbacks (the figures, in
alternating fresh processes, are in the README); an earlier session had measured them
faster. What they cost depends on the host, so the user chooses.

The query functions import polars through :func:`import_polars`, which sets them for the
import only. ``git flor`` sets them for its whole process (:func:`for_this_process`):
its commands import polars from many places, and only where needed (a plain
``git flor log`` from its memo imports none). Nothing changes when the process imported
polars before florgit did, or when the user set ``POLARS_THP`` themselves (settings of
their own in ``_RJEM_MALLOC_CONF`` come after florgit's, so they win); on a kernel with
transparent huge pages off it has no effect.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from florgit import envflags

HUGE_PAGES = "FLORGIT_HUGE_PAGES"
POLARS_THP = "POLARS_THP"  # polars' own switch (recent versions)
CONF_VAR = "_RJEM_MALLOC_CONF"  # what older polars' jemalloc reads directly; recent polars adds it to its own
CONF = "thp:always,metadata_thp:always"


def _settings() -> dict[str, str]:
    """The variables to set while polars is imported: none when it is imported already,
    when huge pages are not asked for, or when the user set ``POLARS_THP``; ``_RJEM_MALLOC_CONF``
    only where unset (a parent process that imported polars passes polars' own settings
    down in it, so an inherited one is no sign of the user's wish: ``POLARS_THP`` adds
    huge pages to it)."""
    if "polars" in sys.modules or POLARS_THP in os.environ or not envflags.enabled(HUGE_PAGES, False):
        return {}
    return {POLARS_THP: "1", **({} if CONF_VAR in os.environ else {CONF_VAR: CONF})}


def import_polars() -> ModuleType:
    """polars, imported with huge pages when asked for and florgit is the first to import it."""
    settings = _settings()
    os.environ.update(settings)
    try:
        import polars
    finally:
        for name in settings:  # for the import only: no child process inherits them
            os.environ.pop(name, None)
    return polars


def for_this_process() -> None:
    """Huge pages, when asked for, for polars whenever this process imports it (``git flor``)."""
    os.environ.update(_settings())
