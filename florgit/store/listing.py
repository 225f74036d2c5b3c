"""A local memo of which runs a ``runs/`` tree holds, keyed by that tree's id.

Listing 10,000 runs walks a few hundred trees (~0.2 s in Python); every query and
``git flor log`` starts with it. A tree id fixes everything below it, so the listing of
the same ``runs/`` tree is the same listing: it is kept in ``.git/flor/cache/listing``
(store.memo: local, never pushed, safe to delete) and read back instead of walking when the
id matches. A damaged or foreign file is ignored and rewritten.
"""

from __future__ import annotations

import re

from florgit.store import layout, memo

NAME = "listing"
# One pattern over the whole body (checked in C): validation.RUN_ID, a tree id, the layout.
_BODY = re.compile(rb"(?:[0-9]{8}-[0-9]{6}\.[0-9]{3}-[0-9a-f]{8} [0-9a-f]{40} [nl]\n)*")


def load(common_dir: str, runs_tree: str) -> list[tuple[str, str, str]] | None:
    """``(path, run id, tree)`` of the runs ``runs_tree`` holds, if remembered."""
    body = memo.read(common_dir, NAME, runs_tree)
    if body is None or _BODY.fullmatch(body) is None:  # every line a run id, a tree id and n (fanned out) or l (legacy)
        return None
    out = []
    for line in body.decode("ascii").splitlines():
        run_id, tree, where = line.split(" ")
        out.append((layout.run_path(run_id) if where == "n" else layout.legacy_run_path(run_id), run_id, tree))
    return out


def save(common_dir: str, runs_tree: str, found: list[tuple[str, str, str]]) -> None:
    """Remember the listing of ``runs_tree``."""
    lines = [f"{run_id} {tree} {'n' if path == layout.run_path(run_id) else 'l'}" for path, run_id, tree in found]
    memo.write(common_dir, NAME, runs_tree, ("\n".join(lines) + "\n").encode() if lines else b"")
