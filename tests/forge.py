"""Building malformed, corrupt and hostile runs with plumbing, as a hostile teammate would."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pyarrow as pa

from florgit.codec import arrow
from florgit.git import open_repo
from florgit.store import layout


def new_id(day: str = "20250101") -> str:
    return f"{day}-000000.000-{secrets.token_hex(4)}"


def good_meta(rid: str, **changes: object) -> dict:
    meta = {
        "run_id": rid, "script": "train.py", "argv": ["train.py"], "start": "2025-01-01T00:00:00.000000Z",
        "status": "ok", "end": "2025-01-01T00:00:01.000000Z", "cwd": ".", "args": {}, "records": 1, "format": 1,
    }  # fmt: skip
    meta.update(changes)
    return meta


def tables(records=((0, "loss", 1.0),), loops=(), starts=(), ends=()) -> dict[str, bytes]:
    batches = {
        layout.RECORDS: arrow.record_batch(list(records)),
        layout.LOOPS: arrow.loop_batch(list(loops)),
        layout.STARTS: arrow.start_batch(list(starts)),
        layout.ENDS: arrow.end_batch(list(ends)),
    }
    return {name: arrow.to_stream_bytes(pa.Table.from_batches([b])) for name, b in batches.items()}


def put_run(repo_path: Path | str, path: str, files: dict[str, bytes], subtrees: dict[str, str] | None = None) -> str:
    """Commit a run tree of exactly ``files`` at ``path`` on flor.shadow; returns its tree id."""
    repo = open_repo(str(repo_path), require_workdir=False)
    blobs = {name: repo.write_blob(data) for name, data in files.items()}
    tree = repo.write_tree(blobs, subtrees)
    repo.put_tree_in_ref(layout.SHADOW_REF, path, tree, f"forged {path}")
    return tree


def forge_run(repo_path: Path | str, meta: dict | bytes | None = None, run_id: str | None = None, **table_args) -> str:
    """A run whose meta.json is ``meta`` (bytes as they are) and whose tables are valid
    unless replaced; returns its id."""
    run_id = run_id or new_id()
    meta_bytes = meta if isinstance(meta, bytes) else json.dumps(meta if meta is not None else good_meta(run_id)).encode()
    files = {**tables(**{k: v for k, v in table_args.items() if k in ("records", "loops", "starts", "ends")})}
    files.update(table_args.get("files", {}))
    files[layout.META_FILE] = meta_bytes
    put_run(repo_path, layout.run_path(run_id), files)
    return run_id


def object_file(repo_path: Path | str, oid: str) -> Path:
    return Path(repo_path, ".git", "objects", oid[:2], oid[2:])


def delete_object(repo_path: Path | str, oid: str) -> None:
    path = object_file(repo_path, oid)
    os.chmod(path, 0o644)
    path.unlink()


def bomb(stream: bytes, claim: int = 2**40) -> bytes:
    """``stream`` with its first compressed buffer claiming ``claim`` bytes once
    decompressed (the 8-byte length prefix before a zstd frame)."""
    at = stream.index(b"\x28\xb5\x2f\xfd") - 8
    return stream[:at] + claim.to_bytes(8, "little", signed=True) + stream[at + 8 :]


def garble(stream: bytes) -> bytes:
    """``stream`` with its first zstd frame's header overwritten: every structure and size
    a check can read stays valid; only decompressing it fails."""
    at = stream.index(b"\x28\xb5\x2f\xfd") + 4
    return stream[:at] + b"\xff" * 6 + stream[at + 6 :]


TREE_MODE = "40000"


def blob(repo_path: Path | str, data: bytes | str) -> str:
    data = data.encode() if isinstance(data, str) else data
    out = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo_path, input=data, capture_output=True, check=True)
    return out.stdout.decode().strip()


def raw_tree(repo_path: Path | str, entries: list[tuple[str, str, str]]) -> str:
    """A tree object of ``(mode, name, id)`` entries written as given, names unchecked
    (what pygit2's and git's own tree builders refuse to write)."""

    def key(e: tuple[str, str, str]) -> str:
        return e[1] + ("/" if e[0] == TREE_MODE else "")

    data = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid) for mode, name, oid in sorted(entries, key=key))
    out = subprocess.run(["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
                         cwd=repo_path, input=data, capture_output=True, check=True)  # fmt: skip
    return out.stdout.decode().strip()


def rewrite_meta(repo_path: Path | str, run_id: str, **changes: object) -> None:
    """Change fields of a stored run's meta.json in place on flor.shadow, as a forged push would."""
    repo = open_repo(str(repo_path), require_workdir=False)

    def edit(path: str, old: bytes | None) -> bytes | None:
        return json.dumps({**json.loads(old or b"{}"), **changes}).encode()

    path = f"{layout.run_path(run_id)}/{layout.META_FILE}"
    repo.edit_blobs_in_ref(layout.SHADOW_REF, [path], edit, f"forged meta of {run_id}", 1 << 20)
