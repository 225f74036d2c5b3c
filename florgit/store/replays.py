"""Replay results: durable git data stored with the run they belong to.

A replay writes ``runs/<day>/<xx>/<run>/replays/<replay id>/<part>/`` on the shadow branch:
``records.arrows`` (the same format as the run's own records, with context ids of the
*original* run, so queries merge them into the run's rows), ``meta.json`` and
``code.py`` (the patched script that ran). The replay id is a hash of the replayed names
and that code, so replaying the same thing twice finds it already there and adds
nothing, and a part whose id does not match its names and code is refused. A part only
adds values: names the run recorded itself are never replaced (see frames.loader).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from florgit import validation as v
from florgit.errors import FlorgitWarning, InvalidDataError, StoreError
from florgit.store import layout
from florgit.store.runs import StoredRun

if TYPE_CHECKING:
    from florgit.git import GitRepo  # loads pygit2: a cache hit does without it

REPLAYS_DIR = "replays"


def replay_id(names: list[str], code: str) -> str:
    return hashlib.sha1(json.dumps([sorted(names), code]).encode()).hexdigest()[:16]


def replay_path(run: StoredRun, rid: str, part: str) -> str:
    """Inside the run's own folder, wherever that is (legacy layout included)."""
    return f"{run.path}/{REPLAYS_DIR}/{rid}/{part}"


@dataclass(frozen=True)
class ReplayPart:
    """One stored replay part, validated: its id and part name are the ones its path
    says, and its id is the hash of its names and the exact code that computed them."""

    replay_id: str
    part: str
    names: tuple[str, ...]
    strategy: str
    execute: tuple[int, ...] | None
    started: float
    ended: float
    values: int
    dropped: int
    records: bytes  # the Arrow stream, decoded by the caller

    @classmethod
    def parse(cls, run_id: str, rid: str, part: str, files: dict[str, bytes]) -> ReplayPart:
        what = f"replay {rid}/{part} of run {run_id}"
        missing = [n for n in (layout.META_FILE, layout.RECORDS, CODE_FILE) if n not in files]
        if missing:
            raise InvalidDataError(what, f"it has no {missing[0]}", run_id)
        f = v.Fields(v.load_json(files[layout.META_FILE], what, run_id), what, run_id)
        names = tuple(f.get("names", _names))
        if f.get("replay_id", v.text) != rid or replay_id(list(names), _code(files[CODE_FILE], what, run_id)) != rid:
            raise InvalidDataError(what, "its id is not the hash of its names and code (altered or forged)", run_id)
        if f.get("part", v.text) != part or not PART.match(part):
            raise f.fail("part", f"does not match its folder {part!r}")
        execute = f.get("execute", _ints, default=None, optional=True)
        return cls(
            replay_id=rid,
            part=part,
            names=names,
            strategy=f.get("strategy", v.one_of("run", "outer", "inner", "full")),
            execute=None if execute is None else tuple(execute),
            started=f.get("started", v.number),
            ended=f.get("ended", v.number),
            values=f.get("values", v.integer),
            dropped=f.get("dropped", v.integer, default=0),
            records=files[layout.RECORDS],
        )


PART = re.compile(r"\A(all|\d{1,9}-\d{1,9})\Z")
RID = re.compile(r"\A[0-9a-f]{16}\Z")
CODE_FILE = "code.py"  # the patched script that ran: the replay id is verified against it


def _names(value: object) -> list[str]:
    names = v.text_list(value)
    if not names or len(names) > 1000:
        raise v.BadField("must list the replayed names")
    return [v.name(n) for n in names]


def _ints(value: object) -> list[int]:
    if type(value) is not list or len(value) > v.MAX_ITEMS:
        raise v.BadField("must be a list of iteration numbers")
    return [v.integer(x) for x in value]


