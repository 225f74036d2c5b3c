"""Checkpoints in git: content-addressed zstd chunks and one JSON manifest per checkpoint.

On ``refs/flor/checkpoints`` the tree holds ``blobs/<2>/<38>`` (every chunk, once, however
many checkpoints use it) and ``runs/<day>/<xx>/<run>/<loop>-<loop id>/<boundary>.json``, the
manifests. ``boundary`` counts completed iterations: boundary ``e`` is the state at the
start of iteration ``e`` (0: before the loop ran), so "the checkpoint at the start of
epoch e" is a path lookup. Each checkpoint is its own compare-and-swap commit, so a run
that is killed keeps every checkpoint it finished.

Reading trusts nothing on the ref (a teammate may have pushed it): every manifest goes
through :meth:`Manifest.parse`; listing leaves out (with a warning) a manifest that fails
it; loading checks memory before allocating and decompresses each chunk into exactly the
bytes the manifest gives it.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from dataclasses import dataclass, field

from florgit.codec import statetree, tensors
from florgit.errors import CheckpointError, FlorgitWarning
from florgit.git import GitRepo
from florgit.store import layout
from florgit.store.manifest import FORMAT_VERSION, Chunk, Manifest, ManifestArray, ManifestError  # noqa: F401 (re-exported)
from florgit.validation import MAX_JSON_BYTES, name_problem



@dataclass(frozen=True)
class CheckpointInfo:
    run_id: str
    loop: str
    loop_id: int
    boundary: int  # phase "start": completed iterations (the state at the start of iteration
    # `boundary`); phase "after:<inner>": the iteration whose inner loop had just ended
    path: str  # manifest path on the checkpoints ref
    nbytes: int  # raw bytes of every array
    stored: int  # compressed bytes of every chunk it uses
    chunks: tuple[str, ...]
    phase: str = "start"
    manifest: Manifest | None = field(default=None, compare=False, repr=False)  # as listed, checked

    @property
    def iteration(self) -> int:
        """The iteration whose end this state is (-1: before the loop)."""
        return self.boundary - 1


def manifest_path(run_id: str, loop: str, loop_id: int, boundary: int, phase: str = "start") -> str:
    suffix = "" if phase == "start" else f".after.{phase.removeprefix('after:')}"
    return f"{layout.run_path(run_id)}/{loop}-{loop_id}/{boundary:08d}{suffix}.json"


def blob_path(oid: str) -> str:
    return f"{layout.CHECKPOINT_BLOBS}/{oid[:2]}/{oid[2:]}"


class ChunkIndex:
    """raw sha1 -> chunk ids, so a tensor seen before costs a hash, not a compression."""

    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo
        self._path = os.path.join(repo.git_dir, layout.CHECKPOINT_INDEX)
        self._known: dict[str, list[tuple[str, int]]] | None = None
        self._lock = threading.Lock()

    def get(self, raw_sha: str) -> list[tuple[str, int]] | None:
        with self._lock:
            if self._known is None:
                self._known = _read_index(self._path)
            found = self._known.get(raw_sha)
        if found and all(self._repo.has_object(oid) for oid, _size in found):
            return found
        return None

    def add(self, raw_sha: str, chunks: list[tuple[str, int]]) -> None:
        line = raw_sha + " " + ",".join(f"{oid}:{size}" for oid, size in chunks) + "\n"
        with self._lock:
            if self._known is not None:
                self._known[raw_sha] = chunks
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            with open(self._path, "a") as f:  # one short O_APPEND line: safe across processes
                f.write(line)


def compact_index(repo: GitRepo) -> int:
    """Rewrite the dedup index without lines whose chunks are gone; returns lines dropped."""
    path = os.path.join(repo.git_dir, layout.CHECKPOINT_INDEX)
    known = _read_index(path)
    alive = {raw: chunks for raw, chunks in known.items() if all(repo.has_object(oid) for oid, _ in chunks)}
    if len(alive) != len(known):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            for raw, chunks in alive.items():
                f.write(raw + " " + ",".join(f"{oid}:{size}" for oid, size in chunks) + "\n")
        os.replace(tmp, path)
    return len(known) - len(alive)


def _read_index(path: str) -> dict[str, list[tuple[str, int]]]:
    known: dict[str, list[tuple[str, int]]] = {}
    try:
        with open(path) as f:
            for line in f:
                raw, _, rest = line.strip().partition(" ")
                try:
                    known[raw] = [(oid, int(size)) for oid, size in (c.split(":") for c in rest.split(","))]
                except ValueError:
                    continue  # a torn last line
    except FileNotFoundError:
        pass
    return known


def store_array(repo: GitRepo, index: ChunkIndex, data: memoryview) -> tuple[str, list[tuple[str, int]], int]:
    """Write an array's bytes as chunks; returns (raw sha1, [(chunk id, size)], new bytes)."""
    raw_sha = tensors.digest(data)
    known = index.get(raw_sha)
    if known is not None:
        return raw_sha, known, 0
    chunks, new = [], 0
    for piece in tensors.chunks(data):
        blob = tensors.compress(piece)
        chunks.append((repo.write_blob(blob), len(blob)))
        new += len(blob)
    index.add(raw_sha, chunks)
    return raw_sha, chunks, new


