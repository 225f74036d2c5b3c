"""A notes ref written with 2/38 fan-out and compare-and-swap.

libgit2's ``create_note`` rewrites a flat notes tree on every call and has no
compare-and-swap; florgit writes notes trees itself. git reads both layouts, so notes
that ``git notes`` wrote flat are read too, and moved into the fan-out when touched.
"""

from __future__ import annotations

from collections.abc import Callable

import pygit2

from florgit.errors import StoreError
from florgit.git import refs, trees


MAX_NOTE_BYTES = 4 * 1024 * 1024  # a note is a few JSON lines per run; bigger is not florgit's


def _note_blob(repo: pygit2.Repository, tree: pygit2.Tree | None, target: str) -> pygit2.Blob | None:
    """The note blob on ``target``; one over MAX_NOTE_BYTES (checked from its header, so a
    pulled zlib bomb is never inflated) is a StoreError."""
    for path in (f"{target[:2]}/{target[2:]}", target):
        entry = trees.entry(tree, path)
        if entry is not None and entry.type_str == "blob":
            _check_size(repo, entry.id, path)
            return repo[entry.id]
    return None


def _check_size(repo: pygit2.Repository, oid: pygit2.Oid, path: str) -> None:
    size = repo.odb.read_header(oid)[1]
    if size > MAX_NOTE_BYTES:
        raise StoreError(f"the flor note {path} is {size:,} bytes, more than a florgit note can be; it is left alone")


def read(repo: pygit2.Repository, ref: str, target: str) -> str:
    head = refs.tip(repo, ref)
    blob = _note_blob(repo, head.tree if head else None, target)
    return blob.data.decode("utf-8", "replace") if blob else ""


def read_all(repo: pygit2.Repository, ref: str) -> dict[str, str]:
    """Every note on ``ref`` as ``{annotated object id: text}``."""
    head = refs.tip(repo, ref)
    notes: dict[str, str] = {}
    if head is not None:
        _walk(repo, head.tree, "", notes)
    return notes


def _walk(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str, out: dict[str, str]) -> None:
    for entry in tree:
        name = prefix + entry.name
        if entry.type_str == "tree" and len(name) < 40:  # fan-out folders only: bounded depth
            _walk(repo, repo[entry.id], name, out)
        elif entry.type_str == "blob" and len(name) == 40:
            if repo.odb.read_header(entry.id)[1] <= MAX_NOTE_BYTES:  # bigger ones are not florgit's
                out[name] = repo[entry.id].data.decode("utf-8", "replace")


def update(
    repo: pygit2.Repository,
    ref: str,
    target: str,
    edit: Callable[[str], str | None],
    message: str,
    signature: pygit2.Signature,
) -> str | None:
    """Replace the note on ``target`` with ``edit(old_text)``; None from ``edit`` skips."""

    def make_tree(base: pygit2.Tree | None) -> pygit2.Oid | None:
        old = _note_blob(repo, base, target)
        new_text = edit(old.data.decode("utf-8", "replace") if old else "")
        if new_text is None:
            return None
        blob = repo.create_blob(new_text.encode("utf-8"))
        base = _without_flat(repo, base, target)
        return trees.put(repo, base, [target[:2], target[2:]], blob, trees.BLOB_MODE)

    return refs.commit_cas(repo, ref, make_tree, message, signature)


def _without_flat(repo: pygit2.Repository, base: pygit2.Tree | None, target: str) -> pygit2.Tree | None:
    if base is None or target not in base:
        return base
    builder = repo.TreeBuilder(base)
    builder.remove(target)
    return repo[builder.write()]
