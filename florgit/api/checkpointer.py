"""Taking checkpoints while training runs, with near-zero cost to the training loop.

The training thread only snapshots: ``state_dict()`` of every object passed to
``flor.checkpointing``, parameter ``.grad``s and RNG states, copied to CPU. A background
thread at lower priority hashes, compresses and writes them (a bounded queue of two
checkpoints) and commits each one. Which iterations are checkpointed follows the FlorDB
paper's adaptive rule: only while checkpoints cost under 1/15 of the loop's time, where
the cost is the training thread's time on them plus the writer's CPU time (on a machine
whose cores training keeps busy, that CPU time is taken from training); a fixed period
can be forced instead.
"""

from __future__ import annotations

import os
import queue
import random
import sys
import threading
import time
import warnings

from florgit.api.loopbook import CheckpointScope
from florgit.codec import statetree, tensors

QUEUE_DEPTH = 2
ADAPTIVE_SHARE = 1 / 15  # of loop time, at most, spent on checkpoints (FlorDB, VLDB 2021)
PROGRESS_AFTER = 1.0  # seconds of waiting at the end of a run before progress is shown
WRITER_NICE = 10


def period_from_env() -> int | None:
    """``FLORGIT_CHECKPOINT_PERIOD``: unset/"adaptive" -> None, else every N iterations."""
    text = os.environ.get("FLORGIT_CHECKPOINT_PERIOD", "adaptive").strip().lower()
    if text in ("", "adaptive", "auto"):
        return None
    try:
        return max(1, int(text))
    except ValueError:
        warnings.warn(f"florgit: FLORGIT_CHECKPOINT_PERIOD={text!r} is not a number; using adaptive", stacklevel=2)
        return None