def commit_checkpoint(repo: GitRepo, run_id: str, manifest: dict) -> str:
    """Make the checkpoint durable: manifest and chunks reachable from the checkpoints ref."""
    path = manifest_path(run_id, manifest["loop"], manifest["loop_id"], manifest["boundary"], manifest.get("phase", "start"))
    entries = {blob_path(c["id"]): c["id"] for a in manifest["arrays"] for c in a["chunks"]}
    entries[path] = repo.write_blob(statetree.dumps(manifest))
    repo.put_blobs_in_ref(layout.CHECKPOINTS_REF, entries, f"flor: checkpoint {run_id} {manifest['loop']} {manifest['boundary']}")
    return path


def scan_checkpoints(
    repo: GitRepo, run_id: str, run_tree: str | None = None, base: str | None = None
) -> tuple[list[CheckpointInfo], list[BadCheckpoint]]:
    """A run's checkpoints in order (loop instance, then boundary), and the manifests that
    failed to parse (each one's error names the run and the checkpoint). Entries whose
    names are not florgit's are not checkpoints and are skipped. ``run_tree``: read that
    tree (fetched, not yet on the checkpoints ref) instead of the ref's."""
    return read_places(repo, checkpoint_places(repo, run_id, run_tree, base))


def read_places(repo: GitRepo, places: list[tuple[Place, str]]) -> tuple[list[CheckpointInfo], list[BadCheckpoint]]:
    """The checkpoints whose manifests are at ``places``, checked, and those that fail."""
    good: list[CheckpointInfo] = []
    bad: list[BadCheckpoint] = []
    for spot, oid in places:
        try:
            good.append(read_place(repo, spot, oid))
        except CheckpointError as exc:
            bad.append(BadCheckpoint(**vars(spot), error=exc))
    return good, bad


def checkpoint_places(
    repo: GitRepo, run_id: str, run_tree: str | None = None, base: str | None = None
) -> list[tuple[Place, str]]:
    """Where a run's manifests are and their blob ids, in checkpoint order, from the tree's
    entry names alone: nothing is parsed (a plan reads only the few it needs). Without
    ``run_tree`` the run's folder on the checkpoints ref is found in either layout;
    ``base`` is where ``run_tree`` sits (or will)."""
    if run_tree is None:
        run_tree, base = run_folder(repo, run_id)
    if run_tree is None:
        return []
    base = base or layout.run_path(run_id)
    found = []
    for loop_dir, kind, loop_tree in repo.list_tree(run_tree):
        place = _parse_loop_dir(loop_dir) if kind == "tree" else None
        if place is None:
            continue
        for name, kind, oid in repo.list_tree(loop_tree):
            parsed = _parse_name(name) if kind == "blob" else None
            if parsed is not None:
                found.append((Place(run_id, *place, *parsed, f"{base}/{loop_dir}/{name}"), oid))
    return sorted(found, key=lambda f: (f[0].loop_id, f[0].boundary, f[0].phase != "start"))


