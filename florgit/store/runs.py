"""Runs on the shadow branch: writing a finished run, listing and reading runs back.

Each run is a commit on ``flor.shadow`` adding ``runs/<day>/<run id>/`` with the run's
``meta.json``, its Arrow streams (``records``, ``loops``, ``starts``, ``ends``) and
``code/`` (the snapshot tree).
The tip's tree therefore holds every run; run paths never collide, so concurrent writers
only ever race on the ref, which compare-and-swap resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

from florgit.errors import RunNotFoundError, StoreError
from florgit.git import GitRepo
from florgit.store import layout
from florgit.store.meta import RunMeta

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    tree: str  # id of the run's tree on the shadow branch


def persist_run(repo: GitRepo, meta: RunMeta, tables: dict[str, bytes]) -> None:
    """Write a finished run (its Arrow streams by file name) to the shadow branch and its
    note; safe to repeat."""
    path = layout.run_path(meta.run_id)
    blobs = {name: repo.write_blob(data) for name, data in tables.items()}
    blobs[layout.META_FILE] = repo.write_blob(meta.to_json())
    code = {layout.CODE_DIR: meta.code_tree} if meta.code_tree and repo.has_object(meta.code_tree) else {}
    run_tree = repo.write_tree(blobs, code)
    repo.put_tree_in_ref(layout.SHADOW_REF, path, run_tree, f"flor: run {meta.run_id} ({meta.status})")
    if meta.user_commit:
        _add_note(repo, meta, path)
    repo.delete_ref(layout.pending_ref(meta.run_id))


def _add_note(repo: GitRepo, meta: RunMeta, path: str) -> None:
    line = meta.note_line(path)
    marker = f'"run":"{meta.run_id}"'

    def edit(old: str) -> str | None:
        if marker in old:
            return None
        lines = [ln for ln in old.splitlines() if ln.strip()]
        return "\n".join(sorted([*lines, line])) + "\n"

    repo.update_note(layout.NOTES_REF, meta.user_commit, edit, f"flor: note run {meta.run_id}")


def copy_notes(repo: GitRepo, pairs: list[tuple[str, str]]) -> int:
    """Carry run notes from rewritten commits to their new ones (amend, rebase); lines
    are unioned, so running after git's own ``notes.rewriteRef`` copy changes nothing."""
    copied = 0
    for old, new in pairs:
        text = repo.read_note(layout.NOTES_REF, old)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            continue

        def edit(current: str, lines: list[str] = lines) -> str | None:
            merged = sorted({*lines, *(ln for ln in current.splitlines() if ln.strip())})
            return None if merged == sorted(ln for ln in current.splitlines() if ln.strip()) else "\n".join(merged) + "\n"

        if repo.update_note(layout.NOTES_REF, new, edit, f"flor: carry notes {old[:12]} -> {new[:12]}"):
            copied += 1
    return copied


def list_runs(repo: GitRepo) -> list[StoredRun]:
    """Every run on the shadow branch, oldest first."""
    runs_tree = repo.tree_at(layout.SHADOW_REF, layout.RUNS_DIR)
    if runs_tree is None:
        return []
    found = [StoredRun(run_id, tree) for _day, run_id, tree in repo.nested_trees(runs_tree)]
    return sorted(found, key=lambda r: r.run_id)


def find_run(repo: GitRepo, prefix: str) -> StoredRun:
    """The run whose id is ``prefix`` or starts with it (it must be unique)."""
    matches = [r for r in list_runs(repo) if r.run_id.startswith(prefix)]
    exact = [r for r in matches if r.run_id == prefix]
    if exact:
        return exact[0]
    if len(matches) != 1:
        raise RunNotFoundError(prefix)
    return matches[0]


def read_meta(repo: GitRepo, run: StoredRun) -> RunMeta:
    return meta_from(_file(repo, run, layout.META_FILE))


def meta_from(data: bytes) -> RunMeta:
    return RunMeta.from_json(data)


def read_files(repo: GitRepo, run: StoredRun, names: tuple[str, ...]) -> dict[str, bytes]:
    """Several files of one run, reading its tree once."""
    found = repo.blobs_in_tree(run.tree, names)
    missing = [n for n in names if n not in found]
    if missing:
        raise StoreError(f"run {run.run_id} has no {missing[0]}; run `git flor verify` to see what is damaged")
    return found


def read_table(repo: GitRepo, run: StoredRun, name: str) -> pa.Table:
    """One of the run's tables (``layout.RECORDS``, ``LOOPS``, ``STARTS``, ``ENDS``)."""
    from florgit.codec import arrow

    return arrow.from_stream_bytes(_file(repo, run, name))


def _file(repo: GitRepo, run: StoredRun, name: str) -> bytes:
    return read_files(repo, run, (name,))[name]


def run_notes(repo: GitRepo) -> dict[str, list[str]]:
    """``{user commit: [note lines]}`` from ``refs/notes/flor``."""
    return {c: [ln for ln in text.splitlines() if ln.strip()] for c, text in repo.read_notes(layout.NOTES_REF).items()}
