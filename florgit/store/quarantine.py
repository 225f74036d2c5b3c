"""Runs a pull refused: checked before they are merged, left on the tracking ref.

``git flor pull`` (and the hooks that merge fetched refs) run every run that is new or
changed on the remote through :func:`florgit.store.checks.run_problems`. A run that
fails is not merged into ``flor.shadow``; it stays on ``refs/flor/remotes/<remote>/shadow``
where it was fetched, and is listed in ``.git/flor/quarantine`` (one line per run: id,
remote, why) so ``git flor verify`` can tell a quarantined run from a missing one.
"""

from __future__ import annotations

import os

from florgit.git import GitRepo
from florgit.store import checks, layout
from florgit.store.runs import StoredRun, walk_run_trees

QUARANTINE_FILE = os.path.join("flor", "quarantine")


def incoming_problems(repo: GitRepo, tracking_ref: str) -> dict[str, str]:
    """``{run path: why}`` for every run on ``tracking_ref`` that is not already, with
    the same content, on the local shadow branch and fails a check."""
    theirs = repo.tree_at(tracking_ref, layout.RUNS_DIR)
    if theirs is None:
        return {}
    ours = repo.tree_at(layout.SHADOW_REF, layout.RUNS_DIR)
    known = {path: tree for path, _run, tree in walk_run_trees(repo, ours)} if ours else {}
    bad: dict[str, str] = {}
    for path, run_id, tree in walk_run_trees(repo, theirs, bad):  # bad: what is not a run path
        if known.get(path) == tree:
            continue
        problems = checks.run_problems(repo, StoredRun(run_id, tree, path))
        if problems:
            bad[path] = problems[0]
    return bad


def hold(repo: GitRepo, remote: str, bad: dict[str, str]) -> None:
    """Remember what a pull left out (replacing what was held from ``remote`` before)."""
    path = os.path.join(repo.git_dir, QUARANTINE_FILE)
    kept = [ln for ln in _lines(path) if ln.split("\t")[1:2] != [remote]]
    new = [f"{p.rsplit('/', 1)[-1]}\t{remote}\t{' '.join(why.split())}" for p, why in bad.items()]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(ln + "\n" for ln in kept + new)
    os.replace(tmp, path)


def held(repo: GitRepo) -> set[str]:
    """Ids of the runs pulls have quarantined."""
    return {ln.split("\t", 1)[0] for ln in _lines(os.path.join(repo.git_dir, QUARANTINE_FILE))}


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [ln.rstrip("\n") for ln in f if ln.strip()]
    except OSError:
        return []
