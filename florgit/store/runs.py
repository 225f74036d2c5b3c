"""Runs on the shadow branch: writing a finished run, listing and reading runs back.

Each run is a commit on ``flor.shadow`` adding ``runs/<day>/<xx>/<run id>/`` (see
layout.run_path; runs stored before the fan-out sit at ``runs/<day>/<run id>/`` and are
read, and added to, where they are) with the run's ``meta.json``, its Arrow streams
(``records``, ``loops``, ``starts``, ``ends``) and ``code/`` (the snapshot tree).
The tip's tree therefore holds every run; run paths never collide, so concurrent writers
only ever race on the ref, which compare-and-swap resolves.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from florgit import validation
from florgit.errors import (
    AmbiguousRunError,
    FlorgitWarning,
    InvalidDataError,
    RunInProgressError,
    RunNotFoundError,
    StoreError,
)
from florgit.store import layout, listing, tombstones, trust
from florgit.store.meta import RunMeta

if TYPE_CHECKING:
    import pyarrow as pa

    from florgit.git import GitRepo  # loads pygit2: a cache hit does without it


class StoredRun(NamedTuple):  # a tuple: listing 10,000 runs builds 10,000 of them
    run_id: str
    tree: str  # id of the run's tree on the shadow branch
    path: str  # where that tree is: layout.run_path, or the legacy path of an older run


_BUCKET = re.compile(r"\A[0-9a-f]{2}\Z")


# A day's runs, as its tree lists them: its tree id, then each entry in tree order, either a
# run stored before the fan-out ``(run id, tree)`` or a bucket ``(name, tree, [(run id, tree)])``.
DayRuns = tuple[str, list]


def walk_run_trees(
    repo: GitRepo, runs_tree: str, problems: dict[str, str] | None = None
) -> Iterator[tuple[str, str, str]]:
    """``(path, run id, tree)`` of every run under a ``runs/`` tree (the shadow branch's
    or the checkpoints ref's), in either layout; entries that are neither are skipped,
    and named in ``problems`` (path -> why) when given."""
    yield from flatten_days(list_days(repo, runs_tree, problems=problems))


def list_days(
    repo: GitRepo, runs_tree: str, known: dict[str, DayRuns] | None = None, problems: dict[str, str] | None = None
) -> dict[str, DayRuns]:
    """The runs under a ``runs/`` tree, day by day (see DayRuns). A day or bucket whose
    tree id is the one ``known`` has for it is taken from there, not listed again: an id
    fixes everything below it, so after a new run only its day and bucket are listed."""

    def bad(path: str, why: str) -> None:
        if problems is not None:
            problems[path] = why

    days: dict[str, DayRuns] = {}
    for day, kind, day_tree in repo.list_tree(runs_tree):
        base = f"{layout.RUNS_DIR}/{day}"
        if kind != "tree":
            bad(base, "not a folder of runs")
            continue
        before = known.get(day) if known is not None else None
        if before is not None and before[0] == day_tree:
            days[day] = before
            continue
        buckets = {e[0]: e for e in before[1] if len(e) == 3} if before is not None else {}
        entries: list = []
        for name, sub_kind, oid in repo.list_tree(day_tree):
            if sub_kind == "tree" and _is_run_id(day, name):
                entries.append((name, oid))  # stored before the fan-out
            elif sub_kind == "tree" and _BUCKET.match(name):
                if name in buckets and buckets[name][1] == oid:
                    entries.append(buckets[name])
                    continue
                runs = []
                for run_id, run_kind, tree in repo.list_tree(oid):
                    if run_kind == "tree" and _is_run_id(day, run_id) and run_id[-8:-6] == name:
                        runs.append((run_id, tree))
                    else:
                        bad(f"{base}/{name}/{run_id}", "not a florgit run path")
                entries.append((name, oid, runs))
            else:
                bad(f"{base}/{name}", "not a florgit run path")
        days[day] = (day_tree, entries)
    return days


def flatten_days(days: dict[str, DayRuns]) -> list[tuple[str, str, str]]:
    """``(path, run id, tree)`` of each run of ``days``, in tree order."""
    out = []
    for day, (_tree, entries) in days.items():
        base = f"{layout.RUNS_DIR}/{day}"
        for entry in entries:
            if len(entry) == 2:
                out.append((f"{base}/{entry[0]}", entry[0], entry[1]))
            else:
                prefix = f"{base}/{entry[0]}/"
                out += [(prefix + run_id, run_id, tree) for run_id, tree in entry[2]]
    return out


def persist_run(repo: GitRepo, meta: RunMeta, tables: dict[str, bytes]) -> None:
    """Write a finished run (its Arrow streams by file name) to the shadow branch and its
    note; safe to repeat."""
    path = layout.run_path(meta.run_id)
    if repo.tree_at(layout.SHADOW_REF, layout.legacy_run_path(meta.run_id)) is not None:
        path = layout.legacy_run_path(meta.run_id)  # stored before the fan-out: one place per run
    blobs = {name: repo.write_blob(data) for name, data in tables.items()}
    blobs[layout.META_FILE] = repo.write_blob(meta.to_json())
    if meta.rank:  # a rank of a multi-process run: its own folder in the run's
        run_tree = repo.write_tree(blobs)
        where = f"{path}/{layout.RANKS_DIR}/{meta.rank}"
        repo.put_tree_in_ref(layout.SHADOW_REF, where, run_tree, f"flor: run {meta.run_id} rank {meta.rank} ({meta.status})")
        return
    code = {layout.CODE_DIR: meta.code_tree} if meta.code_tree and repo.has_object(meta.code_tree) else {}
    run_tree = repo.write_tree(blobs, code)
    # fill: other ranks of the launch may have stored their folders before rank 0 ends
    repo.put_tree_in_ref(layout.SHADOW_REF, path, run_tree, f"flor: run {meta.run_id} ({meta.status})", fill=True)
    trust.mark_own(repo, meta.run_id)  # recorded in this clone: its code is the user's own
    if meta.user_commit:
        try:
            _add_note(repo, meta, path)
        except StoreError as exc:  # the run itself is stored; its note is only an index
            warnings.warn(f"florgit: run {meta.run_id} is stored but its note is not: {exc}", FlorgitWarning, stacklevel=2)
    repo.delete_ref(layout.pending_ref(meta.run_id))


# A commit's note lists its first runs only: a sweep of thousands of runs from one commit
# would otherwise rewrite an ever larger note blob with every run (`git flor log` lists all).
MAX_NOTE_LINES = 100


def _add_note(repo: GitRepo, meta: RunMeta, path: str) -> None:
    line = meta.note_line(path)
    marker = f'"run":"{meta.run_id}"'

    def edit(old: str) -> str | None:
        if marker in old:
            return None
        lines = [ln for ln in old.splitlines() if ln.strip()]
        if len(lines) >= MAX_NOTE_LINES:
            return None
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


def list_runs(repo: GitRepo, *, removed: bool = False) -> list[StoredRun]:
    """Every run on the shadow branch, oldest first; runs set aside with ``git flor rm``
    are left out unless ``removed``. Entries whose names are not florgit run paths are
    skipped here and reported by :func:`layout_problems`."""
    runs_tree = repo.tree_at(layout.SHADOW_REF, layout.RUNS_DIR)
    if runs_tree is None:
        return []
    remembered = listing.load(repo.common_dir)  # the last listing, of this runs/ tree or an earlier one
    if remembered is not None and remembered[0] == runs_tree:
        days = remembered[1]
    else:
        days = list_days(repo, runs_tree, remembered[1] if remembered is not None else None)
        listing.save(repo.common_dir, runs_tree, days)
    walked = flatten_days(days)
    first: dict[str, tuple[str, str]] = {}
    for path, run_id, tree in walked:  # a run at both paths (forged): the first; the other is a layout problem
        first.setdefault(run_id, (tree, path))
    gone = set() if removed else tombstones.removed(repo)
    return [StoredRun(run_id, *first[run_id]) for run_id in sorted(first) if run_id not in gone]


def _is_run_id(day: str, run_id: str) -> bool:
    return validation.RUN_ID.match(run_id) is not None and run_id[:8] == day


def layout_problems(repo: GitRepo) -> list[str]:
    """Entries under ``runs/`` that are not runs in either layout, and runs stored twice."""
    runs_tree = repo.tree_at(layout.SHADOW_REF, layout.RUNS_DIR)
    if runs_tree is None:
        return []
    problems: dict[str, str] = {}
    seen: set[str] = set()
    for path, run_id, _tree in walk_run_trees(repo, runs_tree, problems):
        if run_id in seen:
            problems[path] = f"a second copy of run {run_id}"
        seen.add(run_id)
    return [f"{path} is {why}; it is ignored" for path, why in problems.items()]


def find_run(repo: GitRepo, ref: str, *, removed: bool = False) -> StoredRun:
    """The run ``ref`` names: its id, a unique prefix or suffix of it (the random part
    alone works), ``latest`` or ``latest~N`` (N runs before the newest)."""
    return resolve_run(repo, ref, list_runs(repo, removed=removed), removed=removed)


def resolve_run(repo: GitRepo, ref: str, runs: list[StoredRun], *, removed: bool = False) -> StoredRun:
    """:func:`find_run` among ``runs`` (oldest first), listed once by the caller."""
    latest = LATEST.match(ref)
    if latest:
        back = int(latest.group(1) or 0)
        if back < len(runs):
            return runs[-1 - back]
        raise RunNotFoundError(ref)
    exact = [r for r in runs if r.run_id == ref]
    if exact:
        return exact[0]
    matches = [r for r in runs if ref and (r.run_id.startswith(ref) or r.run_id.endswith(ref))]
    if len(matches) > 1:
        raise AmbiguousRunError(ref, [r.run_id for r in matches])
    if not matches:
        hidden = [] if removed else [r for r in list_runs(repo, removed=True) if r.run_id.startswith(ref) or r.run_id.endswith(ref)]
        raise RunNotFoundError(ref, hidden[0].run_id if len(hidden) == 1 else None)
    return matches[0]


LATEST = re.compile(r"\Alatest(?:~(\d{1,9}))?\Z")


def read_meta(repo: GitRepo, run: StoredRun) -> RunMeta:
    """The run's validated meta.json (InvalidDataError if it fails a check)."""
    return meta_from(_file(repo, run, layout.META_FILE), run.run_id)


def meta_from(data: bytes, run_id: str) -> RunMeta:
    """A run's own meta.json: rank 0's (ranks 1.. have theirs in ranks/<rank>/)."""
    meta = RunMeta.parse(data, run_id)
    if meta.rank != 0:
        raise InvalidDataError(f"meta.json of run {run_id}", f"field 'rank' is {meta.rank}; a run's own meta is rank 0's", run_id)
    return meta


def read_files(repo: GitRepo, run: StoredRun, names: tuple[str, ...], max_table_bytes: int | None = None) -> dict[str, bytes]:
    """Several files of one run, reading its tree once; a table over ``max_table_bytes``
    (default: the memory free now) is refused unread."""
    found = _capped_blobs(repo, run.tree, names, f"run {run.run_id}", run.run_id, max_table_bytes)
    missing = [n for n in names if n not in found]
    if missing:
        if layout.META_FILE in missing and repo.subtree(run.tree, layout.RANKS_DIR) is not None:
            raise RunInProgressError(run.run_id)
        raise InvalidDataError(f"run {run.run_id}", f"it has no {missing[0]} (missing or not a file)", run.run_id)
    return found


def rank_files(
    repo: GitRepo, run: StoredRun, meta: RunMeta, names: tuple[str, ...], problems: list[str] | None = None,
    max_table_bytes: int | None = None,
) -> Iterator[tuple[int, dict[str, bytes]]]:
    """``(rank, files)`` of each other rank of a multi-process run that stored its part, by
    rank; the rank's meta.json is checked to be of this run and rank. A folder that is
    not a rank of the run, or is incomplete, is left out with a warning (or, given
    ``problems``, a line there)."""
    ranks_tree = repo.subtree(run.tree, layout.RANKS_DIR)
    if ranks_tree is None:
        return
    found = []
    for name, kind, oid in repo.list_tree(ranks_tree):
        rank = int(name) if _RANK_NAME.match(name) else 0
        if kind != "tree" or not 0 < rank < meta.world_size:
            _rank_left_out(run.run_id, name, f"it is not a rank of this run (world size {meta.world_size})", problems)
            continue
        found.append((rank, oid))
    for rank, oid in sorted(found):
        try:
            files = _capped_blobs(repo, oid, names, f"rank {rank} of run {run.run_id}", run.run_id, max_table_bytes)
            missing = [n for n in names if n not in files]
            if missing:
                raise InvalidDataError(f"rank {rank} of run {run.run_id}", f"it has no {missing[0]}", run.run_id)
            own = RunMeta.parse(files[layout.META_FILE], run.run_id)
            if own.rank != rank or own.world_size != meta.world_size:
                raise InvalidDataError(
                    f"rank {rank} of run {run.run_id}",
                    f"its meta.json says rank {own.rank} of {own.world_size}, not rank {rank} of {meta.world_size}",
                    run.run_id,
                )
        except InvalidDataError as exc:
            _rank_left_out(run.run_id, str(rank), str(exc), problems)
            continue
        yield rank, files


def _capped_blobs(
    repo: GitRepo, tree: str, names: tuple[str, ...], what: str, run_id: str, max_table_bytes: int | None
) -> dict[str, bytes]:
    """The named files of a run's (or rank's) tree, each refused unread when its object
    header says it is bigger than it may be: a meta.json over MAX_JSON_BYTES, a table
    over ``max_table_bytes`` or the memory free now (its Arrow sizes are checked after)."""
    free = 0 if all(n == layout.META_FILE for n in names) else max_table_bytes
    free = validation.memory_budget() if free is None else free
    caps = {n: validation.MAX_JSON_BYTES if n == layout.META_FILE else free for n in names}
    try:
        return repo.blobs_in_tree(tree, names, caps)
    except StoreError as exc:
        raise InvalidDataError(what, str(exc), run_id) from None


_RANK_NAME = re.compile(r"\A[1-9][0-9]{0,4}\Z")


def _rank_left_out(run_id: str, name: str, why: str, problems: list[str] | None) -> None:
    line = f"{layout.RANKS_DIR}/{name} of run {run_id} is left out: {why}"
    if problems is not None:
        problems.append(line)
    else:
        warnings.warn(f"florgit: {line}", FlorgitWarning, stacklevel=4)


def read_table(repo: GitRepo, run: StoredRun, name: str) -> pa.Table:
    """One of the run's tables (``layout.RECORDS``, ``LOOPS``, ``STARTS``, ``ENDS``), its
    declared sizes checked before it is decoded and its contents validated after."""
    from florgit.codec import arrow, ipc_bounds

    data, what = _file(repo, run, name), f"{name} of run {run.run_id}"
    ipc_bounds.check_stream(data, layout.TABLE_COLUMNS[name], validation.memory_budget(), what, run.run_id)
    try:
        table = arrow.from_stream_bytes(data)
        table.validate(full=True)  # e.g. string offsets that point outside their buffer
    except Exception as exc:  # pyarrow's errors: whatever it is, the table is unusable
        raise InvalidDataError(what, f"it cannot be decoded ({str(exc)[:200]})", run.run_id) from None
    return table


def _file(repo: GitRepo, run: StoredRun, name: str) -> bytes:
    return read_files(repo, run, (name,))[name]


def run_notes(repo: GitRepo) -> dict[str, list[str]]:
    """``{user commit: [note lines]}`` from ``refs/notes/flor``."""
    return {c: [ln for ln in text.splitlines() if ln.strip()] for c, text in repo.read_notes(layout.NOTES_REF).items()}
