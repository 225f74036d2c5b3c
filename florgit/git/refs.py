"""Compare-and-swap commits onto refs, retried when another process got there first.

``create_commit`` with a ref name checks that the ref's tip is still the commit's first
parent while holding the ref lock, so a lost race is an error rather than a lost commit.
A ref's first commit is the exception (libgit2 then writes the ref unconditionally): it
is created with ``force=False`` instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pygit2

from florgit.errors import RefUpdateConflict, StoreError

MAX_ATTEMPTS = 200
_MAX_SLEEP = 0.2


def tip(repo: pygit2.Repository, ref: str) -> pygit2.Commit | None:
    """The commit ``ref`` points at, or None if there is no such ref. A ref that points at
    anything else (a blob, a missing object) is an error at once: retrying could never
    fix it, and treating it as absent would make every writer fight over it."""
    try:
        reference = repo.references.get(ref)
    except (pygit2.GitError, ValueError):
        return None
    if reference is None:
        return None
    try:
        target = reference.resolve().target
        obj = repo.get(target)
    except (pygit2.GitError, KeyError, ValueError):
        obj, target = None, getattr(reference, "target", "?")
    if isinstance(obj, pygit2.Commit):
        return obj
    what = "a missing object" if obj is None else f"a {obj.type_str}"
    raise StoreError(
        f"{ref} points at {what} ({target}), not a commit, so florgit cannot use it; "
        f"if you have a good copy, `git flor pull`; otherwise move it aside with "
        f"`git update-ref -d {ref}` (that ref's runs can be fetched again from a remote)"
    )


def commit_cas(
    repo: pygit2.Repository,
    ref: str,
    make_tree: Callable[[pygit2.Tree | None], pygit2.Oid | None],
    message: str,
    signature: pygit2.Signature,
) -> str | None:
    """Commit ``make_tree(tip_tree)`` on ``ref`` with the tip as parent, retrying races.

    ``make_tree`` returns None when there is nothing to change (the commit is skipped).
    Returns the new commit id, or None when skipped.
    """
    for attempt in range(MAX_ATTEMPTS):
        head = tip(repo, ref)
        tree = make_tree(head.tree if head is not None else None)
        if tree is None:
            return None
        try:
            if head is not None:
                return str(repo.create_commit(ref, signature, signature, message, tree, [head.id]))
            # The ref's first commit: libgit2 would overwrite a ref created meanwhile by
            # another process, so create the ref without force, which fails if it exists.
            commit = repo.create_commit(None, signature, signature, message, tree, [])
            repo.references.create(ref, commit, force=False)
            return str(commit)
        except (pygit2.GitError, OSError, ValueError):
            time.sleep(random.uniform(0, min(_MAX_SLEEP, 0.002 * 2 ** min(attempt, 8))))
    raise RefUpdateConflict(ref, MAX_ATTEMPTS)
