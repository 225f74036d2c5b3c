"""The git layer: the only package that imports pygit2.

Everything above it speaks strings (hex object ids, ref names, paths), never pygit2 types.
"""

from florgit.git.repository import GitRepo, HeadInfo, open_repo

__all__ = ["GitRepo", "HeadInfo", "open_repo"]