def _code(data: bytes, what: str, run_id: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidDataError(what, "its code is not UTF-8 text", run_id) from None


def store_replay(repo: GitRepo, spec, stored: StoredRun, buffers, started: float, code: str) -> tuple[int, int]:
    """Map the replay's records onto the original contexts and commit them with the code
    that computed them; returns (values stored, values dropped because the original run
    had no such context)."""
    from florgit.codec import arrow

    loops, starts = _stored_loops(repo, stored)
    original = _paths(loops, starts, by_path=True)
    replayed = _paths(
        {loop_id: (parent, name) for loop_id, parent, _depth, name in buffers.loops},
        {ctx: (loop_id, iteration) for ctx, loop_id, iteration, _item, _t in buffers.start_rows()},
        by_path=False,
    )
    kept, dropped = [], 0
    for ctx, name, value in buffers.record_rows():
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
        {
            layout.RECORDS: repo.write_blob(arrow.to_stream_bytes(table)),
            layout.META_FILE: repo.write_blob(json.dumps(meta).encode()),
            CODE_FILE: repo.write_blob(code.encode()),
        }
    )
    repo.put_tree_in_ref(
        layout.SHADOW_REF, replay_path(stored, spec.replay_id, spec.part), tree,
        f"flor: replay {', '.join(spec.names)} for {spec.run_id}",
    )  # fmt: skip
    return len(kept), dropped


def read_replays(repo: GitRepo, run: StoredRun, problems: list[str] | None = None) -> list[ReplayPart]:
    """Every valid replay part of a run, oldest first. A part that fails validation is
    left out; why goes to ``problems`` (or a warning)."""
    replays = repo.subtree(run.tree, REPLAYS_DIR)
    if replays is None:
        return []
    found = []
    for rid, part, part_tree in repo.nested_trees(replays):
        try:
            if not RID.match(rid):
                raise InvalidDataError(f"replay folder {rid[:40]!r} of run {run.run_id}", "it is not a replay id", run.run_id)
            files = repo.blobs_in_tree(part_tree, (layout.META_FILE, layout.RECORDS, CODE_FILE), v.MAX_JSON_BYTES * 64)
            found.append(ReplayPart.parse(run.run_id, rid, part, files))
        except StoreError as exc:
            _report(problems, str(exc))
    # Replays in the order they were made (later ones win per context); the parts of one
    # replay in loop order, however the processes that computed them finished.
    first: dict[str, float] = {}
    for p in found:
        first[p.replay_id] = min(first.get(p.replay_id, p.started), p.started)
    return sorted(found, key=lambda p: (first[p.replay_id], (p.execute or (0,))[0]))


def _report(problems: list[str] | None, message: str) -> None:
    if problems is None:
        warnings.warn(f"florgit: {message}", FlorgitWarning, stacklevel=3)
    else:
        problems.append(message)


def _stored_loops(repo: GitRepo, stored: StoredRun) -> tuple[dict[int, tuple[int, str]], dict[int, tuple[int, int]]]:
    """The original run's ``loop_id -> (parent ctx, name)`` and ``ctx -> (loop_id, iteration)``."""
    from florgit.store.runs import read_table

    loops = read_table(repo, stored, layout.LOOPS).to_pydict()
    starts = read_table(repo, stored, layout.STARTS).to_pydict()
    return (
        dict(zip(loops["loop_id"], zip(loops["parent"], loops["loop"]))),
        dict(zip(starts["ctx"], zip(starts["loop_id"], starts["iteration"]))),
    )


def _paths(loops: dict[int, tuple[int, str]], starts: dict[int, tuple[int, int]], *, by_path: bool) -> dict:
    """ctx -> its chain of (loop name, iteration), or the reverse with ``by_path``. Walks
    up iteratively, so a deep or cyclic chain (data from elsewhere) cannot recurse forever:
    a context whose chain does not end at the run level has no path."""
    memo: dict[int, tuple | None] = {0: ()}

    def path(ctx: int) -> tuple | None:
        chain, seen = [], set()
        while ctx not in memo:
            found = starts.get(ctx)
            if found is None or found[0] not in loops or ctx in seen:
                memo[ctx] = None
                break
            seen.add(ctx)
            parent, name = loops[found[0]]
            chain.append((ctx, (name, found[1])))
            ctx = parent
        above = memo[ctx]
        for child, step in reversed(chain):
            above = None if above is None else (*above, step)
            memo[child] = above
        return above

    out = {}
    for ctx in starts:
        p = path(ctx)
        if p is not None:
            if by_path:
                out.setdefault(p, ctx)  # a repeated loop instance maps to its first context
            else:
                out[ctx] = p
    return out
