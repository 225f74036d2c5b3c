"""Keeping florgit's data healthy: ``verify`` what runs, notes and checkpoints refer to,
and ``gc`` what is left over (stale pending refs, dead index lines) before git's own gc."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from florgit.errors import FlorgitError
from florgit.git import GitRepo
from florgit.git.command import run_git
from florgit.store import checkpoints as ckpts
from florgit.store import layout, runs
from florgit.store.recovery import recover_abandoned


@dataclass
class Report:
    runs: int = 0
    notes: int = 0
    checkpoints: int = 0
    objects: int = 0
    problems: list[str] = field(default_factory=list)


def verify(repo: GitRepo, deep: bool = True) -> Report:
    """Every object a run, note or checkpoint refers to is present and hash-valid; with
    ``deep``, every Arrow table and checkpoint array is decoded and checked as well."""
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

    stored = runs.list_runs(repo)
    report.runs = len(stored)
    paths = {layout.run_path(r.run_id) for r in stored}
    for run in stored:
        for path, _kind, oid in repo.walk(run.tree):
            check(oid, f"run {run.run_id} {path}")
        if deep:
            _decode_run(repo, run, report)
    for commit, lines in runs.run_notes(repo).items():
        for line in lines:
            report.notes += 1
            try:
                path = json.loads(line)["path"]
            except (ValueError, KeyError, TypeError):
                report.problems.append(f"note on {commit}: not a florgit note line: {line[:80]!r}")
                continue
            if path not in paths:
                report.problems.append(f"note on {commit}: names {path}, which the shadow branch does not have")
    for run_id in {r.run_id for r in stored}:
        for info in ckpts.list_checkpoints(repo, run_id):
            report.checkpoints += 1
            if all(check(c, f"checkpoint {run_id} {info.loop} {info.iteration}") for c in info.chunks) and deep:
                try:
                    ckpts.load_arrays(repo, ckpts.read_manifest(repo, info), f"checkpoint {run_id} {info.loop} {info.iteration}")
                except FlorgitError as exc:
                    report.problems.append(str(exc))
    report.objects = len(checked)
    return report


def _decode_run(repo: GitRepo, run: runs.StoredRun, report: Report) -> None:
    try:
        runs.read_meta(repo, run)
        for name in layout.TABLES:
            runs.read_table(repo, run, name)
    except Exception as exc:  # a damaged table must be reported, whatever the decoder says
        report.problems.append(f"run {run.run_id}: cannot be read ({exc})")


def gc(repo: GitRepo) -> list[str]:
    """Recover killed runs, drop stale pending refs and dead index lines, then run git's
    gc with settings for incompressible blobs (no delta search on big blobs, light zlib)."""
    done = [f"recovered run {r} (killed)" for r in recover_abandoned(repo)]
    live = set(os.listdir(layout.spool_root(repo.git_dir))) if os.path.isdir(layout.spool_root(repo.git_dir)) else set()
    for ref in repo.refs_under(layout.PENDING_PREFIX):
        run_id = ref.removeprefix(layout.PENDING_PREFIX)
        if run_id not in live:
            repo.delete_ref(ref)
            done.append(f"removed stale {ref}")
    dropped = ckpts.compact_index(repo)
    if dropped:
        done.append(f"dropped {dropped} dead checkpoint-index lines")
    cwd = repo.workdir or repo.git_dir
    before = _size(cwd)
    run_git(cwd, "-c", "core.bigFileThreshold=1m", "-c", "pack.compression=1", "gc", "--quiet")
    done.append(f"git gc: {before / 1e6:.1f} MB -> {_size(cwd) / 1e6:.1f} MB of objects")
    return done


def _size(cwd: str) -> int:
    stats = dict(
        line.split(": ", 1) for line in run_git(cwd, "count-objects", "-v").stdout.splitlines() if ": " in line
    )
    return (int(stats.get("size", 0)) + int(stats.get("size-pack", 0))) * 1024



