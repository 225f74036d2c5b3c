"""Writing blobs as loose objects fast.

libgit2's ``create_blob`` deflates at zlib's default level before it checks whether the
object already exists (~26 MB/s on incompressible data). florgit's large blobs are Arrow
files with zstd buffers and zstd tensor chunks: deflating them again gains nothing.
So large blobs are hashed first (skipped when present) and stored in zlib's "stored"
blocks (level 0) written straight from the buffer; ``git fsck`` accepts them and ``git gc``
later packs them like any other loose object.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zlib

import pygit2

STORED_LEVEL_FROM = 64 * 1024  # smaller blobs are deflated normally: they may compress


def objects_dir(repo: pygit2.Repository) -> str | None:
    """The object directory shared by all worktrees, or None when it cannot be found."""
    git_dir = repo.path
    common = os.path.join(git_dir, "commondir")
    if os.path.exists(common):
        with open(common) as f:
            git_dir = os.path.join(git_dir, f.read().strip())
    path = os.path.normpath(os.path.join(git_dir, "objects"))
    return path if os.path.isdir(path) else None


def write_blob(repo: pygit2.Repository, data: bytes) -> pygit2.Oid:
    header = b"blob %d\0" % len(data)
    sha = hashlib.sha1(header)
    sha.update(data)
    oid = pygit2.Oid(hex=sha.hexdigest())
    if repo.odb.exists(oid):  # `oid in repo` would read and inflate the whole object
        return oid
    root = objects_dir(repo)
    if root is None or _object_format(repo) != "sha1":
        return repo.create_blob(data)
    hexid = str(oid)
    folder = os.path.join(root, hexid[:2])
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="tmp_obj_")
    try:
        with os.fdopen(fd, "wb") as f:
            if len(data) >= STORED_LEVEL_FROM:
                _write_stored(f, header, memoryview(data).cast("B"))
            else:
                f.write(zlib.compress(header + bytes(data)))
        os.chmod(tmp, 0o444)
        os.replace(tmp, os.path.join(folder, hexid[2:]))  # same content if a racer won
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return oid


_STORED_MAX = 0xFFFF  # bytes in one stored deflate block


def _write_stored(f, header: bytes, data: memoryview) -> None:
    """A zlib stream of stored (uncompressed) deflate blocks, written without copying the
    data: what ``zlib.compress(level=0)`` produces, at the speed of adler32 and write."""
    checksum = zlib.adler32(data, zlib.adler32(header))
    f.write(b"\x78\x01")  # zlib header: deflate, 32K window, fastest
    first = _STORED_MAX - len(header)
    pieces = [header + bytes(data[:first])]
    pieces += [data[i : i + _STORED_MAX] for i in range(first, len(data), _STORED_MAX)]
    for n, piece in enumerate(pieces):
        size = len(piece)
        final = 1 if n == len(pieces) - 1 else 0
        f.write(bytes((final, size & 0xFF, size >> 8, ~size & 0xFF, (~size >> 8) & 0xFF)))
        f.write(piece)
    f.write(checksum.to_bytes(4, "big"))


def _object_format(repo: pygit2.Repository) -> str:
    try:
        return str(repo.config["extensions.objectformat"]).lower()
    except (KeyError, pygit2.GitError):
        return "sha1"
