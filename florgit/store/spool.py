"""The per-run spool under ``.git/flor/spool/<run>``: what survives a kill.

A live run holds an exclusive ``flock`` on the spool's lock file for its whole life; the
kernel drops it when the process dies, however it dies. A spool whose lock can be taken
therefore belongs to a dead process and is recovered. Spools are prepared under a
dot-name and renamed into place once locked, so a half-made spool is never recovered.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator

from florgit.errors import InvalidDataError
from florgit.store import layout
from florgit.store.meta import RunMeta

_STALE_TMP_SECONDS = 24 * 3600


class Spool:
    """The writer's side: created, locked and owned by the running process."""

    def __init__(self, git_dir: str, meta: RunMeta) -> None:
        root = layout.spool_root(git_dir)
        os.makedirs(root, exist_ok=True)
        name = layout.spool_name(meta.run_id, meta.rank)
        tmp = os.path.join(root, f".tmp-{name}")
        os.makedirs(tmp)
        self._lock_fd = _lock(os.path.join(tmp, layout.SPOOL_LOCK), blocking=True)
        _write_atomic(os.path.join(tmp, layout.SPOOL_META), meta.to_json())
        self.dir = os.path.join(root, name)
        os.rename(tmp, self.dir)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def write_meta(self, meta: RunMeta) -> None:
        _write_atomic(self.path(layout.SPOOL_META), meta.to_json())

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class AbandonedSpool:
    """A spool whose process is gone; holds its lock while it is being recovered."""

    def __init__(self, path: str, lock_fd: int) -> None:
        self.dir = path
        self._lock_fd: int | None = lock_fd

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def meta(self) -> RunMeta | None:
        try:
            with open(self.path(layout.SPOOL_META), "rb") as f:
                meta = RunMeta.parse(f.read(), os.path.basename(self.dir).partition("~")[0])
        except (OSError, InvalidDataError):
            return None
        # The folder's name is the run's and rank's: a meta naming another rank is not this spool's.
        return meta if os.path.basename(self.dir) == layout.spool_name(meta.run_id, meta.rank) else None

    def last_write(self) -> float:
        times = [os.stat(self.path(n)).st_mtime for n in os.listdir(self.dir)]
        return max(times, default=time.time())

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def abandoned(git_dir: str) -> Iterator[AbandonedSpool]:
    """Spools left by dead processes, each locked by the caller while yielded."""
    root = layout.spool_root(git_dir)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(root, name)
        if name.startswith("."):
            _remove_stale_tmp(path)
            continue
        try:
            fd = _lock(os.path.join(path, layout.SPOOL_LOCK), blocking=False)
        except OSError:
            continue
        if fd is None:
            continue  # a live run holds it
        spool = AbandonedSpool(path, fd)
        try:
            yield spool
        finally:
            spool.release()


def any_abandoned(git_dir: str) -> bool:
    """Whether a dead process left a spool that recovery would commit (one whose meta
    cannot be read is skipped by recovery too)."""
    return any(spool.meta() is not None for spool in abandoned(git_dir))


def _lock(path: str, *, blocking: bool) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_stale_tmp(path: str) -> None:
    try:
        if time.time() - os.stat(path).st_mtime > _STALE_TMP_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