class Checkpointer(CheckpointScope):
    def __init__(self, git_dir: str, run_id: str, period: int | None) -> None:
        super().__init__()
        self.run_id = run_id
        self.period = period
        self.bound: tuple[str, int] | None = None  # (name, loop_id) of the checkpointed loop
        self.bound_depth = 0
        self.loop_start = 0.0
        self.iteration = -1  # the bound loop's current iteration
        self.last_boundary: tuple[int, int] | None = None  # (loop_id, boundary) captured last
        self.cost = 0.0  # training-thread seconds spent on checkpoints
        self.last_cost = 0.0
        self.write_cpu = 0.0  # writer-thread CPU seconds, summed (written by the writer)
        self.last_write_cpu = 0.0
        self.taken = 0
        self.skipped = 0
        self.frame = None  # the user frame running the checkpointed loop
        self.carried: list[str] = []  # its loop-carried variables (florgit.hindsight.carried)
        self.failed: list[str] = []
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._git_dir = git_dir
        self._thread = threading.Thread(target=self._write_loop, name="florgit-checkpoints", daemon=True)
        self._thread.start()

    # -- training thread -----------------------------------------------------------------
    def bind(self, name: str, loop_id: int, depth: int, frame=None) -> bool:
        """Is this loop the outermost loop inside the open checkpointing block? If so,
        ``frame`` runs it: its loop-carried variables are stored with each checkpoint."""
        if self.depth is None or self.bound is not None or depth != self.depth + 1:
            return False
        self.bound, self.bound_depth, self.loop_start = (name, loop_id), depth, time.perf_counter()
        self.frame, self.carried = frame, carried_names(frame) if frame is not None else []
        return True

    def is_inner(self, depth: int) -> bool:
        """Is a loop at ``depth`` directly inside an iteration of the checkpointed loop?"""
        return self.bound is not None and depth == self.bound_depth + 1

    def unbind(self, loop_id: int) -> None:
        if self.bound is not None and self.bound[1] == loop_id:
            self.bound, self.frame = None, None

    def due(self, boundary: int) -> bool:
        if boundary == 0:
            return True  # the state before the loop: replay of the first iteration needs it
        if self.period is not None:
            return boundary % self.period == 0
        spent = self.cost + self.write_cpu + self.last_cost + self.last_write_cpu
        return spent <= ADAPTIVE_SHARE * (time.perf_counter() - self.loop_start)

    def capture(self, loop: str, loop_id: int, boundary: int, phase: str = "start") -> None:
        """Checkpoint now: phase "start" at an iteration boundary, "after:<inner loop>"
        right after an inner loop ended (outer-level replay resumes from it)."""
        start = time.perf_counter()
        try:
            item = self._snapshot(loop, loop_id, boundary, phase)
        except Exception as exc:  # a florgit failure must not kill hours of training
            self.taken += 1  # an attempt that failed: `taken - len(failed)` counts the stored ones
            self._fail(f"{loop} boundary {boundary}: {exc}")
            return
        self._queue.put(item)  # blocks only while two checkpoints are still being written
        if phase == "start":
            self.last_boundary = (loop_id, boundary)
        self.last_cost = time.perf_counter() - start
        self.cost += self.last_cost
        self.taken += 1

    def _snapshot(self, loop: str, loop_id: int, boundary: int, phase: str) -> tuple:
        states = {name: obj.state_dict() for name, obj in self.objs.items()}
        grads = {name: _grads(obj) for name, obj in self.objs.items() if hasattr(obj, "named_parameters")}
        arrays: list = []
        encoded = {
            "objects": statetree.encode(states, arrays),
            "grads": statetree.encode(grads, arrays),
            "rng": statetree.encode(_rng_state(), arrays),
        }
        if self.carried and self.frame is not None:
            encoded["variables"], encoded["inexact"] = self._variables(arrays)
        metas = [tensors.describe(a) for a in arrays]
        copies = [tensors.snapshot(a) for a in arrays]
        types = {name: f"{type(obj).__module__}.{type(obj).__qualname__}" for name, obj in self.objs.items()}
        return (loop, loop_id, boundary, phase, encoded, types, metas, copies)

    def _variables(self, arrays: list) -> tuple[dict, dict[str, str]]:
        """The loop-carried variables that can be stored without pickle, and the type of
        each one that can't (replay of this run is then inexact for it)."""
        from types import FunctionType, ModuleType

        from florgit.api.userframe import read_variables
        from florgit.errors import CheckpointError

        checkpointed = {id(obj) for obj in self.objs.values()}
        values, inexact = {}, {}
        for name, value in read_variables(self.frame, self.carried).items():
            if id(value) in checkpointed or isinstance(value, (ModuleType, FunctionType, type)):
                continue  # restored with its object, or code rather than state
            try:
                statetree.encode(value, [])
            except (CheckpointError, RecursionError):
                inexact[name] = f"{type(value).__module__}.{type(value).__qualname__}"
                continue
            values[name] = value
        return statetree.encode(values, arrays), inexact

    def close(self) -> None:
        """Wait for every pending checkpoint (showing progress when it takes a while)."""
        self._queue.put(None)
        waited = 0.0
        while self._thread.is_alive():
            self._thread.join(timeout=0.25)
            waited += 0.25
            if waited >= PROGRESS_AFTER and self._thread.is_alive() and waited % 1.0 < 0.25:
                print(f"florgit: writing checkpoints ({self._queue.qsize()} queued)...", file=sys.stderr, flush=True)

    # -- writer thread -------------------------------------------------------------------
    def _write_loop(self) -> None:
        from florgit.git import open_repo
        from florgit.store.checkpoints import ChunkIndex

        _lower_priority()  # training threads come first; writes soak up idle CPU
        repo = open_repo(self._git_dir, require_workdir=False)  # its own handle: libgit2 objects are per thread
        index = ChunkIndex(repo)
        while True:
            item = self._queue.get()
            if item is None:
                return
            cpu = time.thread_time()
            try:
                self._write(repo, index, item)
            except Exception as exc:
                self._fail(f"{item[0]} boundary {item[2]}: {exc}")
            self.last_write_cpu = time.thread_time() - cpu
            self.write_cpu += self.last_write_cpu

    def _write(self, repo, index, item: tuple) -> None:
        from florgit.store.checkpoints import FORMAT_VERSION, commit_checkpoint, store_array

        loop, loop_id, boundary, phase, encoded, types, metas, copies = item
        arrays = []
        for meta, copy in zip(metas, copies):
            data = tensors.raw_bytes(copy)
            raw_sha, chunks, _new = store_array(repo, index, data)
            arrays.append(
                {
                    "kind": meta.kind,
                    "dtype": meta.dtype,
                    "shape": meta.shape,
                    "device": meta.device,
                    "nbytes": len(data),
                    "sha1": raw_sha,
                    "chunks": [{"id": oid, "size": size} for oid, size in chunks],
                }
            )
        manifest = {
            "format": FORMAT_VERSION,
            "run": self.run_id,
            "loop": loop,
            "loop_id": loop_id,
            "boundary": boundary,
            "phase": phase,
            "time": time.time(),
            "types": types,
            **encoded,
            "arrays": arrays,
        }
        commit_checkpoint(repo, self.run_id, manifest)

    def _fail(self, why: str) -> None:
        if not self.failed:
            warnings.warn(f"florgit: a checkpoint failed and training goes on: {why}", stacklevel=3)
        self.failed.append(why)


_CARRIED: dict[tuple[str, int], list[str]] = {}


def carried_names(frame) -> list[str]:
    """The loop-carried variables of the loop the frame is running (analysed once per
    loop); none when its source can't be read or parsed."""
    import linecache

    key = (frame.f_code.co_filename, frame.f_lineno)
    if key not in _CARRIED:
        from florgit.hindsight.carried import loop_state

        try:
            state = loop_state("".join(linecache.getlines(key[0])), key[1])
        except (SyntaxError, ValueError, RecursionError):
            state = None
        _CARRIED[key] = state.carried if state is not None else []
    return _CARRIED[key]


def _lower_priority() -> None:
    try:  # on Linux, nice applies to the calling thread alone
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
    except (OSError, AttributeError):
        pass


def _grads(module: object) -> dict:
    return {name: p.grad for name, p in module.named_parameters() if getattr(p, "grad", None) is not None}


def _rng_state() -> dict:
    state: dict = {"python": random.getstate()}
    # Only libraries the script has imported; `import` (not sys.modules) waits while another
    # thread (the flusher loading pyarrow, hence numpy) is still initialising one.
    if "numpy" in sys.modules:
        import numpy as np

        state["numpy"] = np.random.get_state()
    if "torch" in sys.modules:
        import torch

        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        import numpy as np

        np.random.set_state(tuple(state["numpy"]))
    if "torch" in state or "torch_cuda" in state:
        import torch

        if "torch" in state:
            torch.set_rng_state(state["torch"])
        if "torch_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["torch_cuda"])
