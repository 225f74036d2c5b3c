"""A local memo of which runs a ``runs/`` tree holds, keyed by that tree's id.

Listing 10,000 runs walks a few hundred trees (~0.2 s in Python); every query and
``git flor log`` starts with it. A tree id fixes everything below it, so the listing of
the same ``runs/`` tree is the same listing: it is kept in ``.git/flor/cache/listing``
(local, never pushed, safe to delete) with the tree id and a CRC-32 of its lines, and read
back instead of walking when the id matches. A damaged or foreign file is ignored and
rewritten.
"""

from __future__ import annotations

import os
import re
import zlib

from florgit import envflags
from florgit.store import layout

FILE = os.path.join("flor", "cache", "listing")
_MAGIC = "florgit-listing 1"
# One pattern over the whole body (checked in C): validation.RUN_ID, a tree id, the layout.
_BODY = re.compile(rb"(?:[0-9]{8}-[0-9]{6}\.[0-9]{3}-[0-9a-f]{8} [0-9a-f]{40} [nl]\n)*")


def load(common_dir: str, runs_tree: str) -> list[tuple[str, str, str]] | None:
    """``(path, run id, tree)`` of the runs ``runs_tree`` holds, if remembered."""
    if not envflags.enabled(envflags.QUERY_CACHE, True):
        return None
    try:
        with open(os.path.join(common_dir, FILE), "rb") as f:
            data = f.read()
    except OSError:
        return None
    head, _, body = data.partition(b"\n")
    parts = head.decode("ascii", "replace").split(" ")
    if len(parts) != 4 or " ".join(parts[:2]) != _MAGIC or parts[2] != runs_tree or parts[3] != f"{zlib.crc32(body):08x}":
        return None
    if _BODY.fullmatch(body) is None:  # every line a run id, a tree id and n (fanned out) or l (legacy)
        return None
    out = []
    for line in body.decode("ascii").splitlines():
        run_id, tree, where = line.split(" ")
        out.append((layout.run_path(run_id) if where == "n" else layout.legacy_run_path(run_id), run_id, tree))
    return out


def save(common_dir: str, runs_tree: str, found: list[tuple[str, str, str]]) -> None:
    """Remember the listing of ``runs_tree`` (best effort: a read-only .git just walks again)."""
    if not envflags.enabled(envflags.QUERY_CACHE, True):
        return
    lines = [f"{run_id} {tree} {'n' if path == layout.run_path(run_id) else 'l'}" for path, run_id, tree in found]
    body = ("\n".join(lines) + "\n").encode() if lines else b""
    path = os.path.join(common_dir, FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(f"{_MAGIC} {runs_tree} {zlib.crc32(body):08x}\n".encode() + body)
        os.replace(tmp, path)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
