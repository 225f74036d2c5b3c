"""Finished query frames kept as memos (store.memo): asking ``flor.dataframe`` the same
question about the same runs again (a notebook's cell run once more, a plotting script
started again) reads one file instead of the query cache and git.

A memo is keyed by the listing's tree ids (store.memo_keys, read without pygit2) and the
question, so any new run, replay, pull or ``rm`` makes it miss; each question has its own
file, replaced when its runs change. Only frames built without a warning are kept (a run
left out, a name never logged: the next call reads again and says so again), and only
when no writer changed the runs while the frame was built. Frames are kept
zstd-compressed, up to ``MAX_FRAME_BYTES`` in memory each; the oldest go once the memos
pass ``MAX_FILES`` or ``MAX_TOTAL_BYTES`` on disk.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from florgit.errors import noting_warnings
from florgit.store import memo, memo_keys

if TYPE_CHECKING:
    import polars as pl

VERSION = 1  # bump when what a query answers changes
PREFIX = "result-"
MAX_FRAME_BYTES = 128 * 1024 * 1024  # compressing more would slow the first answer noticeably
MAX_FILES = 32
MAX_TOTAL_BYTES = 256 * 1024 * 1024


def through(compute: Callable[[], pl.DataFrame], repo_path: str | None, *question: object) -> pl.DataFrame:
    """``compute()``, or the frame it gave for the same ``question`` about the same runs."""
    from florgit import __version__

    with memo_keys.one_look():  # compute's own peek (the listing it loads) asks git no more
        peeked = memo_keys.peek_listing_key(repo_path, PREFIX, VERSION, __version__, *question)
        if peeked is None:  # a recovery is due, or the refs need a closer look: no memo
            return compute()
        name = memo_name(*question)
        remembered = _from_memo(memo.read(peeked.common_dir, name, peeked.key))
        if remembered is not None:
            _touch(memo.path_of(peeked.common_dir, name))
            return remembered
        frame, whole = noting_warnings(compute)
    if not whole or _too_big(frame):
        return frame
    if memo_keys.peek_listing_key(repo_path, PREFIX, VERSION, __version__, *question) == peeked:
        out = io.BytesIO()
        frame.write_ipc(out, compression="zstd")
        memo.write(peeked.common_dir, name, peeked.key, out.getvalue())
        _evict(peeked.common_dir)
    return frame


def _too_big(frame: pl.DataFrame) -> bool:
    """Whether ``frame`` is over MAX_FRAME_BYTES: its fixed-width columns are sized at once
    and often decide it; sizing string columns walks their values (0.06 s per 100M rows)."""
    fixed = sum(c.estimated_size() for c in frame.iter_columns() if c.dtype.is_numeric() or c.dtype.is_temporal())
    return fixed > MAX_FRAME_BYTES or frame.estimated_size() > MAX_FRAME_BYTES


def memo_name(*question: object) -> str:
    """The file a question's frame is kept in (one per question, whatever the runs)."""
    return PREFIX + memo.key_of(VERSION, *question)[:24]


def _from_memo(payload: bytes | None) -> pl.DataFrame | None:
    if payload is None:
        return None
    import polars as pl

    try:
        return pl.read_ipc(io.BytesIO(payload))
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None


def _touch(path: str) -> None:
    try:  # the most recently used stay longest
        os.utime(path)
    except OSError:
        pass


def _evict(common_dir: str) -> None:
    """Drop the least recently used result memos beyond the file and byte budgets (the
    one just used stays, whatever its size)."""
    folder = os.path.dirname(memo.path_of(common_dir, PREFIX))
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(PREFIX) and not entry.name.endswith(".tmp"):
                    st = entry.stat(follow_symlinks=False)
                    found.append((st.st_mtime, st.st_size, entry.path))
    except OSError:
        return
    found.sort(reverse=True)  # newest first
    total = 0
    for count, (_mtime, size, path) in enumerate(found, 1):
        total += size
        if count > 1 and (count > MAX_FILES or total > MAX_TOTAL_BYTES):  # the newest always stays
            try:
                os.remove(path)
            except OSError:
                pass
