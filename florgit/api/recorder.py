"""One run in progress: its buffers, loop contexts, args, and how it ends.

The hot path (``functions.log`` and loop iterations) only appends packed rows to bytearrays;
everything that touches disk or git happens at the run's start, in the flusher thread,
or when the run ends.
"""

from __future__ import annotations

import itertools
import os
import platform
import socket
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial

from florgit import __version__
from florgit.api import kwargs as kwargs_mod
from florgit.api import notebook
from florgit.api.compiled import compiled
from florgit.api.loopbook import LoopBook
from florgit.codec.packed import HAS_ITEM, START, append_start
from florgit.codec.values import SCALAR_TYPES, to_scalar
from florgit.errors import FlorgitError, KwargsError

_RangeSteps = compiled("RangeSteps")  # range loops stepped in C, where the compiled hot path is in use
_MAX_STEPS = sys.maxsize  # longer ranges are stepped by _loop
# The C steps read time.perf_counter's clock themselves (None) where it is CLOCK_MONOTONIC.
_STEP_CLOCK = None if time.get_clock_info("perf_counter").implementation == "clock_gettime(CLOCK_MONOTONIC)" else time.perf_counter


def _plain_range(iterable: Iterable) -> bool:
    """``range(n)``: each item is its own index, so no item is kept and fetching one runs
    no user code (the loops' fast paths)."""
    return type(iterable) is range and iterable.start == 0 and iterable.step == 1

MAX_UNTRACKED_BYTES = 5 * 1024 * 1024


def _utc_iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


