"""Snapshot the code a run starts with, as `git add -A` would see it, without touching
the user's index file.

A fresh Repository object reads the index into memory; florgit stages changes there and
writes only the resulting tree object, never the index. Untracked files larger than a
cap (datasets, checkpoints someone forgot to ignore) are left out and reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pygit2

S = pygit2.enums.FileStatus
_CHANGED = S.WT_MODIFIED | S.WT_TYPECHANGE | S.WT_RENAMED


@dataclass
class Snapshot:
    tree: str
    dirty: bool
    skipped: list[str] = field(default_factory=list)


def take(path: str, max_untracked_bytes: int) -> Snapshot:
    repo = pygit2.Repository(path)
    index = repo.index
    index.read(True)
    skipped: list[str] = []
    for name, flags in repo.status(untracked_files="all").items():
        try:
            if flags & S.WT_DELETED:
                index.remove(name)
            elif flags & S.WT_NEW:
                size = os.lstat(os.path.join(repo.workdir, name)).st_size
                if size > max_untracked_bytes:
                    skipped.append(name)
                else:
                    index.add(name)
            elif flags & _CHANGED:
                index.add(name)
        except (pygit2.GitError, OSError, KeyError):
            skipped.append(name)  # unreadable files, submodules: recorded as left out
    tree = index.write_tree()
    head_tree = None if repo.head_is_unborn else repo.head.peel(pygit2.Commit).tree_id
    return Snapshot(tree=str(tree), dirty=tree != head_tree, skipped=sorted(skipped))
