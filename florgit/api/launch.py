"""Multi-process training: every rank of one launch records into one run.

``torchrun`` (and DeepSpeed, accelerate, srun-style launchers) start one process per rank
with ``RANK`` and ``WORLD_SIZE`` set. Rank 0 starts the run as usual and publishes its id
in ``.git/flor/launches/<launch key>``; the other ranks wait for that file and record
into the same run (florgit.store.runs keeps each rank's tables under ``ranks/<rank>/``).

The launch key must be equal in every rank of one launch and differ between launches:
the rendezvous id (``TORCHELASTIC_RUN_ID``) when the user gave one (multi-node torchrun
needs one; the nodes then share the repository through a shared filesystem), otherwise the
launcher process itself (the ranks' parent: its pid and start time), plus the master
address and port, the world size and the restart count. A process that records several
runs (``flor.commit()`` in a loop) numbers them, so run n of rank 1 joins run n of rank 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass

from florgit import validation
from florgit.errors import FlorgitWarning
from florgit.store import layout
from florgit.store.meta import MAX_WORLD_SIZE

WAIT_ENV = "FLORGIT_RANK_WAIT"  # seconds a rank waits for rank 0's run id (default 60)
DEFAULT_WAIT_S = 60.0
_STALE_S = 7 * 24 * 3600  # launch files older than this are removed when rank 0 writes one
_runs_started = 0  # runs this process has started: the n in "run n of this launch"


@dataclass(frozen=True)
class Rank:
    rank: int
    world_size: int
    key: str  # the same in every rank of one launch, for its n-th run


def current() -> Rank | None:
    """This process's rank when a launcher started several (``WORLD_SIZE`` > 1), else None.
    Each call numbers a new run of this process."""
    global _runs_started
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    if rank is None or world is None or world < 2:
        return None
    if not 0 <= rank < world <= MAX_WORLD_SIZE:
        warnings.warn(
            f"florgit: RANK={rank} and WORLD_SIZE={world} do not fit together (0 <= RANK < WORLD_SIZE <= "
            f"{MAX_WORLD_SIZE}); this process records a run of its own", FlorgitWarning, stacklevel=4,
        )  # fmt: skip
        return None
    _runs_started += 1
    return Rank(rank, world, _launch_key(world, _runs_started))


def run_to_record(git_dir: str, rank: Rank | None, new_id: str) -> tuple[str, int]:
    """The run this process records into, and its rank in it: ``new_id`` as rank 0 (a
    single process, rank 0 of a launch, which publishes it, or a rank that found no run
    of rank 0 to join), else rank 0's run."""
    if rank is None:
        return new_id, 0
    if rank.rank == 0:
        publish(git_dir, rank, new_id)
        return new_id, 0
    joined = await_run_id(git_dir, rank)
    return (joined, rank.rank) if joined else (new_id, 0)


def publish(git_dir: str, rank: Rank, run_id: str) -> None:
    """Rank 0: tell the other ranks of this launch which run they record into."""
    folder = os.path.join(git_dir, layout.LAUNCHES_DIR)
    os.makedirs(folder, exist_ok=True)
    _remove_stale(folder)
    path = os.path.join(folder, rank.key)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"run_id": run_id, "world_size": rank.world_size, "pid": os.getpid()}, f)
    os.replace(tmp, path)


def await_run_id(git_dir: str, rank: Rank) -> str | None:
    """Ranks 1..: rank 0's run id, waiting for it up to FLORGIT_RANK_WAIT seconds; None
    (with a warning) if it never comes, and this rank records a run of its own."""
    path = os.path.join(git_dir, layout.LAUNCHES_DIR, rank.key)
    wait = _wait_seconds()
    deadline, pause = time.monotonic() + wait, 0.005
    while True:
        run_id = _read_launch(path, rank.world_size)
        if run_id is not None:
            return run_id
        if time.monotonic() >= deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    warnings.warn(
        f"florgit: rank {rank.rank} of {rank.world_size} found no run of rank 0 after {wait:g} s (rank 0 "
        f"never called florgit, or runs in another repository); this rank records a run of its own. "
        f"Set {WAIT_ENV}=SECONDS to wait longer", FlorgitWarning, stacklevel=4,
    )  # fmt: skip
    return None


def _read_launch(path: str, world_size: int) -> str | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    if not isinstance(run_id, str) or validation.RUN_ID.match(run_id) is None or data.get("world_size") != world_size:
        return None
    return run_id


def _launch_key(world_size: int, nth: int) -> str:
    env = os.environ.get
    rdzv = env("TORCHELASTIC_RUN_ID", "")
    launcher = rdzv if rdzv not in ("", "none") else _parent_identity()
    parts = [launcher, env("MASTER_ADDR", ""), env("MASTER_PORT", ""), str(world_size), env("TORCHELASTIC_RESTART_COUNT", "0"), str(nth)]
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


def _parent_identity() -> str:
    """The launcher process: its pid and, where /proc tells, its start time (pids are reused)."""
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return f"{ppid}@{fields[19].decode()}"  # field 22, starttime, counted after "(comm)"
    except (OSError, IndexError):
        return str(ppid)


def _env_int(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    return int(text) if text.isdigit() and len(text) < 10 else None


def _wait_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, DEFAULT_WAIT_S)))
    except ValueError:
        return DEFAULT_WAIT_S


def _remove_stale(folder: str) -> None:
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            if now - os.stat(path).st_mtime > _STALE_S:
                os.remove(path)
        except OSError:
            pass
