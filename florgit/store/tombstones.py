"""Runs set aside with ``git flor rm``: tombstones on a local ref.

A tombstone is a blob ``<run id>`` (the reason, as text) on ``refs/flor/removed``. The
run's data stays where it is, so a union merge from a pull that brings the run again
changes nothing: queries, replay and ``git flor log`` skip every run with a tombstone.
The ref is never pushed or fetched, so nobody else can hide your runs, and your
curation does not decide what teammates see.
"""

from __future__ import annotations

import time

from florgit import validation
from florgit.git import GitRepo

REMOVED_REF = "refs/flor/removed"


def removed(repo: GitRepo) -> set[str]:
    """Ids of every run set aside (entries that are not run ids are ignored)."""
    tree = repo.tree_at(REMOVED_REF)
    if tree is None:
        return set()
    return {name for name, kind, _oid in repo.list_tree(tree) if kind == "blob" and validation.RUN_ID.match(name)}


def remove(repo: GitRepo, run_ids: list[str], reason: str = "") -> None:
    note = f"removed {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}{': ' + reason if reason else ''}\n"
    blob = repo.write_blob(note.encode())
    repo.put_blobs_in_ref(REMOVED_REF, dict.fromkeys(run_ids, blob), f"flor: rm {' '.join(run_ids)}")


def restore(repo: GitRepo, run_ids: list[str]) -> None:
    repo.put_blobs_in_ref(REMOVED_REF, dict.fromkeys(run_ids), f"flor: restore {' '.join(run_ids)}")
