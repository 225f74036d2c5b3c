"""What is wrong with one stored run: the checks ``git flor verify`` reports and
``git flor pull`` quarantines by. One function, so both judge a run the same way.

A run is checked through the same typed boundaries queries read it with (meta model,
bounded Arrow decoding, replay part model), plus what only a full check can afford: the
references between its tables, replay parts that would replace recorded values, and the
names and modes of every entry of its code snapshot (git fsck --strict's rules).
"""

from __future__ import annotations

from florgit import validation
from florgit.errors import RunInProgressError, StoreError
from florgit.git import GitRepo
from florgit.store import consistency, layout, runs, trust
from florgit.store.replays import read_replays
from florgit.store.runs import StoredRun, meta_from, read_files



def run_problems(repo: GitRepo, run: StoredRun, *, deep: bool = True) -> list[str]:
    """Every problem found in ``run``, each one line naming the run; empty if none."""
    problems: list[str] = []
    try:
        files = read_files(repo, run, (layout.META_FILE, *layout.TABLE_COLUMNS))
        meta = meta_from(files[layout.META_FILE], run.run_id)
    except RunInProgressError:
        return []  # ranks 1.. ended before rank 0: nothing wrong, and nothing shown yet
    except StoreError as exc:
        return [str(exc)]
    problems += _code_problems(repo, run)
    if meta.code_tree is not None and repo.subtree(run.tree, layout.CODE_DIR) not in (None, meta.code_tree):
        problems.append(f"run {run.run_id}: its code/ tree is not the code_tree its meta.json names")
    if deep:
        problems += _table_problems(repo, run, files)
        for rank, rank_files in runs.rank_files(repo, run, meta, (layout.META_FILE, *layout.TABLE_COLUMNS), problems):
            problems += [f"rank {rank} of {line}" for line in _table_problems(repo, run, rank_files, replays=False)]
    return problems


def _code_problems(repo: GitRepo, run: StoredRun) -> list[str]:
    """The snapshot's entries by git fsck --strict's rules (the ones replay exports by)."""
    code = repo.subtree(run.tree, layout.CODE_DIR)
    if code is None:
        return []
    try:
        trust.code_entries(repo, code)
    except StoreError as exc:
        return [f"run {run.run_id}: {exc}"]
    return []


def _table_problems(repo: GitRepo, run: StoredRun, files: dict[str, bytes], replays: bool = True) -> list[str]:
    import polars as pl

    from florgit.codec import ipc_bounds

    budget = validation.memory_budget()
    frames = {}
    try:
        for name, columns in layout.TABLE_COLUMNS.items():
            frames[name] = ipc_bounds.read_checked(files[name], columns, budget, None, name, run.run_id)
    except StoreError as exc:
        return [f"run {run.run_id}: {exc}"]
    records, starts, loops = frames[layout.RECORDS], frames[layout.STARTS], frames[layout.LOOPS]
    problems = [f"run {run.run_id}: {why}" for why in consistency.one_run(records, starts, loops)]
    recorded = set(records.get_column("name").unique().to_list())
    for part in read_replays(repo, run, problems) if replays else ():
        try:
            added = ipc_bounds.read_checked(part.records, layout.TABLE_COLUMNS[layout.RECORDS], budget, None, layout.RECORDS, run.run_id)
        except StoreError as exc:
            problems.append(f"run {run.run_id}: replay {part.replay_id}/{part.part}: {exc}")
            continue
        names = set(added.get_column("name").unique().to_list())
        if names & recorded or names - set(part.names):
            clash = sorted((names & recorded) | (names - set(part.names)))[0]
            problems.append(
                f"run {run.run_id}: replay {part.replay_id}/{part.part} tries to set {clash!r}, which the run "
                "recorded itself or the replay does not declare (queries ignore those values)"
            )
        if added.height and not added.filter(~pl.col("ctx").is_between(0, starts.height)).is_empty():
            problems.append(f"run {run.run_id}: replay {part.replay_id}/{part.part} refers to loop iterations the run does not have")
    return problems
