"""Whose code a run holds, and reading that code safely.

Replaying a run executes the code it recorded. Runs pulled from a teammate hold their
code, not yours, and everything read from git may be hostile. So:

- This clone keeps a registry of the runs it recorded itself, ``.git/flor/own-runs``
  (one run id a line, appended with ``O_APPEND``). It is a file, not a ref: it is never
  pushed or fetched. A run not listed is *foreign*: replay runs its code only when the
  user says so (``git flor replay --trust``) after seeing it (:func:`review`).
- :func:`code_entries` walks a run's code tree with git fsck's entry-name checks, so
  exporting it can never write outside the folder it is exported into.
"""

from __future__ import annotations

import difflib
import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from florgit import validation
from florgit.errors import FlorgitError, InvalidDataError

if TYPE_CHECKING:
    from florgit.git import GitRepo  # loads pygit2: a cache hit does without it

OWN_RUNS = os.path.join("flor", "own-runs")

TREE, FILE, EXEC, LINK, SUBMODULE = 0o040000, 0o100644, 0o100755, 0o120000, 0o160000
FILE_MODES = (FILE, 0o100664, EXEC)  # 100664: what very old gits wrote for plain files
MAX_ENTRIES = 200_000  # a tree reusing one subtree many times stays bounded
MAX_SHOWN_BYTES = 1024 * 1024  # larger files are named in a review, not printed


# -- the registry of runs recorded in this clone ------------------------------------------
def registry_path(repo: GitRepo) -> str:
    return os.path.join(repo.common_dir, OWN_RUNS)


def mark_own(repo: GitRepo, run_id: str) -> None:
    """Record that ``run_id`` was recorded in this clone (repeating it is harmless)."""
    if validation.RUN_ID.match(run_id) is None:
        return  # never written by florgit's recorder; leaving it out only makes it foreign
    path = registry_path(repo)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # One write of one short line with O_APPEND: concurrent runs never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{run_id}\n".encode())
    finally:
        os.close(fd)


def own_runs(repo: GitRepo) -> frozenset[str]:
    try:
        with open(registry_path(repo), "rb") as f:
            lines = f.read().decode("ascii", "replace").splitlines()
    except FileNotFoundError:
        return frozenset()
    return frozenset(ln for ln in lines if validation.RUN_ID.match(ln))


# -- a run's code tree, checked ------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    path: str  # '/'-separated, every name checked
    mode: int
    oid: str

    @property
    def is_file(self) -> bool:
        return self.mode in FILE_MODES


@dataclass
class CodeTree:
    entries: list[Entry]
    left_out: list[str]  # what an export leaves out, and why

    def find(self, path: str) -> Entry | None:
        return next((e for e in self.entries if e.path == path), None)


def code_entries(repo: GitRepo, tree: str) -> CodeTree:
    """Every entry of a run's code tree, checked as ``git fsck --strict`` would: a name
    that is empty, '.', '..', '.git' or holds a '/', an unknown mode, a duplicate path or
    a too long path makes the whole tree refused (InvalidDataError): florgit never writes
    such trees. Submodules and symlinks leaving the tree are left out and listed."""
    entries: list[Entry] = []
    left_out: list[str] = []
    seen: set[str] = set()
    for parts, mode, oid in repo.walk_entries(tree):
        path = _checked_path(parts, mode, tree)
        if path in seen:
            raise _unsafe(tree, f"{path!r} appears twice (duplicateEntries)")
        seen.add(path)
        if len(seen) > MAX_ENTRIES:
            raise _unsafe(tree, f"it has more than {MAX_ENTRIES:,} entries")
        if mode == SUBMODULE:
            left_out.append(f"submodule {path}")
        elif mode == LINK and (why := link_problem(path, _link_target(repo, oid))):
            left_out.append(f"symlink {path} ({why})")
        else:
            entries.append(Entry(path, mode, oid))
    return CodeTree(entries, left_out)


def _checked_path(parts: tuple[str, ...], mode: int, tree: str) -> str:
    for name in parts:
        why = validation.entry_name_problem(name)
        if why:
            raise _unsafe(tree, f"entry {'/'.join(parts)!r} has a forbidden name ({why})")
    path = "/".join(parts)
    if len(path) > validation.MAX_PATH_LENGTH:
        raise _unsafe(tree, f"a path is longer than {validation.MAX_PATH_LENGTH} characters")
    if mode not in (TREE, LINK, SUBMODULE, *FILE_MODES):
        raise _unsafe(tree, f"{path!r} has the unknown mode {mode:o}")
    return path


def _unsafe(tree: str, why: str) -> InvalidDataError:
    return InvalidDataError(f"code snapshot {tree[:12]}", why)


def _link_target(repo: GitRepo, oid: str) -> str | None:
    if repo.object_size(oid) > validation.MAX_PATH_LENGTH:
        return None
    return repo.read_blob(oid).decode("utf-8", "replace")


