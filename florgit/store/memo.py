"""Local memo files: bytes derived from git objects, kept under ``.git/flor/cache`` and
keyed by the object ids they derive from.

An id fixes everything below it, so a memo whose key matches is exact, and one whose key
does not is simply ignored (and rewritten by the next caller). Each file is one header line,
``florgit-memo 1 <key> <crc32> <size>``, then the payload; a damaged, truncated or foreign
file reads as missing. Writes go to a temporary name and are renamed into place, so two
processes writing at once leave one whole file. Memos are never pushed, safe to delete,
and off with the query cache (``FLORGIT_QUERY_CACHE=0``).
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib

from florgit import envflags

DIR = os.path.join("flor", "cache")
_MAGIC = b"florgit-memo 1"
_KEY = re.compile(r"\A[0-9A-Za-z_.-]{1,128}\Z")


def key_of(*parts: object) -> str:
    """One key from several ids and settings (a digest: keys stay short and printable)."""
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()


def path_of(common_dir: str, name: str) -> str:
    return os.path.join(common_dir, DIR, name)


def read(common_dir: str, name: str, key: str) -> bytes | None:
    """The payload memo ``name`` holds for ``key``; None when it holds another key, is
    damaged, or memos are off."""
    found = read_any(common_dir, name)
    return found[1] if found is not None and found[0] == key else None


def read_any(common_dir: str, name: str) -> tuple[str, bytes] | None:
    """The key and payload memo ``name`` holds, whatever its key (a starting point for
    work keyed otherwise); None when it is damaged, or memos are off."""
    if not envflags.enabled(envflags.QUERY_CACHE, True):
        return None
    try:
        with open(path_of(common_dir, name), "rb") as f:
            data = f.read()
    except OSError:
        return None
    head, _, payload = data.partition(b"\n")
    parts = head.split(b" ")
    if len(parts) != 5 or b" ".join(parts[:2]) != _MAGIC or not _KEY.match(parts[2].decode("ascii", "replace")):
        return None
    if parts[3] != f"{zlib.crc32(payload):08x}".encode() or parts[4] != str(len(payload)).encode():
        return None
    return parts[2].decode("ascii"), payload


def write(common_dir: str, name: str, key: str, payload: bytes) -> None:
    """Keep ``payload`` as memo ``name`` for ``key`` (best effort: a read-only .git only
    costs the next caller the work again)."""
    if not envflags.enabled(envflags.QUERY_CACHE, True) or not _KEY.match(key):
        return
    path = path_of(common_dir, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    head = b"%s %s %08x %d\n" % (_MAGIC, key.encode(), zlib.crc32(payload), len(payload))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(payload)
        os.replace(tmp, path)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
