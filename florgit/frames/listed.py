"""What a query listed, kept for the next query about the same runs: the tree id of every
run, in order, and the tags and notes of curated runs.

Kept as a memo (store.memo) under the listing key (store.memo_keys), which the git CLI
tells without pygit2. So a new question about runs the query cache already holds needs
neither pygit2 (~0.1 s to load) nor a walk of the runs' trees (~0.06 s at 10,000 runs):
the loader (frames.loader) reads this, then the cache. Any new run, pull, replay, tag or
``rm`` changes the key, and the next query lists through the repository again and keeps
a new one. A damaged or foreign file reads as missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from florgit import validation
from florgit.store import memo, memo_keys
from florgit.store.curation import Curation

if TYPE_CHECKING:
    from florgit.git import GitRepo

MEMO = "listed"
VERSION = 1  # bump when what is kept changes


@dataclass(frozen=True)
class Listed:
    common_dir: str
    trees: list[str]  # every listed run's tree id on the shadow branch, oldest run first
    marks: dict[str, Curation]  # run id -> its tags and note, for runs that have either


def _extra() -> tuple[object, ...]:
    from florgit import __version__

    return MEMO, VERSION, __version__


def peek(repo_path: str | None) -> Listed | None:
    """The runs the last query listed, when the refs still say the same (None otherwise,
    or when the repository must be opened: a killed run waits to be recovered)."""
    peeked = memo_keys.peek_listing_key(repo_path, *_extra())
    if peeked is None:
        return None
    return _parse(peeked.common_dir, memo.read(peeked.common_dir, MEMO, peeked.key))


def key(repo: GitRepo) -> str:
    """The key to keep a listing under, read before listing (see :func:`keep`)."""
    return memo_keys.listing_key(repo, *_extra())


def keep(repo: GitRepo, key_before: str, trees: list[str], curated: dict[str, Curation]) -> None:
    """Keep a listing read through ``repo``, unless a writer changed the runs since
    ``key_before`` was read: then it may mix two states, and the next query lists again."""
    if key(repo) != key_before:
        return
    marks = [[run_id, list(c.tags), c.note] for run_id, c in curated.items() if c.tags or c.note]
    memo.write(repo.common_dir, MEMO, key_before, (json.dumps(marks) + "\n" + "".join(t + "\n" for t in trees)).encode())


# The payload: the marks as one JSON line, then one tree id a line (checked in C, as one).
_TREES = re.compile(rb"(?:[0-9a-f]{40}\n)*")


def _parse(common_dir: str, payload: bytes | None) -> Listed | None:
    if payload is None:
        return None
    head, _, body = payload.partition(b"\n")
    if _TREES.fullmatch(body) is None:
        return None
    trees = body.decode("ascii").split("\n")[:-1]
    try:
        marks = json.loads(head)
    except ValueError:
        return None
    if not isinstance(marks, list):
        return None
    curated = {}
    for mark in marks:
        if not (isinstance(mark, list) and len(mark) == 3):
            return None
        run_id, tags, note = mark
        if type(run_id) is not str or validation.RUN_ID.match(run_id) is None:
            return None
        if not (isinstance(tags, list) and all(type(t) is str for t in tags)) or not (note is None or type(note) is str):
            return None
        curated[run_id] = Curation(tags=tuple(tags), note=note)
    return Listed(common_dir, trees, curated)
