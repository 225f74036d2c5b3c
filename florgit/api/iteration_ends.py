"""When each iteration of a ``flor.loop`` ended, worked out off the training thread.

The hot path reads the clock once per iteration, when the iteration starts. An iteration
of a loop ends when the next iteration of the same loop instance starts (fetching the next
item counts as part of it); only the last iteration of each loop instance, and every
iteration of a hand-written ``flor.iteration``, has an end the hot path records itself.
The flusher turns each batch of starts into the ends they imply, carrying the newest
iteration of every open loop over to the next batch.
"""

from __future__ import annotations

import numpy as np


_FEW_BLOCKS = 64  # blocks of one loop's starts in a batch up to which they are taken block by block


class IterationEnds:
    def __init__(self, explicit_loops: set[int]) -> None:
        self._explicit = explicit_loops  # hand-written loops: every end is recorded
        self._open: dict[int, int] = {}  # loop id -> ctx of its newest iteration, not yet ended
        self._loop_of: dict[int, int] = {}  # the same, ctx -> loop id

    def ends(self, ctx: np.ndarray, loop_id: np.ndarray, t: np.ndarray, recorded: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
        """``(ctx, t)`` of the iterations that ended: those the starts (in start order)
        imply, then the ``recorded`` ends."""
        out_ctx: list[np.ndarray] = []
        out_t: list[np.ndarray] = []
        if len(ctx) and self._explicit:
            keep = ~np.isin(loop_id, np.array(tuple(self._explicit), dtype=np.int64))  # tuple(): one step
            ctx, loop_id, t = ctx[keep], loop_id[keep], t[keep]
        if len(ctx):
            breaks = np.flatnonzero(loop_id[1:] != loop_id[:-1]) + 1  # where a block of one loop's starts ends
            if len(breaks) < _FEW_BLOCKS:  # one loop, or epochs of many steps: block by block
                self._implied_by_blocks(ctx, loop_id, t, breaks, out_ctx, out_t)
            else:
                self._implied_by_rows(ctx, loop_id, t, out_ctx, out_t)
        if recorded:
            ends_ctx = np.array([c for c, _t in recorded], dtype=np.int64)
            for c in ends_ctx.tolist():  # a loop's last iteration: the loop is done
                loop = self._loop_of.pop(c, None)
                if loop is not None:
                    del self._open[loop]
            out_ctx.append(ends_ctx)
            out_t.append(np.array([t for _c, t in recorded], dtype=np.float64))
        if not out_ctx:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        return np.concatenate(out_ctx), np.concatenate(out_t)

    def _implied_by_rows(self, ctx, loop_id, t, out_ctx: list, out_t: list) -> None:
        """The ends the starts imply, each loop's in start order, loops in id order, then
        the carried ones: rows sorted by loop."""
        order = np.argsort(loop_id, kind="stable")  # each loop's starts together, in order
        ctx, loop_id, t = ctx[order], loop_id[order], t[order]
        same = loop_id[1:] == loop_id[:-1]
        out_ctx.append(ctx[:-1][same])  # ends where the next iteration of its loop starts
        out_t.append(t[1:][same])
        firsts = np.flatnonzero(np.concatenate(([True], ~same)))
        carried_ctx, carried_t = [], []
        for i in firsts.tolist():  # the newest iteration of an earlier batch ends here
            previous = self._close(int(loop_id[i]))
            if previous is not None:
                carried_ctx.append(previous)
                carried_t.append(t[i])
        out_ctx.append(np.array(carried_ctx, dtype=np.int64))
        out_t.append(np.array(carried_t, dtype=np.float64))
        for i in np.append(firsts[1:] - 1, len(ctx) - 1).tolist():
            self._keep_open(int(loop_id[i]), int(ctx[i]))

    def _implied_by_blocks(self, ctx, loop_id, t, breaks, out_ctx: list, out_t: list) -> None:
        """The same ends, in the same order, from the blocks of consecutive starts of one
        loop (a batch of one loop is one block; epochs of many steps, a few dozen): slices
        of the batch, no sort of its rows and no copies but the final one."""
        firsts = np.concatenate(([0], breaks)).tolist()
        stops = [*breaks.tolist(), len(ctx)]
        loops = loop_id[firsts].tolist()
        carried_ctx, carried_t = [], []
        last_of: dict[int, int] = {}  # loop -> the row of its newest start so far
        for k in sorted(range(len(firsts)), key=loops.__getitem__):  # stable: each loop's blocks in order
            first, stop, loop = firsts[k], stops[k], loops[k]
            if loop in last_of:  # the loop's previous block ends where this one starts
                out_ctx.append(ctx[last_of[loop] : last_of[loop] + 1])
                out_t.append(t[first : first + 1])
            else:
                previous = self._close(loop)
                if previous is not None:  # the newest iteration of an earlier batch ends here
                    carried_ctx.append(previous)
                    carried_t.append(t[first])
            out_ctx.append(ctx[first : stop - 1])
            out_t.append(t[first + 1 : stop])
            last_of[loop] = stop - 1
        out_ctx.append(np.array(carried_ctx, dtype=np.int64))
        out_t.append(np.array(carried_t, dtype=np.float64))
        for loop, row in last_of.items():
            self._keep_open(loop, int(ctx[row]))

    def _keep_open(self, loop: int, newest: int) -> None:
        self._open[loop] = newest
        self._loop_of[newest] = loop

    def _close(self, loop: int) -> int | None:
        """The ctx of ``loop``'s open iteration, no longer open; None if it has none."""
        newest = self._open.pop(loop, None)
        if newest is not None:
            del self._loop_of[newest]
        return newest
