"""Replay results: durable git data stored with the run they belong to.

A replay writes ``runs/<day>/<run>/replays/<replay id>/<part>/`` on the shadow branch:
``records.arrows`` (the same format as the run's own records, with context ids of the
*original* run, so queries merge them into the run's rows) and ``meta.json``. The
replay id is a hash of the replayed names and the exact code that ran, so replaying the
same thing twice finds it already there and adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import time

from florgit.git import GitRepo
from florgit.store import layout
from florgit.store.runs import StoredRun

REPLAYS_DIR = "replays"


def replay_id(names: list[str], code: str) -> str:
    return hashlib.sha1(json.dumps([sorted(names), code]).encode()).hexdigest()[:16]


def replay_path(run_id: str, rid: str, part: str) -> str:
    return f"{layout.run_path(run_id)}/{REPLAYS_DIR}/{rid}/{part}"


def exists(repo: GitRepo, run_id: str, rid: str) -> bool:
    return repo.tree_at(layout.SHADOW_REF, f"{layout.run_path(run_id)}/{REPLAYS_DIR}/{rid}") is not None


def store_replay(repo: GitRepo, spec, stored: StoredRun, buffers, started: float) -> tuple[int, int]:
    """Map the replay's records onto the original contexts and commit them; returns
    (values stored, values dropped because the original run had no such context)."""
    from florgit.codec import arrow

    original = _paths(
        [tuple(r.values()) for r in _table(repo, stored, layout.LOOPS)],
        [tuple(r.values()) for r in _table(repo, stored, layout.STARTS)],
        by_path=True,
    )
    replayed = _paths(list(buffers.loops), list(buffers.starts), by_path=False)
    kept, dropped = [], 0
    for ctx, name, value in buffers.records:
        if name not in spec.names:
            continue
        target = 0 if ctx == 0 else original.get(replayed.get(ctx))
        if target is None:
            dropped += 1
            continue
        kept.append((target, name, value))
    meta = {
        "replay_id": spec.replay_id,
        "part": spec.part,
        "names": spec.names,
        "strategy": spec.strategy,
        "execute": spec.execute,
        "started": started,
        "ended": time.time(),
        "values": len(kept),
        "dropped": dropped,
    }
    import pyarrow as pa

    table = pa.Table.from_batches([arrow.record_batch(kept)], schema=arrow.RECORD_SCHEMA)
    tree = repo.write_tree(
        {layout.RECORDS: repo.write_blob(arrow.to_stream_bytes(table)), layout.META_FILE: repo.write_blob(json.dumps(meta).encode())}
    )
    repo.put_tree_in_ref(
        layout.SHADOW_REF, replay_path(spec.run_id, spec.replay_id, spec.part), tree,
        f"flor: replay {', '.join(spec.names)} for {spec.run_id}",
    )  # fmt: skip
    return len(kept), dropped


def read_replays(repo: GitRepo, run: StoredRun) -> list[tuple[dict, bytes]]:
    """Every stored replay part of a run: (meta, records stream), oldest first."""
    replays = repo.subtree(run.tree, REPLAYS_DIR)
    if replays is None:
        return []
    found = []
    for _rid, _part, part_tree in repo.nested_trees(replays):
        files = repo.blobs_in_tree(part_tree, (layout.META_FILE, layout.RECORDS))
        if len(files) == 2:
            found.append((json.loads(files[layout.META_FILE]), files[layout.RECORDS]))
    # Replays in the order they were made (later ones win per context); the parts of one
    # replay in loop order, however the processes that computed them finished.
    first = {}
    for meta, _data in found:
        first[meta["replay_id"]] = min(first.get(meta["replay_id"], meta["started"]), meta["started"])
    return sorted(found, key=lambda f: (first[f[0]["replay_id"]], (f[0].get("execute") or [0])[0]))


def _table(repo: GitRepo, stored: StoredRun, name: str) -> list[dict]:
    from florgit.store.runs import read_table

    return read_table(repo, stored, name).to_pylist()


def _paths(loops: list[tuple], starts: list[tuple], *, by_path: bool) -> dict:
    """ctx -> its chain of (loop name, iteration), or the reverse with ``by_path``."""
    loop_info = {row[0]: (row[1], row[3]) for row in loops}  # loop_id -> (parent ctx, name)
    ctx_info = {row[0]: (row[1], row[2]) for row in starts}  # ctx -> (loop_id, iteration)
    memo: dict[int, tuple] = {0: ()}

    def path(ctx: int) -> tuple | None:
        if ctx in memo:
            return memo[ctx]
        found = ctx_info.get(ctx)
        if found is None or found[0] not in loop_info:
            return None
        parent, name = loop_info[found[0]]
        above = path(parent)
        memo[ctx] = None if above is None else (*above, (name, found[1]))
        return memo[ctx]

    out = {}
    for ctx in ctx_info:
        p = path(ctx)
        if p is not None:
            if by_path:
                out.setdefault(p, ctx)  # a repeated loop instance maps to its first context
            else:
                out[ctx] = p
    return out
