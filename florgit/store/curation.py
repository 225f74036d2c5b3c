"""Tags, notes and removals of runs, shared with push and pull.

They live on ``refs/flor/curation``: one blob per run (``<day>/<run id>``) holding JSON
lines, each an event (``tag``, ``untag``, ``note``, ``rm``, ``restore``) with its time
and author. Events are
only ever added, and the ref is union-merged line by line (like git's ``cat_sort_uniq``
for notes), so two people tagging the same run at once both keep their tags; a run's
tags, note and removal are the events folded in time order. Every line is parsed by
:meth:`Event.parse` (it may come from someone else's push); a bad line is skipped.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from florgit import validation as v
from florgit.errors import FlorgitWarning, StoreError, UsageError
from florgit.store import layout

if TYPE_CHECKING:
    from florgit.git import GitRepo  # loads pygit2: a cache hit does without it

CURATION_REF = layout.CURATION_REF
OPS = ("tag", "untag", "note", "rm", "restore")
TEXT_OPS = ("note", "rm", "restore")  # their value is free text (a note, a reason)
MAX_TAG = 64
MAX_NOTE = 4096
MAX_BLOB = 4 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    t: float
    op: str
    value: str
    by: str

    def to_line(self) -> str:
        return json.dumps({"t": self.t, "op": self.op, "value": self.value, "by": self.by}, sort_keys=True)

    @classmethod
    def parse(cls, line: str, run_id: str) -> Event:
        what = f"a curation line of run {run_id}"
        f = v.Fields(v.load_json(line.encode(), what, run_id), what, run_id)
        op = f.get("op", v.one_of(*OPS))
        value = f.get("value", lambda x: v.text(x, MAX_NOTE if op in TEXT_OPS else MAX_TAG))
        if op not in TEXT_OPS:
            tag_problem(value, what, run_id)
        return cls(f.get("t", v.number), op, value, f.get("by", lambda x: v.text(x, 256), default=""))


@dataclass(frozen=True)
class Curation:
    tags: tuple[str, ...] = ()
    note: str | None = None
    removed: bool = False
    removed_by: str = ""  # who set the run aside, as their event says
    decided: bool = False  # some rm/restore event exists (it overrides an old local tombstone)


def tag_problem(tag: str, what: str = "tag", run_id: str | None = None) -> None:
    why = v.name_problem(tag)
    if why is None and (len(tag) > MAX_TAG or "," in tag):
        why = f"tags are at most {MAX_TAG} characters, without commas"
    if why is not None:
        from florgit.errors import InvalidDataError

        raise InvalidDataError(what, f"{tag[:40]!r} is not a tag ({why})", run_id)


def add(repo: GitRepo, run_ids: list[str], op: str, values: list[str], author: str) -> None:
    """Append events for each run (one commit for all of them)."""
    if op not in TEXT_OPS:
        for value in values:
            try:
                tag_problem(value)
            except StoreError as exc:
                raise UsageError(f"{exc.why}; use letters, digits, '_', '.', '-' or '/'") from None  # type: ignore[attr-defined]
    now = time.time()
    lines = [Event(now, op, value, author).to_line() for value in values]

    def edit(_path: str, old: bytes | None) -> bytes:
        text = (old or b"").decode("utf-8", "replace")
        merged = sorted({*(ln for ln in text.splitlines() if ln.strip()), *lines})
        return ("\n".join(merged) + "\n").encode()

    what = f"{' '.join(run_ids[:3])}{' ...' if len(run_ids) > 3 else ''}"
    message = f"flor: {op} {' '.join(values)[:60]} on {what}".replace("  ", " ")
    repo.edit_blobs_in_ref(CURATION_REF, [_path(r) for r in dict.fromkeys(run_ids)], edit, message, MAX_BLOB)


def state(repo: GitRepo) -> dict[str, Curation]:
    """Every curated run's tags and note."""
    root = repo.tree_at(CURATION_REF)
    if root is None:
        return {}
    out = {}
    for day, kind, day_tree in repo.list_tree(root):
        if kind != "tree":
            continue
        for run_id, sub_kind, oid in repo.list_tree(day_tree):
            if sub_kind != "blob" or v.RUN_ID.match(run_id) is None or run_id[:8] != day:
                continue
            if repo.object_size(oid) > MAX_BLOB:
                warnings.warn(f"florgit: the curation record of run {run_id} is too big; ignored", FlorgitWarning, stacklevel=2)
                continue
            out[run_id] = fold(repo.read_blob(oid).decode("utf-8", "replace"), run_id)
    return out


def fold(text: str, run_id: str) -> Curation:
    events = []
    for line in text.splitlines():
        if line.strip():
            try:
                events.append(Event.parse(line, run_id))
            except StoreError:
                continue  # one bad line (maybe pulled) never hides the others
    tags: dict[str, None] = {}
    note = None
    removed_by: str | None = None
    decided = False
    for event in sorted(events, key=lambda e: (e.t, e.op, e.value)):
        if event.op == "tag":
            tags[event.value] = None
        elif event.op == "untag":
            tags.pop(event.value, None)
        elif event.op == "note":
            note = event.value or None
        else:
            decided = True
            removed_by = event.by if event.op == "rm" else None
    return Curation(tuple(sorted(tags)), note, removed_by is not None, removed_by or "", decided)


def _path(run_id: str) -> str:
    return f"{run_id[:8]}/{run_id}"
