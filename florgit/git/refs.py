"""Compare-and-swap commits onto refs, retried when another process got there first.

``create_commit`` with a ref name checks that the ref's tip is still the commit's first
parent while holding the ref lock, so a lost race is an error rather than a lost commit.
A ref's first commit is the exception: libgit2 writes it unconditionally, and even
``references.create(force=False)`` checks that the ref is absent before taking its lock,
so two processes creating it at once could both succeed, the second erasing the first's
commit. It is created by ``git update-ref`` with an empty old value instead, which git
checks under the lock (:func:`create_new`).
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
            # The ref's first commit: created only if no other process created the ref meanwhile.
            commit = repo.create_commit(None, signature, signature, message, tree, [])
            if create_new(repo, ref, str(commit), message):
                return str(commit)
            raise ValueError(f"{ref} was created meanwhile")
        except (pygit2.GitError, OSError, ValueError):
            time.sleep(random.uniform(0, min(_MAX_SLEEP, 0.002 * 2 ** min(attempt, 8))))
    raise RefUpdateConflict(ref, MAX_ATTEMPTS)


def create_new(repo: pygit2.Repository, ref: str, target: str, message: str) -> bool:
    """Create ``ref`` at commit ``target``; False when the ref exists already. ``git
    update-ref`` with an empty old value checks that under the ref's lock, which libgit2
    does not (see the module's note)."""
    from florgit.git.command import run_git

    args = ("update-ref", "-m", message, "--end-of-options", ref, target, "")
    return run_git(repo.path, f"--git-dir={repo.path}", *args, check=False).returncode == 0
