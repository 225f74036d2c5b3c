"""Checkpoints in git: content-addressed zstd chunks and one JSON manifest per checkpoint.

On ``refs/flor/checkpoints`` the tree holds ``blobs/<2>/<38>`` (every chunk, once, however
many checkpoints use it) and ``runs/<day>/<run>/<loop>-<loop id>/<boundary>.json``, the
manifests. ``boundary`` counts completed iterations: boundary ``e`` is the state at the
start of iteration ``e`` (0: before the loop ran), so "the checkpoint at the start of
epoch e" is a path lookup. Each checkpoint is its own compare-and-swap commit, so a run
that is killed keeps every checkpoint it finished.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from florgit.codec import statetree, tensors
from florgit.errors import CheckpointError
from florgit.git import GitRepo
from florgit.store import layout

FORMAT_VERSION = 1


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

    @property
    def iteration(self) -> int:
        """The iteration whose end this state is (-1: before the loop)."""
        return self.boundary - 1


def manifest_path(run_id: str, loop: str, loop_id: int, boundary: int, phase: str = "start") -> str:
    suffix = "" if phase == "start" else f".after.{phase.removeprefix('after:')}"
    return f"{layout.run_path(run_id)}/{loop}-{loop_id}/{boundary:08d}{suffix}.json"


def _parse_name(name: str) -> tuple[int, str] | None:
    stem, _, inner = name.removesuffix(".json").partition(".after.")
    if not stem.isdigit():
        return None
    return int(stem), (f"after:{inner}" if inner else "start")


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


def list_checkpoints(repo: GitRepo, run_id: str) -> list[CheckpointInfo]:
    """A run's checkpoints in order (loop instance, then boundary)."""
    run_tree = repo.tree_at(layout.CHECKPOINTS_REF, layout.run_path(run_id))
    if run_tree is None:
        return []
    found = []
    for loop_dir, kind, loop_tree in repo.list_tree(run_tree):
        loop, _, loop_id = loop_dir.rpartition("-")
        if kind != "tree" or not loop_id.isdigit():
            continue
        for name, kind, oid in repo.list_tree(loop_tree):
            parsed = _parse_name(name)
            if kind == "blob" and name.endswith(".json") and parsed is not None:
                manifest = read_manifest_blob(repo, oid)
                chunks = tuple(c["id"] for a in manifest.get("arrays", []) for c in a["chunks"])
                found.append(
                    CheckpointInfo(
                        run_id=run_id,
                        loop=loop,
                        loop_id=int(loop_id),
                        boundary=parsed[0],
                        path=f"{layout.run_path(run_id)}/{loop_dir}/{name}",
                        nbytes=sum(a["nbytes"] for a in manifest.get("arrays", [])),
                        stored=sum(c["size"] for a in manifest.get("arrays", []) for c in a["chunks"]),
                        chunks=chunks,
                        phase=parsed[1],
                    )
                )
    return sorted(found, key=lambda c: (c.loop_id, c.boundary, c.phase != "start"))


def read_manifest_blob(repo: GitRepo, oid: str) -> dict:
    return _parse_manifest(repo.read_blob(oid), oid)


def read_manifest(repo: GitRepo, info: CheckpointInfo) -> dict:
    data = repo.blob_at(layout.CHECKPOINTS_REF, info.path)
    if data is None:
        raise CheckpointError(f"run {info.run_id} has no checkpoint at {info.loop} boundary {info.boundary}")
    return _parse_manifest(data, info.path)


def _parse_manifest(data: bytes, where: str) -> dict:
    manifest = statetree.loads(data)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION or "arrays" not in manifest:
        raise CheckpointError(f"{where} is not a florgit checkpoint manifest (format {FORMAT_VERSION}); refusing to load it")
    return manifest


def load_arrays(repo: GitRepo, manifest: dict, where: str) -> list:
    """Every array of a manifest, each verified against its recorded sha1."""
    out = []
    for entry in manifest["arrays"]:
        parts = []
        for chunk in entry["chunks"]:
            try:
                parts.append(tensors.decompress(repo.read_blob(chunk["id"])))
            except CheckpointError:
                raise CheckpointError(f"{where}: chunk {chunk['id']} is corrupted; fetch the checkpoints again") from None
            except Exception as exc:  # missing object, or libgit2's hash check failed
                raise CheckpointError(
                    f"{where}: chunk {chunk['id']} is missing or corrupted ({exc}); "
                    "fetch checkpoints with `git flor pull --checkpoints` or run `git flor verify`"
                ) from None
        data = b"".join(parts)
        if tensors.digest(data) != entry["sha1"] or len(data) != entry["nbytes"]:
            raise CheckpointError(f"{where}: array {len(out)} does not match its recorded hash; the checkpoint is corrupted")
        meta = tensors.ArrayMeta(entry["kind"], entry["dtype"], entry["shape"], entry["device"])
        out.append(tensors.from_raw(meta, data))
    return out
