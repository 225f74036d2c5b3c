"""Opening the user's repository and the operations florgit's store needs from it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import pygit2

from florgit.errors import BareRepositoryError, NotARepositoryError, StoreError
from florgit.git import merge, notes, objects, refs, snapshot, trees

_FALLBACK_NAME = "florgit"
_FALLBACK_EMAIL = "florgit@localhost"


@dataclass(frozen=True)
class HeadInfo:
    commit: str | None  # None in a repository with no commits yet
    branch: str | None  # None on a detached HEAD
    detached: bool


def open_repo(start: str | None = None, *, require_workdir: bool = True) -> GitRepo:
    """Find the repository containing ``start`` (default: the current directory)."""
    start = os.path.abspath(start or os.getcwd())
    found = pygit2.discover_repository(start)
    if found is None:
        raise NotARepositoryError(start)
    repo = pygit2.Repository(found)
    if require_workdir and repo.is_bare:
        raise BareRepositoryError(found)
    return GitRepo(repo)


class GitRepo:
    """A repository, seen through string ids and ref names."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self._repo = repo

    @property
    def git_dir(self) -> str:
        return os.path.normpath(self._repo.path)

    @property
    def workdir(self) -> str | None:
        return os.path.normpath(self._repo.workdir) if self._repo.workdir else None

    def signature(self) -> pygit2.Signature:
        try:
            return self._repo.default_signature
        except (pygit2.GitError, KeyError):
            return pygit2.Signature(_FALLBACK_NAME, _FALLBACK_EMAIL)

    def author(self) -> str:
        """``Name <email>`` of whoever git would record as author ($GIT_AUTHOR_NAME/EMAIL,
        else user.name/user.email); empty when git knows no one."""
        name, email = os.environ.get("GIT_AUTHOR_NAME"), os.environ.get("GIT_AUTHOR_EMAIL")
        if not (name and email):
            try:
                sig = self._repo.default_signature
                name, email = name or sig.name, email or sig.email
            except (pygit2.GitError, KeyError):
                pass
        return f"{name} <{email}>" if name and email else ""

    def head(self) -> HeadInfo:
        repo = self._repo
        if repo.head_is_unborn:
            return HeadInfo(commit=None, branch=_unborn_branch(repo), detached=False)
        commit = str(repo.head.peel(pygit2.Commit).id)
        if repo.head_is_detached:
            return HeadInfo(commit=commit, branch=None, detached=True)
        return HeadInfo(commit=commit, branch=repo.head.shorthand, detached=False)

    def snapshot(self, max_untracked_bytes: int) -> snapshot.Snapshot:
        return snapshot.take(self._repo.path, max_untracked_bytes)

    # -- objects -----------------------------------------------------------------
    def write_blob(self, data: bytes) -> str:
        return str(objects.write_blob(self._repo, data))

    def read_blob(self, oid: str) -> bytes:
        try:  # straight from the object database: no object wrapper, one copy
            kind, data = self._repo.odb.read(pygit2.Oid(hex=oid))[:2]
        except (KeyError, ValueError) as exc:
            raise StoreError(f"object {oid} is missing; run `git flor verify` or fetch it again") from exc
        except pygit2.GitError as exc:  # e.g. the object's content does not hash to its id
            raise StoreError(f"object {oid} cannot be read ({exc}); run `git flor verify`") from exc
        if int(kind) != pygit2.GIT_OBJECT_BLOB:
            raise StoreError(f"object {oid} is not a blob; run `git fsck` to check the repository")
        return data

    def write_tree(self, blobs: dict[str, str], subtrees: dict[str, str] | None = None) -> str:
        """A flat tree of ``name -> blob id`` and ``name -> tree id`` entries."""
        entries = {name: (pygit2.Oid(hex=oid), trees.BLOB_MODE) for name, oid in blobs.items()}
        entries.update({name: (pygit2.Oid(hex=oid), trees.TREE_MODE) for name, oid in (subtrees or {}).items()})
        return str(trees.build(self._repo, entries))

    def has_object(self, oid: str) -> bool:
        # `oid in repo` reads the whole object; the object database only checks it is there
        try:
            return self._repo.odb.exists(pygit2.Oid(hex=oid))
        except (ValueError, pygit2.GitError):
            return False

    def _get(self, oid: str) -> pygit2.Object:
        try:
            return self._repo[oid]
        except (KeyError, ValueError) as exc:
            raise StoreError(f"object {oid} is missing; run `git flor verify` or fetch it again") from exc
        except pygit2.GitError as exc:  # e.g. the object's content does not hash to its id
            raise StoreError(f"object {oid} cannot be read ({exc}); run `git flor verify`") from exc

    # -- refs ----------------------------------------------------------------------
    def ref_tip(self, ref: str) -> str | None:
        head = refs.tip(self._repo, ref)
        return str(head.id) if head is not None else None

    def set_ref(self, ref: str, oid: str) -> None:
        """Point ``ref`` at object ``oid`` (a commit, or a tree: see layout.PENDING_PREFIX)."""
        self._repo.references.create(ref, pygit2.Oid(hex=oid), force=True)

    def delete_ref(self, ref: str) -> None:
        try:
            self._repo.references.delete(ref)
        except (KeyError, pygit2.GitError):
            pass

    def refs_under(self, prefix: str) -> list[str]:
        return [r for r in self._repo.references if r.startswith(prefix)]

    def put_tree_in_ref(self, ref: str, path: str, tree: str, message: str, *, fill: bool = False) -> str | None:
        """Commit on ``ref`` a tree where ``path`` holds the tree ``tree``; skipped if
        ``path`` is already there (so writing a run twice is harmless). With ``fill``, a
        tree already at ``path`` gets those of ``tree``'s entries it lacks (what it has wins)."""
        oid, parts = pygit2.Oid(hex=tree), path.split("/")

        def make_tree(base: pygit2.Tree | None) -> pygit2.Oid | None:
            there = trees.lookup(self._repo, base, path)
            if there is None:
                return trees.put(self._repo, base, parts, oid, trees.TREE_MODE)
            if not fill or not isinstance(there, pygit2.Tree):
                return None
            filled = trees.fill(self._repo, there, self._repo[oid])
            return None if filled is None else trees.put(self._repo, base, parts, filled, trees.TREE_MODE)

        return refs.commit_cas(self._repo, ref, make_tree, message, self.signature())

    def put_blobs_in_ref(self, ref: str, entries: dict[str, str | None], message: str) -> str | None:
        """Commit on ``ref`` a tree where each ``path -> blob id`` of ``entries`` is in place
        (content-addressed paths: adding one that is there already changes nothing); a
        None id removes the path."""
        wanted = {path: (pygit2.Oid(hex=oid) if oid else None, trees.BLOB_MODE) for path, oid in entries.items()}

        def make_tree(base: pygit2.Tree | None) -> pygit2.Oid | None:
            missing = {p: v for p, v in wanted.items() if _entry_id(base, p) != v[0]}
            return trees.put_many(self._repo, base, missing) if missing else None

        return refs.commit_cas(self._repo, ref, make_tree, message, self.signature())

    def edit_blob_in_ref(
        self, ref: str, path: str, edit: Callable[[bytes | None], bytes | None], message: str, max_bytes: int
    ) -> str | None:
        """Commit on ``ref`` the blob at ``path`` replaced by ``edit(old content or None)``;
        None from ``edit`` skips. Compare-and-swap: ``edit`` sees the content it replaces,
        however many writers race. A present blob over ``max_bytes`` is a StoreError."""
        return self.edit_blobs_in_ref(ref, [path], lambda _path, old: edit(old), message, max_bytes)

    def edit_blobs_in_ref(
        self, ref: str, paths: list[str], edit: Callable[[str, bytes | None], bytes | None], message: str, max_bytes: int
    ) -> str | None:
        """:meth:`edit_blob_in_ref` for many paths in one commit; ``edit(path, old)``
        returning None leaves that path alone (all None: no commit)."""

        def make_tree(base: pygit2.Tree | None) -> pygit2.Oid | None:
            changed = None
            for path in paths:
                entry = trees.entry(base, path)
                old = None
                if entry is not None and entry.type_str == "blob":
                    if self._repo.odb.read_header(entry.id)[1] > max_bytes:
                        raise StoreError(f"{path} on {ref} is over {max_bytes:,} bytes; florgit leaves it alone")
                    old = self._repo[entry.id].data
                new = edit(path, old)
                if new is not None:
                    changed = trees.put(self._repo, base, path.split("/"), self._repo.create_blob(new), trees.BLOB_MODE)
                    base = self._repo[changed]
            return changed

        return refs.commit_cas(self._repo, ref, make_tree, message, self.signature())

    def object_size(self, oid: str) -> int:
        """Size of an object's content, read from its header only."""
        return self._size(pygit2.Oid(hex=oid))

    def _size(self, oid: pygit2.Oid) -> int:
        try:
            return self._repo.odb.read_header(oid)[1]
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise StoreError(f"object {oid} is missing; run `git flor verify` or fetch it again") from exc

    # -- reading trees on refs -------------------------------------------------------
    def tree_at(self, ref: str, path: str = "") -> str | None:
        head = refs.tip(self._repo, ref)
        if head is None:
            return None
        if not path:
            return str(head.tree_id)
        obj = trees.lookup(self._repo, head.tree, path)
        return str(obj.id) if isinstance(obj, pygit2.Tree) else None

    def list_tree(self, tree: str) -> Iterator[tuple[str, str, str]]:
        """``(name, kind, id)`` of each entry, kind being 'tree' or 'blob'."""
        for entry in self._get(tree):
            yield entry.name, entry.type_str, str(entry.id)

    @contextmanager
    def unverified_reads(self) -> Iterator[None]:
        """Skip libgit2's re-hashing of every object read (it doubles read time); for bulk
        reads whose content is validated otherwise."""
        option = pygit2.enums.Option.ENABLE_STRICT_HASH_VERIFICATION
        pygit2.option(option, 0)
        try:
            yield
        finally:
            pygit2.option(option, 1)

    def walk(self, tree: str) -> Iterator[tuple[str, str, str]]:
        """``(path, kind, id)`` of every entry below ``tree``, depth first."""
        for name, kind, oid in self.list_tree(tree):
            yield name, kind, oid
            if kind == "tree":
                for path, sub_kind, sub_oid in self.walk(oid):
                    yield f"{name}/{path}", sub_kind, sub_oid

    def walk_entries(self, tree: str) -> Iterator[tuple[tuple[str, ...], int, str]]:
        """``(names from the top, mode, id)`` of every entry below ``tree``, each tree
        before its contents. Names and modes are yielded as stored, unchecked: a caller
        reading someone else's tree checks them (and stops the walk by raising). Iterative,
        so a deeply nested tree cannot exhaust the stack."""
        stack: list[tuple[tuple[str, ...], str]] = [((), tree)]
        while stack:
            prefix, oid = stack.pop()
            try:  # libgit2 refuses to parse some trees (an empty name, a bad mode)
                obj = self._get(oid)
                if not isinstance(obj, pygit2.Tree):
                    raise StoreError(f"object {oid} is not a tree; run `git flor verify`")
                entries = [(entry.name, int(entry.filemode), str(entry.id)) for entry in obj]
            except pygit2.GitError as exc:
                raise StoreError(f"tree {oid} cannot be read ({exc}); run `git flor verify`") from exc
            below = []
            for name, mode, entry_id in entries:
                yield (*prefix, name), mode, entry_id
                if mode == trees.TREE_MODE:
                    below.append(((*prefix, name), entry_id))
            stack.extend(reversed(below))  # depth first, in tree order

    @property
    def common_dir(self) -> str:
        """The repository's shared ``.git`` folder (a linked worktree's ``git_dir`` is a
        folder of its own inside it)."""
        pointer = os.path.join(self._repo.path, "commondir")
        if not os.path.isfile(pointer):
            return self.git_dir
        with open(pointer) as f:
            return os.path.normpath(os.path.join(self._repo.path, f.read().strip()))

    def check_object(self, oid: str) -> str | None:
        """None if the object is present and its content hashes to its id, else why not."""
        try:
            obj = self._repo.odb.read(pygit2.Oid(hex=oid))  # libgit2 re-hashes what it reads
        except (KeyError, ValueError):
            return "missing"
        except pygit2.GitError as exc:
            return f"unreadable ({exc})"
        return None if obj is not None else "missing"

    def nested_trees(self, tree: str) -> Iterator[tuple[str, str, str]]:
        """``(name, subname, id)`` of every tree two levels below ``tree``."""
        for name, kind, oid in self.list_tree(tree):
            if kind == "tree":
                for sub, sub_kind, sub_oid in self.list_tree(oid):
                    if sub_kind == "tree":
                        yield name, sub, sub_oid

    def subtree(self, tree: str, name: str) -> str | None:
        """The id of the tree ``name`` directly inside ``tree``, or None."""
        return next((oid for entry, kind, oid in self.list_tree(tree) if entry == name and kind == "tree"), None)

    def blobs_in_tree(self, tree: str, names: tuple[str, ...], max_bytes: int | Mapping[str, int] | None = None) -> dict[str, bytes]:
        """``name -> content`` for the named top-level blobs of ``tree`` that exist; a blob
        over ``max_bytes`` (one cap for all, or a cap by name; checked from the object's
        header, before it is read) is a StoreError."""
        obj = self._get(tree)
        if not isinstance(obj, pygit2.Tree):
            raise StoreError(f"object {tree} is not a tree; run `git flor verify`")
        out = {}
        for name in names:
            if name in obj:
                entry = obj[name]
                if entry.type_str == "blob":
                    cap = max_bytes.get(name) if isinstance(max_bytes, Mapping) else max_bytes
                    if cap is not None and (size := self._size(entry.id)) > cap:
                        raise StoreError(f"{name} is {size:,} bytes, over the {cap:,} allowed")
                    out[name] = self._get(str(entry.id)).data
        return out

    def blob_at(self, ref: str, path: str) -> bytes | None:
        head = refs.tip(self._repo, ref)
        obj = trees.lookup(self._repo, head.tree, path) if head is not None else None
        return obj.data if isinstance(obj, pygit2.Blob) else None

    def blob_in_tree(self, tree: str, path: str) -> bytes | None:
        obj = trees.lookup(self._repo, self._get(tree), path)
        return obj.data if isinstance(obj, pygit2.Blob) else None

    def merge_ref(self, ref: str, other: str, *, union_notes: bool = False, exclude: frozenset[str] = frozenset()) -> str:
        """Union-merge commit ``other`` (already fetched) into ``ref``, leaving out the paths
        in ``exclude``; see git.merge."""
        resolve = merge.union_lines if union_notes else merge.keep_ours
        return merge.merge_into(self._repo, ref, other, resolve, self.signature(), exclude)

    # -- notes -----------------------------------------------------------------------
    def read_note(self, ref: str, target: str) -> str:
        return notes.read(self._repo, ref, target)

    def read_notes(self, ref: str) -> dict[str, str]:
        return notes.read_all(self._repo, ref)

    def update_note(self, ref: str, target: str, edit: Callable[[str], str | None], message: str) -> str | None:
        return notes.update(self._repo, ref, target, edit, message, self.signature())


def _entry_id(tree: pygit2.Tree | None, path: str) -> pygit2.Oid | None:
    entry = trees.entry(tree, path)
    return entry.id if entry is not None else None


def _unborn_branch(repo: pygit2.Repository) -> str | None:
    try:
        target = repo.references["HEAD"].target
    except (KeyError, pygit2.GitError):
        return None
    return target.removeprefix("refs/heads/") if isinstance(target, str) else None