def link_problem(path: str, target: str | None) -> str | None:
    """Why a symlink at ``path`` pointing at ``target`` would lead out of its tree, judged
    on the text alone (the export checks the resolved path again once every link exists)."""
    if not target or "\0" in target:
        return "empty or unreadable target"
    if target.startswith("/"):
        return f"absolute target {target!r}"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        return f"target {target!r} leaves the snapshot"
    return None


# -- what a foreign run would run ---------------------------------------------------------
def review(repo: GitRepo, run_id: str, script: str, code_tree: str) -> str:
    """The code of a foreign run, for a person to read before trusting it: its script
    and every other file that differs from the latest run of the same script that this
    clone recorded itself; with no such run, the whole script and a list of the files."""
    theirs = code_entries(repo, code_tree)
    reference = _latest_own(repo, script)
    if reference is None:
        return _whole(repo, run_id, script, theirs)
    own_id, own_tree = reference
    try:
        mine = code_entries(repo, own_tree)
    except FlorgitError:  # a damaged own version must not hide theirs: show it whole
        return _whole(repo, run_id, script, theirs)
    return _against(repo, run_id, script, theirs, own_id, mine)


def _latest_own(repo: GitRepo, script: str) -> tuple[str, str] | None:
    from florgit.store import layout, runs

    own = own_runs(repo)
    for stored in reversed(runs.list_runs(repo)):  # newest first
        if stored.run_id not in own:
            continue
        try:
            meta = runs.read_meta(repo, stored)
        except FlorgitError:
            continue
        tree = repo.subtree(stored.tree, layout.CODE_DIR)
        if meta.script == script and tree is not None:
            return stored.run_id, tree
    return None


def _whole(repo: GitRepo, run_id: str, script: str, theirs: CodeTree) -> str:
    lines = [f"# run {run_id} was recorded in another clone, and no run of {script} from this clone compares with it:",
             f"# the whole {script} that would run:"]  # fmt: skip
    entry = theirs.find(script)
    lines.append(_text(repo, entry) if entry is not None else f"({script} is not in its code)")
    others = [e for e in theirs.entries if e.path != script and e.mode != TREE]
    if others:
        lines.append("# the other files of its code (importable by the script):")
        lines += [f"#   {_describe(repo, e)}" for e in others]
    lines += [f"# left out: {why}" for why in theirs.left_out]
    return "\n".join(lines) + "\n"


def _against(repo: GitRepo, run_id: str, script: str, theirs: CodeTree, own_id: str, mine: CodeTree) -> str:
    lines = [f"# run {run_id} was recorded in another clone; its code compared with your run {own_id}:"]
    ours = {e.path: e for e in mine.entries if e.mode != TREE}
    new = {e.path: e for e in theirs.entries if e.mode != TREE}
    for path in sorted(ours.keys() | new.keys(), key=lambda p: (p != script, p)):
        a, b = ours.get(path), new.get(path)
        if a is not None and b is not None and (a.oid, a.mode) == (b.oid, b.mode):
            continue
        lines.append(_file_diff(repo, path, a, b))
    if len(lines) == 1:
        lines.append("# (no differences)")
    lines += [f"# left out: {why}" for why in theirs.left_out]
    return "\n".join(lines) + "\n"


def _file_diff(repo: GitRepo, path: str, a: Entry | None, b: Entry | None) -> str:
    if b is None:
        return f"# {path}: only in your run (absent from theirs)"
    if not _is_text(repo, b) or (a is not None and not _is_text(repo, a)):
        return f"# {_describe(repo, b)}: differs (not shown: binary or over {MAX_SHOWN_BYTES:,} bytes)"
    old = _text(repo, a) if a is not None else ""
    new = _text(repo, b)
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f"a/{path}" if a is not None else "/dev/null", f"b/{path}"))  # fmt: skip
    mode = f" (mode {a.mode:o} -> {b.mode:o})" if a is not None and a.mode != b.mode else ""
    return f"# {path}{mode}:\n{diff or '(same text)'}"


def _is_text(repo: GitRepo, entry: Entry) -> bool:
    if entry.mode == LINK:
        return True
    if repo.object_size(entry.oid) > MAX_SHOWN_BYTES:
        return False
    try:
        repo.read_blob(entry.oid).decode()
    except UnicodeDecodeError:
        return False
    return True


def _text(repo: GitRepo, entry: Entry) -> str:
    if entry.mode == LINK:
        return f"symlink -> {repo.read_blob(entry.oid).decode('utf-8', 'replace')}\n"
    if not _is_text(repo, entry):
        return f"({_describe(repo, entry)}: not shown, binary or over {MAX_SHOWN_BYTES:,} bytes)\n"
    text = repo.read_blob(entry.oid).decode()
    return text if text.endswith("\n") else text + "\n"


def _describe(repo: GitRepo, entry: Entry) -> str:
    if entry.mode == LINK:
        return f"{entry.path} (symlink)"
    kind = "executable, " if entry.mode == EXEC else ""
    return f"{entry.path} ({kind}{repo.object_size(entry.oid):,} bytes)"
