"""Recovering runs whose process died (SIGKILL, OOM, power) from their spools."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING

from florgit.errors import FlorgitWarning
from florgit.store import layout, spool
from florgit.store.runs import persist_run

if TYPE_CHECKING:
    from florgit.git import GitRepo


def open_recovered(repo_path: str | None = None) -> GitRepo:
    """The repository, runs of killed processes recovered first (they show up in the next query)."""
    from florgit.git import open_repo  # pygit2 loads here, not on import: a cache hit does without it

    repo = open_repo(repo_path, require_workdir=False)
    recover_abandoned(repo)
    return repo


def recover_abandoned(repo: GitRepo) -> list[str]:
    """Commit every abandoned spool as a ``killed`` run; returns the recovered run ids."""
    recovered = []
    for abandoned in spool.abandoned(repo.git_dir):
        meta = abandoned.meta()
        if meta is None:
            continue
        from florgit.codec import arrow  # pyarrow only when there is something to recover

        schemas = {
            layout.LOOPS: arrow.LOOP_SCHEMA,
            layout.STARTS: arrow.START_SCHEMA,
            layout.ENDS: arrow.END_SCHEMA,
            layout.RECORDS: arrow.RECORD_SCHEMA,
        }
        # Re-serialised from the complete batches: a kill may have torn the last one.
        tables = {name: arrow.read_stream(abandoned.path(name), schema) for name, schema in schemas.items()}
        if meta.status == "running":  # a run that had finished keeps its status
            meta.status = "killed"
        meta.end = meta.end or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(abandoned.last_write()))
        meta.records = tables[layout.RECORDS].num_rows
        try:
            persist_run(repo, meta, {name: arrow.to_stream_bytes(t) for name, t in tables.items()})
        except Exception as exc:  # keep the spool for the next attempt
            warnings.warn(f"florgit: could not recover run {meta.run_id} yet: {exc}", FlorgitWarning, stacklevel=2)
            continue
        abandoned.remove()
        recovered.append(meta.run_id)
    return recovered

