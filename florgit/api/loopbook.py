"""Bookkeeping shared by the recording and the replaying recorder: loop instances, and
the objects of open ``flor.checkpointing`` blocks."""

from __future__ import annotations

from florgit.codec.values import check_name


class LoopBook:
    """Needs ``ctx``, ``depth`` and ``_next_loop`` on the instance, and ``_use_buffers``
    called once."""

    def _use_buffers(self, buffers) -> None:
        """The buffers this recorder appends to; ``functions.log`` reads three of them on
        every call: packed record rows, their side list, and each logged name's code. Once
        per recorder: the compiled log keeps the first ones it reads (api/_hotpath.c)."""
        if hasattr(self, "buffers"):
            raise RuntimeError("a recorder's buffers are set once")
        self.buffers = buffers
        self.records, self.others, self.codes = buffers.records, buffers.others, buffers.table.codes

    def add_name(self, name: str) -> int:
        """A name's first log: checked once, then its code (see codec.packed)."""
        return self.buffers.table.code_of(check_name(name))

    def _open_loop(self, name: str) -> tuple[int, int, int]:
        """Register a new instance of loop ``name``; returns (loop_id, parent ctx, depth)."""
        parent, depth = self.ctx, self.depth + 1
        loop_id = self._next_loop()
        self.buffers.loops.append((loop_id, parent, depth, name))
        return loop_id, parent, depth


class CheckpointScope:
    """The objects of open ``flor.checkpointing`` blocks, and the loop depth of the outermost
    one (its first loop is the checkpointed loop)."""

    def __init__(self) -> None:
        self.objs: dict[str, object] = {}
        self.depth: int | None = None

    def enter(self, objs: dict[str, object], depth: int) -> tuple:
        """Enter a block at loop ``depth``; returns what :meth:`leave` restores."""
        previous = (dict(self.objs), self.depth)
        self.objs.update(objs)
        if self.depth is None:
            self.depth = depth
        return previous

    def leave(self, previous: tuple) -> None:
        self.objs, self.depth = previous