class Recorder(LoopBook):
    def __init__(self, argv: list[str], kwargs: dict[str, str], echo_on: bool, checkpoint_period: int | None) -> None:
        from florgit.api import launch
        from florgit.api.flusher import Buffers, Flusher, warm_up

        warm_up()  # first: the imports overlap the repository's snapshot below
        from florgit.git import open_repo
        from florgit.store import layout
        from florgit.store.meta import RunMeta
        from florgit.store.recovery import recover_abandoned
        from florgit.store.spool import Spool

        self.repo = open_repo()
        recover_abandoned(self.repo)
        now = time.time()
        self.t0 = time.perf_counter()
        rank = launch.current()
        self.run_id, self.rank = launch.run_to_record(self.repo.git_dir, rank, layout.new_run_id(now))
        head = self.repo.head()
        self.meta = RunMeta(
            run_id=self.run_id,
            script=_script_path(self.repo.workdir),
            argv=list(argv),
            start=_utc_iso(now),
            cwd=_relative(os.getcwd(), self.repo.workdir),
            module=_main_module(),
            user_commit=head.commit,
            branch=head.branch,
            detached=head.detached,
            kwargs=dict(kwargs),
            python=platform.python_version(),
            florgit=__version__,
            host=socket.gethostname(),
            author=self.repo.author(),
            pid=os.getpid(),
            rank=self.rank,
            world_size=rank.world_size if rank else 1,
        )
        if self.rank == 0:  # the code, args and checkpoints of a launch are rank 0's
            snap = self.repo.snapshot(MAX_UNTRACKED_BYTES)
            self.repo.set_ref(layout.pending_ref(self.run_id), snap.tree)  # the tree itself: see layout
            self.meta.dirty, self.meta.code_tree, self.meta.skipped_files = snap.dirty, snap.tree, snap.skipped
        else:
            echo_on = False  # one console line per log, not one per rank
        self.kwargs = kwargs
        self.used_kwargs: set[str] = set()
        self.args: dict[str, object] = {}
        self._use_buffers(Buffers(t0=self.t0))
        self.ctx = 0
        self.depth = 0
        self._next_ctx = itertools.count(1).__next__
        self._next_loop = itertools.count(1).__next__
        self._hand_loops: dict[tuple[int, str], int] = {}  # iteration(): (parent, name) -> loop_id
        self.checkpointer = None  # created by the first flor.checkpointing block
        self.checkpoint_period = checkpoint_period
        self.spool = Spool(self.repo.git_dir, self.meta)
        self.flusher = Flusher(self.buffers, self.spool, echo_on, self.args)
        self.finished = False
        self._kwargs_checked = False

    # -- hot path helpers ------------------------------------------------------------
    def drain(self) -> None:
        """Called by ``log`` only when the buffer is over its bound: convert here, and leave
        the writing to the flusher thread."""
        self.flusher.hand_off()

    def loop(self, name: str, iterable: Iterable) -> Iterator:
        if _RangeSteps is not None and _plain_range(iterable) and iterable.stop <= _MAX_STEPS:
            # Steps in C (api/_hotpath.c), recorded as _loop records them; opened at the
            # first step, as a generator is, where a checkpointed loop goes back to _loop.
            return _RangeSteps(self, partial(self._open_range, name, iterable), max(0, iterable.stop))
        return self._loop(name, iterable)

    def _open_range(self, name: str, iterable: range) -> tuple | Iterator:
        """The first step of a range loop stepped in C: what _loop does before its first
        item, and what the steps append to; or _loop's generator, to do it all."""
        if self.checkpointer is not None:
            return iter(self._loop(name, iterable))
        if not self._kwargs_checked:
            self._check_kwargs()
        loop_id, parent, depth = self._open_loop(name)
        self.depth = depth
        counter = self._next_ctx.__self__  # the itertools.count behind _next_ctx: C steps it directly
        return self.buffers.starts, self.buffers.ends, counter, _STEP_CLOCK, loop_id, parent, depth

    def _loop(self, name: str, iterable: Iterable) -> Iterator:
        if not self._kwargs_checked:
            self._check_kwargs()
        loop_id, parent, depth = self._open_loop(name)
        starts, items, ends, next_ctx, clock = self.buffers.starts, self.buffers.items, self.buffers.ends, self._next_ctx, time.perf_counter
        scalar, pack, flagged = SCALAR_TYPES, START.pack, loop_id | HAS_ITEM
        self.depth = depth
        ckpt = self.checkpointer
        checkpointed = ckpt is not None and ckpt.bind(name, loop_id, depth, sys._getframe(1))
        inner = not checkpointed and ckpt is not None and ckpt.is_inner(depth)
        if checkpointed:
            ckpt.capture(name, loop_id, 0)  # the state before the first item is fetched
        ctx, idx = 0, -1
        try:
            # One clock reading per iteration, at its start (raw: the flusher subtracts t0).
            # An iteration ends where the next one starts (iteration_ends); only the last
            # one's end is appended here. An item is kept when it is a scalar other than
            # its own index: it goes to the side list first (codec.packed.append_start).
            if not checkpointed and _plain_range(iterable):
                # The commonest loop: each item is its own index, so none is kept and the
                # checks below are skipped (~0.15 us a step less). Fetching a range's next
                # item runs no user code, so ctx need not go back to the parent between
                # iterations: the finally below restores it when the loop ends.
                for idx in iterable:
                    ctx = next_ctx()
                    starts += pack(ctx, loop_id, idx, clock())
                    self.ctx = ctx
                    yield idx
            else:
                for idx, item in enumerate(iterable):
                    ctx = next_ctx()
                    kind = type(item)
                    if kind in scalar and (kind is not int or item != idx):
                        items += (ctx, item)
                        starts += pack(ctx, flagged, idx, clock())
                    else:
                        starts += pack(ctx, loop_id, idx, clock())
                    self.ctx = ctx
                    if checkpointed:
                        ckpt.iteration = idx
                    yield item
                    self.ctx = parent
                    if checkpointed and ckpt.due(idx + 1):
                        ckpt.capture(name, loop_id, idx + 1)  # the state at the start of iteration idx + 1
            if ctx:  # the last iteration ends here, before the end-state checkpoint below
                ends.append((ctx, clock()))
                ctx = 0
            if checkpointed and ckpt.last_boundary != (loop_id, idx + 1):
                ckpt.capture(name, loop_id, idx + 1)  # the end state: run-level replay resumes there
        finally:
            if ctx:  # left by break, return or an exception: the iteration ends here
                ends.append((ctx, clock()))
            if checkpointed:
                ckpt.unbind(loop_id)
            self.ctx, self.depth = parent, depth - 1
        if inner and ckpt.bound is not None and ckpt.due(ckpt.iteration + 1):
            outer_name, outer_loop = ckpt.bound  # outer-level replay skips this loop from here
            ckpt.capture(outer_name, outer_loop, ckpt.iteration, phase=f"after:{name}")

    def open_checkpointing(self, objs: dict[str, object]) -> tuple:
        """Start a ``flor.checkpointing`` block; returns what ``close_checkpointing`` restores.
        Only rank 0 of a launch checkpoints: data-parallel ranks hold the same state."""
        if self.rank:
            return None
        if self.checkpointer is None:
            from florgit.api.checkpointer import Checkpointer

            self.checkpointer = Checkpointer(self.repo.git_dir, self.run_id, self.checkpoint_period)
        return self.checkpointer.enter(objs, self.depth)

    def close_checkpointing(self, previous: tuple | None) -> None:
        if self.checkpointer is not None and previous is not None:
            self.checkpointer.leave(previous)

    @contextmanager
    def iteration(self, name: str, idx: int, value: object) -> Iterator[int]:
        parent, depth = self.ctx, self.depth + 1
        loop_id = self._hand_loops.get((parent, name))
        if loop_id is None:  # successive iterations of one hand-written loop share its id
            loop_id, _parent, _depth = self._open_loop(name)
            self._hand_loops[(parent, name)] = loop_id
            self.buffers.explicit_loops.add(loop_id)  # its ends are all recorded: none inferred
        ctx = self._next_ctx()
        clock = time.perf_counter
        if value is not None and type(value) not in SCALAR_TYPES:
            try:
                value = to_scalar(value, name)
            except FlorgitError:
                value = None  # like loop items: only scalars are kept
        append_start(self.buffers.starts, self.buffers.items, ctx, loop_id, idx, value, clock())
        self.ctx, self.depth = ctx, depth
        try:
            yield idx
        finally:
            self.buffers.ends.append((ctx, clock()))
            self.ctx, self.depth = parent, depth - 1

    # -- args --------------------------------------------------------------------------
    def arg(self, name: str, default: object, missing: object) -> object:
        if name in self.args:
            return self.args[name]
        if name in self.kwargs:
            value = kwargs_mod.parse(name, self.kwargs[name], None if default is missing else default)
            self.used_kwargs.add(name)
        elif default is missing:
            raise KwargsError(
                f"flor.arg({name!r}) has no default and {kwargs_mod.FLAG} does not set it; "
                f"give it a default or run with `{kwargs_mod.FLAG} {name}=VALUE`"
            )
        else:
            value = default
        stored = value if type(value) in SCALAR_TYPES else _scalar_or_repr(value, name)
        self.args[name] = value
        if self.rank == 0:  # a launch's args are rank 0's (every rank got the same command line)
            self.meta.args[name] = stored
            self.buffers.record(0, name, stored)
        return value

    def _check_kwargs(self) -> None:
        """Training starts: a --kwargs key no flor.arg has asked for is a typo that would
        cost the whole run, so it stops the script here (FLORGIT_KWARGS=lenient opts out)."""
        self._kwargs_checked = True
        unused = sorted(set(self.kwargs) - self.used_kwargs)
        if unused and not kwargs_mod.lenient():
            raise KwargsError(kwargs_mod.unknown_before_training(unused, self.kwargs, sorted(self.args)))

    # -- ending ------------------------------------------------------------------------
    def finish(self, status: str, error: str | None = None) -> None:
        """Persist the run: final Arrow files, a shadow-branch commit, a note. Status
        ``discard`` (the command line was wrong, nothing was trained) records nothing."""
        if self.finished:
            return
        self.finished = True
        if status == DISCARD:
            self._discard()
            return
        from florgit.store import layout
        from florgit.store import meta as meta_mod
        from florgit.store.runs import persist_run

        if self.checkpointer is not None:
            self.checkpointer.close()  # every pending checkpoint is committed before the run
        self.flusher.stop()
        meta = self.meta
        if self.checkpointer is not None:
            meta.checkpoints = self.checkpointer.taken - len(self.checkpointer.failed)
            meta.checkpoint_tree = self.repo.tree_at(layout.CHECKPOINTS_REF, layout.run_path(self.run_id))
        meta.status, meta.error = status, error
        meta.end = _utc_iso(time.time())
        meta.records = self.flusher.count
        meta.last = meta_mod.last_summary(self.flusher.last)
        meta.torch = getattr(sys.modules.get("torch"), "__version__", None)
        meta.unused_kwargs = sorted(set(self.kwargs) - self.used_kwargs)
        if meta.unused_kwargs:
            print(kwargs_mod.unused_message(meta.unused_kwargs, self.kwargs, sorted(self.args)), file=sys.stderr)
        try:
            self.spool.write_meta(meta)  # a crash from here on is recovered with this status
            persist_run(self.repo, meta, self.flusher.streams())
        except Exception as exc:
            warnings.warn(
                f"florgit: run {self.run_id} could not be committed ({exc}); it stays in "
                f"{self.spool.dir} and is recovered the next time florgit runs here",
                stacklevel=2,
            )
            self.spool.release()
            return
        self.spool.remove()
        if self.flusher.echo_on:
            print(f"florgit: committed run {self.run_id} ({status}, {meta.records:,} records) to flor.shadow")


    def _discard(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.flusher.stop()
        self.spool.remove()
        from florgit.store import layout

        self.repo.delete_ref(layout.pending_ref(self.run_id))


DISCARD = "discard"


def _scalar_or_repr(value: object, name: str) -> object:
    try:
        return to_scalar(value, name)
    except FlorgitError:
        return repr(value)  # list/tuple/dict args are kept as their Python literal text


def _script_path(workdir: str | None) -> str:
    if notebook.running_cells():  # sys.argv[0] would name the kernel's launcher
        found = notebook.notebook_path()
        return _relative(found, workdir) if found else notebook.UNKNOWN
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    if not path or path == "-c":
        return "<interactive>"
    return _relative(os.path.abspath(path), workdir)


def _main_module() -> str | None:
    """The module `python -m` ran (``pkg.train``), or None for a script or a notebook."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    return name if isinstance(name, str) and name != "__main__" else None


def _relative(path: str, workdir: str | None) -> str:
    if workdir:
        rel = os.path.relpath(path, workdir)
        if not rel.startswith(".."):
            return rel
    return path