def run_folder(repo: GitRepo, run_id: str) -> tuple[str | None, str | None]:
    """(tree, path) of the run's folder on the checkpoints ref, in either layout."""
    for path in layout.run_paths(run_id):
        tree = repo.tree_at(layout.CHECKPOINTS_REF, path)
        if tree is not None:
            return tree, path
    return None, None


def read_place(repo: GitRepo, spot: Place, oid: str) -> CheckpointInfo:
    """The checkpoint whose manifest is the blob ``oid`` at ``spot``, checked (CheckpointError)."""
    return _info(spot, _read_listed(repo, spot, oid))


def list_checkpoints(repo: GitRepo, run_id: str) -> list[CheckpointInfo]:
    """A run's checkpoints in order; a manifest that fails to parse is left out with a warning."""
    good, bad = scan_checkpoints(repo, run_id)
    warn_bad(bad)
    return good


def checkpoint_problems(repo: GitRepo, run_id: str) -> list[str]:
    """Why each of a run's manifests that fails to parse does (for `git flor verify`)."""
    return [str(b.error) for b in scan_checkpoints(repo, run_id)[1]]


def warn_bad(bad: list[BadCheckpoint]) -> None:
    for b in bad:
        warnings.warn(f"florgit: left out a checkpoint: {b.error}", FlorgitWarning, stacklevel=3)


@dataclass(frozen=True)
class Place:
    """Where a manifest sits on the checkpoints ref, as its path says."""

    run_id: str
    loop: str
    loop_id: int
    boundary: int
    phase: str
    path: str

    @property
    def iteration(self) -> int:
        return self.boundary - 1


@dataclass(frozen=True)
class BadCheckpoint(Place):
    """A manifest that is not a valid checkpoint, and why."""

    error: CheckpointError


def describe(c: CheckpointInfo | Place) -> str:
    """``run R epoch iteration 3`` (+ the inner loop for an ``after:`` checkpoint)."""
    after = "" if c.phase == "start" else f" ({c.phase})"
    return f"run {c.run_id} {c.loop} iteration {c.iteration}{after}"


_MANIFEST_NAME = re.compile(r"\A([0-9]{8,18})(?:\.after\.(.+))?\.json\Z")
_LOOP_DIR = re.compile(r"\A(.+)-([0-9]{1,18})\Z")


def _parse_name(name: str) -> tuple[int, str] | None:
    """(boundary, phase) of a manifest's file name, or None if it is not one."""
    m = _MANIFEST_NAME.match(name)
    if m is None or (m[2] is not None and name_problem(m[2])):
        return None
    return int(m[1]), (f"after:{m[2]}" if m[2] else "start")


def _parse_loop_dir(name: str) -> tuple[str, int] | None:
    m = _LOOP_DIR.match(name)
    if m is None or name_problem(m[1]):
        return None
    return m[1], int(m[2])


def _read_listed(repo: GitRepo, spot: Place, oid: str) -> Manifest:
    where = describe(spot)
    manifest = _read_manifest_blob(repo, oid, where, spot.run_id)
    said = (manifest.run, manifest.loop, manifest.loop_id, manifest.boundary, manifest.phase)
    if said != (spot.run_id, spot.loop, spot.loop_id, spot.boundary, spot.phase):
        # a manifest copied to another place would restore some other state
        raise ManifestError(where, f"it describes run {said[0]} {said[1]}-{said[2]} boundary {said[3]} {said[4]}, not where it sits", spot.run_id)
    return manifest


def _info(spot: Place, manifest: Manifest) -> CheckpointInfo:
    return CheckpointInfo(
        run_id=spot.run_id,
        loop=spot.loop,
        loop_id=spot.loop_id,
        boundary=spot.boundary,
        path=spot.path,
        nbytes=manifest.nbytes,
        stored=manifest.stored,
        chunks=manifest.chunk_ids,
        phase=spot.phase,
        manifest=manifest,
    )


def _read_manifest_blob(repo: GitRepo, oid: str, where: str, run_id: str | None) -> Manifest:
    try:
        size = repo.object_size(oid)
        if size > MAX_JSON_BYTES:  # refused unread
            raise ManifestError(where, f"it is {size:,} bytes, more than the {MAX_JSON_BYTES:,} allowed", run_id)
        data = repo.read_blob(oid)
    except CheckpointError:
        raise
    except Exception as exc:  # missing object, or libgit2's hash check failed
        raise CheckpointError(f"{where}: the manifest {oid} is missing or corrupted ({exc})") from None
    return Manifest.parse(data, where, run_id)


