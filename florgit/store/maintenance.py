"""Keeping florgit's data healthy: ``verify`` what runs, notes and checkpoints refer to,
and ``gc`` what is left over (stale pending refs, dead index lines) before git's own gc."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from florgit.errors import FlorgitError
from florgit.git import GitRepo
from florgit.git.command import run_git
from florgit.store import checkpoints as ckpts
from florgit.store import checks, layout, quarantine, runs, tombstones
from florgit.store.meta import NoteLine
from florgit.store.recovery import recover_abandoned


@dataclass
class Report:
    runs: int = 0
    notes: int = 0
    checkpoints: int = 0
    objects: int = 0
    problems: list[str] = field(default_factory=list)


def verify(repo: GitRepo, deep: bool = True, on_run: Callable[[int, int, str], None] | None = None) -> Report:
    """Every object a run, note or checkpoint refers to is present and hash-valid, and
    every run passes the checks queries and pulls apply (store.checks); with ``deep``,
    every table, replay part and checkpoint array is decoded and checked as well. Runs set
    aside with ``git flor rm`` are not checked."""
    report = Report()
    checked: set[str] = set()

    def check(oid: str, what: str) -> bool:
        if oid in checked:
            return True
        checked.add(oid)
        why = repo.check_object(oid)
        if why:
            report.problems.append(f"{what}: object {oid} is {why}")
        return why is None

    report.problems += runs.layout_problems(repo)
    stored = runs.list_runs(repo)
    report.runs = len(stored)
    for done, run in enumerate(stored):
        if on_run is not None:
            on_run(done, len(stored), run.run_id)  # for a progress bar
        intact = True
        try:
            for path, _kind, oid in repo.walk(run.tree):
                intact &= check(oid, f"run {run.run_id} {path}")
        except FlorgitError as exc:
            report.problems.append(f"run {run.run_id}: {exc}")
            continue
        if intact:
            report.problems += checks.run_problems(repo, run, deep=deep)
    _verify_notes(repo, report, {r.path for r in runs.list_runs(repo, removed=True)})
    for run in stored:
        good, bad = ckpts.scan_checkpoints(repo, run.run_id)
        report.problems += [str(b.error) for b in bad]
        for info in good:
            report.checkpoints += 1
            where = f"checkpoint {run.run_id} {info.loop} {info.iteration}"
            if all(check(c, where) for c in info.chunks) and deep:
                try:
                    ckpts.load_arrays(repo, ckpts.read_manifest(repo, info), where)
                except FlorgitError as exc:
                    report.problems.append(str(exc))
    report.objects = len(checked)
    return report


def _verify_notes(repo: GitRepo, report: Report, paths: set[str]) -> None:
    for commit, lines in runs.run_notes(repo).items():
        for line in lines:
            report.notes += 1
            try:
                note = NoteLine.parse(line, commit)
            except FlorgitError as exc:
                report.problems.append(str(exc))
                continue
            if note.path not in paths and note.run not in quarantine.held(repo):
                report.problems.append(f"note on {commit}: names {note.path}, which the shadow branch does not have")


def gc(repo: GitRepo, progress: bool = False) -> list[str]:
    """Recover killed runs, drop stale pending refs and dead index lines, then run git's
    gc with settings for incompressible blobs (no delta search on big blobs, light zlib)."""
    done = [f"recovered run {r} (killed)" for r in recover_abandoned(repo)]
    live = set(os.listdir(layout.spool_root(repo.git_dir))) if os.path.isdir(layout.spool_root(repo.git_dir)) else set()
    for ref in repo.refs_under(layout.PENDING_PREFIX):
        run_id = ref.removeprefix(layout.PENDING_PREFIX)
        if run_id not in live:
            repo.delete_ref(ref)
            done.append(f"removed stale {ref}")
    done += drop_removed_checkpoints(repo)
    dropped = ckpts.compact_index(repo)
    if dropped:
        done.append(f"dropped {dropped} dead checkpoint-index lines")
    cwd = repo.workdir or repo.git_dir
    before = _size(cwd)
    quiet = [] if progress else ["--quiet"]  # git's own progress goes to a terminal
    run_git(cwd, "-c", "core.bigFileThreshold=1m", "-c", "pack.compression=1", "gc", *quiet, show_stderr=progress)
    done.append(f"git gc: {before / 1e6:.1f} MB -> {_size(cwd) / 1e6:.1f} MB of objects")
    return done


def drop_removed_checkpoints(repo: GitRepo) -> list[str]:
    """Take the checkpoints of runs set aside with ``git flor rm`` off the checkpoints ref,
    with every chunk no other run uses (a chunk shared with a kept run stays). Runs
    recorded here that someone else removed keep theirs: a pulled removal only hides."""
    from florgit.store import trust

    hidden = tombstones.removed(repo)
    protected = (hidden & trust.own_runs(repo)) - tombstones.removed_here(repo)
    gone = hidden - protected
    runs_tree = repo.tree_at(layout.CHECKPOINTS_REF, layout.RUNS_DIR)
    kept_note = (
        [f"kept the checkpoints of {len(protected)} run(s) recorded here that a teammate removed "
         f"({', '.join(sorted(protected)[:3])}{', ...' if len(protected) > 3 else ''}); "
         "`git flor rm RUN` here drops them too"]
        if protected else []
    )  # fmt: skip
    if not gone or runs_tree is None:
        return kept_note
    kept_chunks: set[str] = set()
    dropped_chunks: set[str] = set()
    paths: dict[str, str | None] = {}
    for path, run_id, tree in runs.walk_run_trees(repo, runs_tree):
        good, _bad = ckpts.scan_checkpoints(repo, run_id, tree, path)  # a run still going counts as kept
        chunks = {c for info in good for c in info.chunks}
        if run_id in gone:
            dropped_chunks |= chunks
            paths[path] = None
        else:
            kept_chunks |= chunks
    only_removed = dropped_chunks - kept_chunks
    paths.update({ckpts.blob_path(c): None for c in only_removed})
    if not paths:
        return kept_note
    freed = sum(repo.object_size(c) for c in only_removed if repo.has_object(c))
    repo.put_blobs_in_ref(layout.CHECKPOINTS_REF, paths, f"flor: gc checkpoints of {len(paths) - len(only_removed)} removed run(s)")
    return [
        f"dropped the checkpoints of {len(paths) - len(only_removed)} removed run(s): {len(only_removed)} chunks, "
        f"{freed / 1e6:.1f} MB that no kept run uses (git frees the space when it prunes unreachable objects)"
    ] + kept_note


def _size(cwd: str) -> int:
    stats = dict(
        line.split(": ", 1) for line in run_git(cwd, "count-objects", "-v").stdout.splitlines() if ": " in line
    )
    return (int(stats.get("size", 0)) + int(stats.get("size-pack", 0))) * 1024



