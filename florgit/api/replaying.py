"""The recorder of a replay process: the old script runs again, but only the work the
plan needs is done, from checkpoints, and only the replayed names are kept.

- ``arg`` returns the value the original run recorded.
- The checkpointed loop yields only the iterations to execute; each starts from the
  checkpoint at its start (unless the previous iteration just ran). Strategy "run"
  executes only the last iteration (so variables the code after the loop reads exist,
  with their final values); "outer" skips the inner loops of each iteration by
  restoring the state right after them.
- When the process ends, the new records are mapped onto the original run's loop
  contexts (same loop names and iterations) and stored with the run, marked as replayed.
"""

from __future__ import annotations

import ast
import itertools
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from florgit.api.flusher import Buffers
from florgit.api.loopbook import CheckpointScope, LoopBook
from florgit.api.userframe import caller_frame, write_variables
from florgit.codec.packed import append_start
from florgit.codec.values import SCALAR_TYPES, to_scalar
from florgit.errors import FlorgitError
from florgit.hindsight.spec import ReplaySpec


class ReplayRecorder(LoopBook):
    def __init__(self, spec: ReplaySpec) -> None:
        from florgit.git import open_repo
        from florgit.store import checkpoints, runs

        self.spec = spec
        self.repo = open_repo(spec.git_dir, require_workdir=False)
        self.stored = runs.find_run(self.repo, spec.run_id)
        self.meta = runs.read_meta(self.repo, self.stored)
        self.run_id = spec.run_id
        self.wanted = set(spec.names)
        self.execute = None if spec.execute is None else set(spec.execute)
        self.checkpoints = {
            (c.phase, c.boundary): c for c in checkpoints.list_checkpoints(self.repo, spec.run_id) if c.loop == spec.loop
        }
        self._use_buffers(Buffers())
        self.ctx = 0
        self.depth = 0
        self._next_ctx = itertools.count(1).__next__
        self._next_loop = itertools.count(1).__next__
        self.scope = CheckpointScope()
        self.bound_depth: int | None = None
        self.outer_iteration = -1
        self.started = time.time()
        self.finished = False
        self.restored = 0
        self.carried: set[str] = set()  # loop-carried variables of the checkpointed loop

    # -- what functions.py calls ---------------------------------------------------------
    def drain(self) -> None:
        pass  # a replay keeps its (few) records in memory until it ends

    def arg(self, name: str, default: object, missing: object) -> object:
        if name not in self.meta.args:
            return None if default is missing else default
        value = self.meta.args[name]
        if isinstance(value, str) and isinstance(default, (list, tuple, dict)):
            try:
                value = ast.literal_eval(value)  # recorded as its literal text
            except (ValueError, SyntaxError, RecursionError, MemoryError) as exc:
                why = f"recorded arg {name!r} as {value[:80]!r}, not a Python literal ({type(exc).__name__})"
                raise FlorgitError(f"run {self.run_id} {why}") from None
        return value

    def open_checkpointing(self, objs: dict[str, object]) -> tuple:
        return self.scope.enter(objs, self.depth)

    def close_checkpointing(self, previous: tuple) -> None:
        self.scope.leave(previous)

    def iteration(self, name: str, idx: int, value: object):
        return self._context(name, idx, value)

    def loop(self, name: str, iterable: Iterable) -> Iterator:
        depth = self.depth + 1
        scope = self.scope
        if self.bound_depth is None and scope.depth is not None and depth == scope.depth + 1 and name == self.spec.loop:
            return self._bound_loop(name, iterable, depth)
        if self.spec.strategy == "outer" and self.bound_depth is not None and depth == self.bound_depth + 1:
            after = self.checkpoints.get((f"after:{name}", self.outer_iteration))
            if after is not None:
                return self._skipped_loop(after)
        return self._plain_loop(name, iterable)

    # -- loops -----------------------------------------------------------------------------
    def _plain_loop(self, name: str, iterable: Iterable) -> Iterator:
        loop_id, parent, depth = self._open_loop(name)
        self.depth = depth
        try:
            for idx, item in enumerate(iterable):
                self._start(loop_id, idx, item)
                yield item
                self.ctx = parent
        finally:
            self.ctx, self.depth = parent, depth - 1

    def _skipped_loop(self, after) -> Iterator:
        self._restore(after, caller_frame())  # the state right after this inner loop ran
        return iter(())

    def _bound_loop(self, name: str, iterable: Iterable, depth: int) -> Iterator:
        from florgit.api.checkpointer import carried_names

        loop_id, parent, _ = self._open_loop(name)
        self.depth, self.bound_depth = depth, depth
        self.carried = set(carried_names(sys._getframe(1)))  # the frame is at this loop's line
        strategy = self.spec.strategy
        last = -1
        try:
            ran_previous = False
            for idx, item in enumerate(iterable):
                last = idx
                if strategy != "full" and self.execute is not None and idx not in self.execute:
                    ran_previous = False
                    continue
                if strategy != "full" and not ran_previous:
                    start = self.checkpoints.get(("start", idx))
                    if start is None:
                        raise FlorgitError(f"run {self.run_id} has no checkpoint at the start of {name} {idx}")
                    self._restore(start, sys._getframe(1))  # the user frame running the loop
                self.outer_iteration = idx
                self._start(loop_id, idx, item)
                yield item
                self.ctx = parent
                ran_previous = True
        finally:
            self.ctx, self.depth, self.bound_depth = parent, depth - 1, None
        # Past the loop only a task that ran its last iteration holds the state the code
        # after it reads; it goes on when a new statement lies there too.
        go_on = self.spec.after_loop and (self.execute is None or last in self.execute)
        if strategy in ("outer", "inner") and not go_on:
            self.finish("ok")  # the new statements live in this loop: nothing after it matters
            sys.stdout.flush()
            os._exit(0)

    def _start(self, loop_id: int, idx: int, item: object) -> None:
        ctx = self._next_ctx()
        kind = type(item)
        value = item if kind in SCALAR_TYPES and not (kind is int and item == idx) else None
        append_start(self.buffers.starts, self.buffers.items, ctx, loop_id, idx, value, 0.0)
        self.ctx = ctx

    @contextmanager
    def _context(self, name: str, idx: int, value: object):
        loop_id, parent, depth = self._open_loop(name)
        if value is not None and type(value) not in SCALAR_TYPES:
            try:
                value = to_scalar(value, name)
            except FlorgitError:
                value = None
        self.depth = depth
        self._start(loop_id, idx, value if value is not None else idx)
        try:
            yield idx
        finally:
            self.ctx, self.depth = parent, depth - 1

    def _restore(self, info, frame) -> None:
        """The checkpoint's objects and RNG states, and the loop-carried variables of
        ``frame`` as they were when it was taken."""
        from florgit.api.restore import restore

        values = restore(self.repo, info, self.scope.objs)
        if frame is not None and values:
            # Only what this code's checkpointed loop carries: a manifest (maybe pulled)
            # never picks which of the script's names get overwritten.
            write_variables(frame, {k: v for k, v in values.items() if k in self.carried})
        self.restored += 1

    # -- the end -----------------------------------------------------------------------------
    def finish(self, status: str, error: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        if status != "ok":
            print(f"florgit: replay of {self.run_id} failed ({error}); nothing stored", file=sys.stderr)
            return
        from florgit.store.replays import replay_id, store_replay

        code = self.spec.code  # the patched script the plan exported and this process ran
        if replay_id(self.spec.names, code) != self.spec.replay_id:  # a stored id must verify
            why = "its id is not the hash of its code; nothing stored"
            print(f"florgit: replay of {self.run_id}: {why}", file=sys.stderr)
            return
        stored, dropped = store_replay(self.repo, self.spec, self.stored, self.buffers, self.started, code)
        print(f"florgit: replayed {', '.join(self.spec.names)} for run {self.run_id}: {stored} values"
              + (f" ({dropped} outside the original run's loops were dropped)" if dropped else ""))
