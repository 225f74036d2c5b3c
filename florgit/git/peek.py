"""The ids of a few refs' trees through the git CLI, without loading pygit2.

Loading pygit2 costs ~0.1 s, more than reading a memo (store.memo) of 10,000 runs. A memo
is keyed by tree ids, so a memo hit needs only those: two short ``git`` processes (~3 ms)
give them. Anything unusual (git failing, a ref that does not name a commit, a path that
is absent or whose object is missing) answers None, and the caller takes its full path,
which reads the same ids with pygit2 and reports the problem as it always did.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Peeked:
    git_dir: str
    common_dir: str
    trees: list[str | None]  # per (ref, path) asked: the tree's id; None where the ref is absent


def tree_ids(start: str | None, sources: tuple[tuple[str, str], ...]) -> Peeked | None:
    """For each ``(ref, path)`` of ``sources`` (full ref names; path "" for the commit's
    root tree), what ``GitRepo.tree_at(ref, path)`` answers, in the repository around
    ``start``; None when that cannot be told for sure without pygit2."""
    cwd = os.path.abspath(start or os.getcwd())
    dirs = _git(cwd, ["rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir"])
    if dirs is None or len(dirs) != 2:
        return None
    git_dir, common_dir = (os.path.normpath(d) for d in dirs)
    asked = []
    for ref, path in sources:
        asked += [ref, f"{ref}:{path}" if path else f"{ref}^{{tree}}"]
    lines = _git(cwd, ["cat-file", "--batch-check"], "".join(f"{a}\n" for a in asked))
    if lines is None or len(lines) != len(asked):
        return None
    trees: list[str | None] = []
    for (ref, _path), tip, tree in zip(sources, lines[::2], lines[1::2]):
        if tip == f"{ref} missing" and not _ref_exists(common_dir, ref):
            trees.append(None)
            continue
        tip_fields, tree_fields = tip.split(" "), tree.split(" ")
        if len(tip_fields) != 3 or tip_fields[1] != "commit":
            return None  # dangling, or not a commit: the full path says what is wrong
        if len(tree_fields) == 3 and tree_fields[1] == "tree" and _is_id(tree_fields[0]):
            trees.append(tree_fields[0])
        elif len(tree_fields) == 3:
            trees.append(None)  # a path holding something else reads as no tree
        else:
            return None  # absent, or its object missing: told apart only by the full path
    return Peeked(git_dir, common_dir, trees)


# Variables with which git would find another repository, or other objects, than pygit2's
# discovery from the same folder (which reads none of them): the keys must be the same.
_LOCATING = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_INDEX_FILE",
)  # fmt: skip


def _git(cwd: str, args: list[str], stdin: str | None = None) -> list[str] | None:
    env = {k: v for k, v in os.environ.items() if k not in _LOCATING}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=env, check=False
        )  # fmt: skip
    except (OSError, ValueError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.splitlines()


def _ref_exists(common_dir: str, ref: str) -> bool:
    """Whether ``ref`` is stored at all (loose or packed), however broken: a ref git
    cannot resolve but that exists must go to the full path, which says why."""
    if os.path.lexists(os.path.join(common_dir, *ref.split("/"))):
        return True
    try:
        with open(os.path.join(common_dir, "packed-refs"), "rb") as f:
            packed = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # unreadable: cannot tell, so not absent
    wanted = b" " + ref.encode()
    return any(line.rstrip(b"\r").endswith(wanted) for line in packed.split(b"\n"))


def _is_id(text: str) -> bool:
    return len(text) in (40, 64) and set(text) <= _HEX
