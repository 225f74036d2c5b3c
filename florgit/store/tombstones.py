"""Runs set aside with ``git flor rm``: shared removal events plus a local record.

A removal is an ``rm`` event (``restore`` undoes it) in the shared curation log, so it
travels with push and pull like a tag: a run one person removed is hidden in every
clone that pulls. The run's data stays where it is, so a union merge that brings the
run again changes nothing, and ``git flor rm --undo`` always brings it back.

Because a teammate's removal is only a hiding, it can't destroy anything either:
``refs/flor/removed`` (local, never pushed) records the removals made in this clone,
and ``git flor gc`` drops checkpoint data only for those, or for runs recorded
elsewhere. Your own runs that someone else removed keep their checkpoints until you
remove them yourself. A tombstone on the local ref that no shared event decides yet
(from florgit before removals were shared) still hides its run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from florgit import validation
from florgit.store import curation, layout

if TYPE_CHECKING:
    from florgit.git import GitRepo  # loads pygit2: a cache hit does without it

REMOVED_REF = layout.REMOVED_REF


def removed(repo: GitRepo) -> set[str]:
    """Ids of every run set aside, here or by anyone whose events were pulled."""
    marks = curation.state(repo)
    shared = {run_id for run_id, c in marks.items() if c.removed}
    legacy = {run_id for run_id in removed_here(repo) if not marks.get(run_id, curation.Curation()).decided}
    return shared | legacy


def removed_by(repo: GitRepo) -> dict[str, str]:
    """Each removed run and who removed it (as their event names them)."""
    return {run_id: c.removed_by for run_id, c in curation.state(repo).items() if c.removed}


def removed_here(repo: GitRepo) -> set[str]:
    """Runs removed in this clone (entries that are not run ids are ignored)."""
    tree = repo.tree_at(REMOVED_REF)
    if tree is None:
        return set()
    return {name for name, kind, _oid in repo.list_tree(tree) if kind == "blob" and validation.RUN_ID.match(name)}


def remove(repo: GitRepo, run_ids: list[str], reason: str = "") -> None:
    curation.add(repo, run_ids, "rm", [reason], repo.author())
    note = f"removed {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}{': ' + reason if reason else ''}\n"
    blob = repo.write_blob(note.encode())
    repo.put_blobs_in_ref(REMOVED_REF, dict.fromkeys(run_ids, blob), f"flor: rm {' '.join(run_ids)}")


def restore(repo: GitRepo, run_ids: list[str]) -> None:
    curation.add(repo, run_ids, "restore", [""], repo.author())
    repo.put_blobs_in_ref(REMOVED_REF, dict.fromkeys(run_ids), f"flor: restore {' '.join(run_ids)}")