def read_manifest_blob(repo: GitRepo, oid: str) -> Manifest:
    return _read_manifest_blob(repo, oid, f"checkpoint manifest {oid}", None)


def read_manifest(repo: GitRepo, info: CheckpointInfo) -> Manifest:
    """The manifest ``info`` was listed from (already checked), else read and checked now."""
    if info.manifest is not None:
        return info.manifest
    data = repo.blob_at(layout.CHECKPOINTS_REF, info.path)
    if data is None:
        raise CheckpointError(f"run {info.run_id} has no checkpoint at {info.loop} boundary {info.boundary}")
    return Manifest.parse(data, describe(info), info.run_id)


def load_arrays(repo: GitRepo, manifest: Manifest, where: str) -> list:
    """Every array of a manifest, each verified against its recorded sha1.

    Memory is checked before anything is allocated: the whole checkpoint must fit in what
    the system says is available, and each array is decompressed into one buffer of
    exactly its ``nbytes``, chunk by chunk, so no chunk can expand beyond its share."""
    _check_memory(manifest, where)
    dctx = tensors.decompressor()
    try:
        return [_load_array(repo, dctx, entry, where) for entry in manifest.arrays]
    except MemoryError:
        raise CheckpointError(
            f"{where}: ran out of memory loading {manifest.nbytes:,} bytes of arrays; free memory or "
            "lower FLORGIT_MAX_CHECKPOINT_BYTES so florgit refuses before it tries"
        ) from None


def _check_memory(manifest: Manifest, where: str) -> None:
    free = tensors.available_memory()
    biggest = max(manifest.arrays, key=lambda a: a.nbytes, default=None)
    if biggest is not None and biggest.nbytes > free:
        raise CheckpointError(f"{where}: {biggest.label} needs {biggest.nbytes:,} bytes, more than the {free:,} available{_MEMORY_HINT}")
    if manifest.nbytes > free:
        raise CheckpointError(f"{where}: its arrays need {manifest.nbytes:,} bytes, more than the {free:,} available{_MEMORY_HINT}")


_MEMORY_HINT = (
    "; refusing to load it (a manifest from someone else's push may lie about sizes; "
    "FLORGIT_MAX_CHECKPOINT_BYTES overrides the estimate of free memory)"
)


def _load_array(repo: GitRepo, dctx, entry: ManifestArray, where: str):
    data = bytearray(entry.nbytes)
    view = memoryview(data)
    offset = 0
    for chunk in entry.chunks:
        frame = _read_chunk(repo, chunk, where, entry.label)
        try:
            tensors.decompress_into(dctx, frame, view[offset : offset + chunk.raw])
        except CheckpointError as exc:
            raise CheckpointError(f"{where}: {entry.label}: chunk {chunk.id} {exc}; the checkpoint is corrupted or forged") from None
        offset += chunk.raw
    view.release()
    if tensors.digest(data) != entry.sha1:
        raise CheckpointError(f"{where}: {entry.label} does not match its recorded hash; the checkpoint is corrupted")
    try:
        return tensors.from_raw(entry, data)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {entry.label}: {exc}") from None


def _read_chunk(repo: GitRepo, chunk, where: str, label: str) -> bytes:
    """A chunk's compressed bytes, its size checked before it is read."""
    try:
        size = repo.object_size(chunk.id)
        if size == chunk.size:
            return repo.read_blob(chunk.id)
    except Exception as exc:  # missing object, or libgit2's hash check failed
        raise CheckpointError(
            f"{where}: {label}: chunk {chunk.id} is missing or corrupted ({exc}); "
            "fetch checkpoints with `git flor pull --checkpoints` or run `git flor verify`"
        ) from None
    raise CheckpointError(f"{where}: {label}: chunk {chunk.id} is {size:,} bytes, the manifest says {chunk.size:,}; the checkpoint is corrupted or forged")
