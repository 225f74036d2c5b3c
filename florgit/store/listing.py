"""A local memo of which runs a ``runs/`` tree holds, keyed by that tree's id.

Listing 10,000 runs walks a few hundred trees (~0.2 s in Python); every query and
``git flor log`` starts with it. A tree id fixes everything below it, so the listing of
the same ``runs/`` tree is the same listing: it is kept in ``.git/flor/cache/listing``
(store.memo: local, never pushed, safe to delete) with the id of every day and bucket tree
it walked, and read back instead of walking when the id matches. When it does not (a new
run), only the days and buckets whose ids changed are walked again (store.runs.list_days).
A damaged file is ignored and rewritten.
"""

from __future__ import annotations

import re

from florgit.store import memo

NAME = "listing"
_RUN = rb"[0-9]{8}-[0-9]{6}\.[0-9]{3}-[0-9a-f]{8}"  # validation.RUN_ID
# One pattern over the whole body (checked in C): a day, a run stored before the fan-out,
# a bucket, a run in the bucket before it; each with its tree id.
_BODY = re.compile(rb"(?:(?:d [0-9]{8}|l " + _RUN + rb"|b [0-9a-f]{2}|r " + _RUN + rb") [0-9a-f]{40}\n)*")


def load(common_dir: str) -> tuple[str, dict] | None:
    """``(runs tree id, days)`` of the last listing kept (store.runs.DayRuns by day)."""
    found = memo.read_any(common_dir, NAME)
    if found is None or _BODY.fullmatch(found[1]) is None:
        return None
    days: dict[str, tuple[str, list]] = {}
    entries = bucket = None
    for tag, name, tree in _LINE.findall(found[1].decode("ascii")):
        if tag == "r":
            if bucket is None:
                return None  # a run outside a bucket
            bucket.append((name, tree))
        elif tag == "d":
            entries, bucket = [], None
            days[name] = (tree, entries)
        elif entries is None:
            return None  # an entry outside a day
        elif tag == "l":
            entries.append((name, tree))
            bucket = None
        else:
            bucket = []
            entries.append((name, tree, bucket))
    return found[0], days


_LINE = re.compile(r"([dlbr]) (\S+) (\S+)\n")  # after _BODY has checked every line


def save(common_dir: str, runs_tree: str, days: dict) -> None:
    """Remember the listing of ``runs_tree``."""
    lines = []
    for day, (tree, entries) in days.items():
        lines.append(f"d {day} {tree}")
        for entry in entries:
            if len(entry) == 2:
                lines.append(f"l {entry[0]} {entry[1]}")
            else:
                lines.append(f"b {entry[0]} {entry[1]}")
                lines += [f"r {run_id} {run_tree}" for run_id, run_tree in entry[2]]
    memo.write(common_dir, NAME, runs_tree, ("\n".join(lines) + "\n").encode() if lines else b"")
