"""Queries the query cache answers alone, without opening the repository.

What a query listed is kept for the next query about the same runs: the tree id of every
run, in order, and the tags and notes of curated runs, as a memo (store.memo) under the
listing key (store.memo_keys), which the git CLI tells without pygit2. When the key still
matches and the cache (frames.cache) holds every run, :func:`load` answers from the cache:
no pygit2 (~0.1 s to load), no walk of the runs' trees (~0.06 s at 10,000 runs), and none
of the modules that read git are imported. Otherwise frames.loader reads through the
repository and keeps a new listing. Any new run, pull, replay, tag or ``rm`` changes the
key. A damaged or malformed memo reads as missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from florgit import validation
from florgit.frames.cache import QueryCache
from florgit.frames.loaded import Loaded, Marks, absent_names, assemble
from florgit.store import memo, memo_keys

if TYPE_CHECKING:
    from florgit.git import GitRepo

MEMO = "listed"
VERSION = 1  # bump when what is kept changes


@dataclass(frozen=True)
class Listed:
    common_dir: str
    trees: list[str]  # every listed run's tree id on the shadow branch, oldest run first
    marks: Marks


def _extra() -> tuple[object, ...]:
    from florgit import __version__

    return MEMO, VERSION, __version__


def load_cached(repo_path: str | None, names: list[str] | None) -> Loaded | None:
    """What frames.loader.load answers, from the query cache alone: when the refs still
    say what the last listing read and the cache holds every run it named (None otherwise:
    the caller loads through the repository)."""
    listed = peek(repo_path)
    cache = QueryCache.open_at(listed.common_dir) if listed is not None else None
    if cache is None or not listed.trees:
        return None
    index = cache.index()
    if not all(tree in index for tree in listed.trees):
        return None
    whole = cache.load(listed.trees, names)
    if whole is None or whole.runs.height != len(listed.trees):  # a damaged segment was dropped
        return None
    return assemble(whole, listed.marks, absent_names(whole, names, cache, set()))


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


def keep(repo: GitRepo, key_before: str, trees: list[str], marks: Marks) -> None:
    """Keep a listing read through ``repo``, unless a writer changed the runs since
    ``key_before`` was read: then it may mix two states, and the next query lists again."""
    if key(repo) != key_before:
        return
    kept = [[run_id, list(tags), note] for run_id, (tags, note) in marks.items()]
    memo.write(repo.common_dir, MEMO, key_before, (json.dumps(kept) + "\n" + "".join(t + "\n" for t in trees)).encode())


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
        if not (isinstance(tags, list) and all(type(t) is str for t in tags)):
            return None
        if not (note is None or type(note) is str):
            return None
        curated[run_id] = (tuple(tags), note)
    return Listed(common_dir, trees, curated)


def load(repo_path: str | None = None, names: list[str] | None = None) -> Loaded:
    """Every run's tables, as frames.loader.load gives them: from the query cache alone
    where it can (:func:`load_cached`), which imports nothing that reads git."""
    loaded = load_cached(repo_path, names)
    if loaded is not None:
        return loaded
    from florgit.frames.loader import load as load_through_git

    return load_through_git(repo_path, names)
