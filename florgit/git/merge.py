"""Union merges of florgit's refs: runs, notes and checkpoints are only ever added, so
two histories merge by taking every path of both trees.

Paths seen on both sides with different blobs are resolved by a callback (notes: union of
their lines; elsewhere content addressing means they never differ). No merge base is
needed, and nothing is ever deleted.
"""

from __future__ import annotations

from collections.abc import Callable

import pygit2

from florgit.errors import RefUpdateConflict
from florgit.git import refs, trees

Resolve = Callable[[str, bytes, bytes], bytes]


def union_trees(
    repo: pygit2.Repository, ours: pygit2.Tree, theirs: pygit2.Tree, resolve: Resolve, prefix: str = "",
    exclude: frozenset[str] = frozenset(),
) -> pygit2.Oid:
    """Every path of both trees; paths of ``theirs`` listed in ``exclude`` are left out."""
    if ours.id == theirs.id:
        return ours.id
    builder = repo.TreeBuilder(ours)
    for entry in theirs:
        mine = ours[entry.name] if entry.name in ours else None
        if prefix + entry.name in exclude:
            continue
        if mine is None and entry.type_str == "tree" and any(p.startswith(f"{prefix}{entry.name}/") for p in exclude):
            merged = union_trees(repo, _empty(repo), repo[entry.id], resolve, f"{prefix}{entry.name}/", exclude)
            builder.insert(entry.name, merged, trees.TREE_MODE)
        elif mine is None:
            builder.insert(entry.name, entry.id, entry.filemode)
        elif mine.id == entry.id:
            continue
        elif mine.type_str == "tree" and entry.type_str == "tree":
            merged = union_trees(repo, repo[mine.id], repo[entry.id], resolve, f"{prefix}{entry.name}/", exclude)
            builder.insert(entry.name, merged, trees.TREE_MODE)
        elif mine.type_str == "blob" and entry.type_str == "blob":
            data = resolve(prefix + entry.name, repo[mine.id].data, repo[entry.id].data)
            builder.insert(entry.name, repo.create_blob(data), mine.filemode)
        # a tree on one side and a blob on the other cannot come from florgit: keep ours
    return builder.write()


def merge_into(
    repo: pygit2.Repository, ref: str, other: str, resolve: Resolve, signature: pygit2.Signature,
    exclude: frozenset[str] = frozenset(),
) -> str:
    """Bring commit ``other`` into ``ref``: fast-forward when possible, else a union merge
    commit with both as parents. Paths in ``exclude`` (quarantined data) are left out of
    the merged tree, so there is no fast-forward or plain creation while any are given.
    Compare-and-swap, so concurrent local writers are safe.
    Returns what happened: 'up to date', 'fast-forward', 'merged' or 'created'."""
    other_id = pygit2.Oid(hex=other)
    for _ in range(refs.MAX_ATTEMPTS):
        reference = repo.references.get(ref)
        if reference is None and exclude:
            tree = union_trees(repo, _empty(repo), repo[other_id].peel(pygit2.Commit).tree, resolve, exclude=exclude)
            commit = repo.create_commit(None, signature, signature, f"flor: take {other[:12]} into {ref}", tree, [other_id])
            if refs.create_new(repo, ref, str(commit), f"flor: take {other[:12]} into {ref}"):
                return "created"
            continue
        if reference is None:
            if refs.create_new(repo, ref, other, f"flor: take {other[:12]} into {ref}"):  # not if someone created it meanwhile
                return "created"
            continue
        head = repo[reference.target].peel(pygit2.Commit)
        if head.id == other_id or repo.descendant_of(head.id, other_id):
            return "up to date"
        if repo.descendant_of(other_id, head.id) and not exclude:
            if _cas(reference, other_id):
                return "fast-forward"
            continue
        tree = union_trees(repo, head.tree, repo[other_id].peel(pygit2.Commit).tree, resolve, exclude=exclude)
        if exclude and tree == head.tree.id:
            return "up to date"
        try:
            repo.create_commit(ref, signature, signature, f"flor: merge {other[:12]} into {ref}", tree, [head.id, other_id])
            return "merged"
        except (pygit2.GitError, OSError):
            continue
    raise RefUpdateConflict(ref, refs.MAX_ATTEMPTS)


def _empty(repo: pygit2.Repository) -> pygit2.Tree:
    return repo[repo.TreeBuilder().write()]


def _cas(reference: pygit2.Reference, new: pygit2.Oid) -> bool:
    """Move ``reference`` to ``new`` only if it still points where it did when it was read
    (libgit2 checks the old target under the ref lock)."""
    try:
        reference.set_target(new)
    except (pygit2.GitError, OSError):
        return False
    return True


def union_lines(_path: str, ours: bytes, theirs: bytes) -> bytes:
    """git's cat_sort_uniq for notes: every line of both, sorted, once."""
    lines = {ln for ln in (ours + b"\n" + theirs).splitlines() if ln.strip()}
    return b"\n".join(sorted(lines)) + b"\n"


def keep_ours(_path: str, ours: bytes, _theirs: bytes) -> bytes:
    return ours
