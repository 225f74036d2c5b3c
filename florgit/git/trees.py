"""Editing trees by path without a checkout or an index."""

from __future__ import annotations

import pygit2

TREE_MODE = pygit2.enums.FileMode.TREE
BLOB_MODE = pygit2.enums.FileMode.BLOB


def put(repo: pygit2.Repository, base: pygit2.Tree | None, path: list[str], oid: pygit2.Oid, mode: int) -> pygit2.Oid:
    """Return a tree equal to ``base`` with ``path`` pointing at ``oid`` (parents created)."""
    builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    head, rest = path[0], path[1:]
    if rest:
        child = _subtree(repo, base, head)
        builder.insert(head, put(repo, child, rest, oid, mode), TREE_MODE)
    else:
        builder.insert(head, oid, mode)
    return builder.write()


def _subtree(repo: pygit2.Repository, tree: pygit2.Tree | None, name: str) -> pygit2.Tree | None:
    if tree is None or name not in tree:
        return None
    entry = tree[name]
    return repo[entry.id] if entry.type_str == "tree" else None


def fill(repo: pygit2.Repository, there: pygit2.Tree, new: pygit2.Tree) -> pygit2.Oid | None:
    """``there`` with the entries of ``new`` it lacks added (top level only), or None when it
    lacks none."""
    missing = [e for e in new if e.name not in there]
    if not missing:
        return None
    builder = repo.TreeBuilder(there)
    for e in missing:
        builder.insert(e.name, e.id, e.filemode)
    return builder.write()


def entry(tree: pygit2.Tree | None, path: str) -> pygit2.Object | None:
    """The entry at ``path`` inside ``tree`` (its id, mode and type, nothing read), or None."""
    if tree is None:
        return None
    try:
        return tree[path]
    except KeyError:
        return None


def lookup(repo: pygit2.Repository, tree: pygit2.Tree | None, path: str) -> pygit2.Object | None:
    """The object at ``path`` inside ``tree``, or None."""
    if tree is None:
        return None
    try:
        entry = tree[path]
    except KeyError:
        return None
    return repo[entry.id]


def build(repo: pygit2.Repository, entries: dict[str, tuple[pygit2.Oid, int]]) -> pygit2.Oid:
    """Write a flat tree of ``name -> (oid, mode)``."""
    builder = repo.TreeBuilder()
    for name, (oid, mode) in entries.items():
        builder.insert(name, oid, mode)
    return builder.write()


def put_many(repo: pygit2.Repository, base: pygit2.Tree | None, entries: dict[str, tuple[pygit2.Oid | None, int]]) -> pygit2.Oid:
    """Return ``base`` with every ``path -> (oid, mode)`` of ``entries`` in place (an oid of
    None removes the path); each subtree is rewritten once however many entries land in it."""
    here: dict[str, tuple[pygit2.Oid | None, int]] = {}
    below: dict[str, dict[str, tuple[pygit2.Oid | None, int]]] = {}
    for path, value in entries.items():
        head, _, rest = path.partition("/")
        if rest:
            below.setdefault(head, {})[rest] = value
        else:
            here[head] = value
    builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    for name, (oid, mode) in here.items():
        if oid is not None:
            builder.insert(name, oid, mode)
        elif builder.get(name) is not None:
            builder.remove(name)
    for name, sub in below.items():
        builder.insert(name, put_many(repo, _subtree(repo, base, name), sub), TREE_MODE)
    return builder.write()
