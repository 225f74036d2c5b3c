"""The key of memos (store.memo) derived from the run listing and the runs' own files:
the ids of the ``runs/`` tree, of the curation tree (tags, notes, removals) and of this
clone's removals (layout.LISTING_SOURCES), plus the deriving code's version.

Two ways to read it that always agree: :func:`listing_key` through an open repository,
and :func:`peek_listing_key` through the git CLI without loading pygit2, so that a memo
hit (a listing, a repeated query) skips that import; :func:`look_up` tries the peek, then
the opened repository. The peek declines (None) whenever a
killed run's spool is waiting to be recovered: recovery adds a run, so the caller must
open the repository, recover, and key again.
"""

from __future__ import annotations

from collections.abc import Callable
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
    found = peek.tree_ids(start, layout.LISTING_SOURCES)
    if found is None or spool.any_abandoned(found.git_dir):
        return None
    return Peeked(found.common_dir, memo.key_of(*found.trees, *extra))


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
