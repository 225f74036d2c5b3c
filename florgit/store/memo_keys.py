"""The key of memos (store.memo) derived from the run listing and the runs' own files:
the ids of the ``runs/`` tree, of the curation tree (tags, notes, removals) and of this
clone's removals (layout.LISTING_SOURCES), plus the deriving code's version.

Two ways to read it that always agree: :func:`listing_key` through an open repository,
and :func:`peek_listing_key` through the git CLI without loading pygit2, so that a memo
hit (a listing, a repeated query) skips that import; :func:`look_up` tries the peek, then
the opened repository. The peek declines (None) whenever a
killed run's spool is waiting to be recovered: recovery adds a run, so the caller must
open the repository, recover, and key again.

Inside :func:`one_look`, peeks share the first one's reading of the refs: a query that
keys its result and then its listing asks git once, and both see the same runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from florgit.git import peek
from florgit.store import layout, memo, spool

if TYPE_CHECKING:
    from florgit.git import GitRepo


T = TypeVar("T")


class Peeked(NamedTuple):
    common_dir: str
    key: str


def listing_key(repo: GitRepo, *extra: object) -> str:
    return memo.key_of(*(repo.tree_at(ref, path) for ref, path in layout.LISTING_SOURCES), *extra)


def peek_listing_key(start: str | None, *extra: object) -> Peeked | None:
    """:func:`listing_key` of the repository around ``start`` (default: the current
    directory), when it can be told without opening it (see the module's docstring)."""
    looked = _look(start)
    if looked is None:
        return None
    common_dir, trees = looked
    return Peeked(common_dir, memo.key_of(*trees, *extra))


# Within one_look: folder -> what _look answered there (None included).
_shared: ContextVar[dict[str, tuple[str, list[str | None]] | None] | None] = ContextVar("florgit_look", default=None)


@contextmanager
def one_look() -> Iterator[None]:
    """Peeks in this block (this thread or task) read the refs once per folder. A caller
    that checks afterwards whether a writer changed the runs peeks again outside it."""
    token = _shared.set({})
    try:
        yield
    finally:
        _shared.reset(token)


def _look(start: str | None) -> tuple[str, list[str | None]] | None:
    """The common git dir and the listing sources' tree ids, or None (see peek_listing_key)."""
    shared = _shared.get()
    folder = os.path.abspath(start or os.getcwd())
    if shared is not None and folder in shared:
        return shared[folder]
    found = peek.tree_ids(folder, layout.LISTING_SOURCES)
    looked = None if found is None or spool.any_abandoned(found.git_dir) else (found.common_dir, found.trees)
    if shared is not None:
        shared[folder] = looked
    return looked


def look_up(start: str | None, read: Callable[[str, str], T | None], *extra: object) -> tuple[T | None, GitRepo | None, str | None]:
    """What ``read(common_dir, key)`` finds under the listing key: through the peek first
    (no pygit2); where that declines or misses, the repository is opened (killed runs
    recovered first) and read again if its key differs. Returns what was found, and the
    opened repository and its key (None on a peek hit), for a caller that finds nothing
    to build the value and keep it under that key."""
    peeked = peek_listing_key(start, *extra)
    if peeked is not None:
        found = read(peeked.common_dir, peeked.key)
        if found is not None:
            return found, None, None
    from florgit.store.recovery import open_recovered

    repo = open_recovered(start)
    key = listing_key(repo, *extra)
    found = read(repo.common_dir, key) if peeked is None or peeked.key != key else None
    return found, repo, key
