"""The git layer: the only package that imports pygit2.

Everything above it speaks strings (hex object ids, ref names, paths), never pygit2 types.
pygit2 loads on first use of these names (``git.peek`` needs none of it: a memo hit reads
its key through the git CLI and skips the ~0.1 s import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from florgit.git.repository import GitRepo, HeadInfo, open_repo

__all__ = ["GitRepo", "HeadInfo", "open_repo"]


def __getattr__(name: str):
    if name in __all__:
        from florgit.git import repository

        return getattr(repository, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
