"""What a run prints while it goes: ``seed: 4179``, ``epoch: 0, step: 500, loss: 1.22``.

Printing is done by the flusher thread once per flush, never by ``log`` itself, so the
echo costs the training loop nothing. Per flush it prints every run-level value, a line
for each iteration of an outermost loop that ended (the newest few), and one progress
line for the newest logged context. The work is vectorised over the flushed Arrow
batches, so it does not grow with the number of records per flush.
"""

from __future__ import annotations

import sys

from florgit import envflags
from florgit.codec.schemas import Tables

MAX_OUTER_LINES = 20
MAX_RUN_LEVEL = 50
_SCAN_BACK = 500  # records looked at to gather the progress line's values


def enabled_by_default() -> bool:
    return envflags.enabled("FLORGIT_ECHO", True)


def fmt(value: object) -> str:
    if type(value) is float:
        return f"{value:.6g}"
    return str(value)


class Echo:
    TRACKED = MAX_OUTER_LINES + 1  # outermost iterations tracked per loop and flush (see _printable)

    def __init__(self, quiet_names=()) -> None:
        self._quiet = quiet_names  # run-level names echoed elsewhere (args print when read)
        self._loops: dict[int, tuple[int, str, int]] = {}  # loop_id -> (parent ctx, name, depth)
        self._outer: dict[int, tuple[int, int]] = {}  # open outermost ctx -> (loop_id, iteration)
        self._newest: dict[int, tuple[int, int, int]] = {}  # depth -> (ctx, loop_id, iteration)
        self._fresh: dict[int, tuple[int, str, int]] = {}  # loops not yet in _depth_of
        self._depth_of = None  # numpy: loop_id -> depth, grown as loops appear (a loop per step adds up)

    def lines(self, rows: Tables, batches: Tables) -> list[str]:
        """Lines for one flush: its rows (loop and end tuples, starts and records as
        ``codec.unpacked`` reads them) and the Arrow batches made of them."""
        for loop_id, parent, depth, name in rows.loops:
            self._loops[loop_id] = self._fresh[loop_id] = (parent, name, depth)
        self._track_starts(rows.starts, batches.starts)
        lines = self._lines(rows.records, batches)
        self._forget_closed_loops()
        return lines

    def _lines(self, records, batches: Tables) -> list[str]:
        import numpy as np  # here, not at import: `import florgit` stays light

        from florgit.codec.pyarrays import view

        record = records.row
        rec_ctx = view(batches.records.column("ctx"))
        n = len(rec_ctx)
        keyed: list[tuple[int, str]] = []  # (record position, line): printed in log order
        for pos in np.flatnonzero(rec_ctx == 0)[:MAX_RUN_LEVEL]:
            _ctx, name, value = record(int(pos))
            if name not in self._quiet:
                keyed.append((int(pos), f"{name}: {fmt(value)}"))
        ended = view(batches.ends.column("ctx"))
        outer_ids = np.fromiter(self._outer, dtype=np.int64, count=len(self._outer))
        outer_ended = [int(c) for c in ended[member(ended, outer_ids)]]  # few: outermost iterations
        outer_done = outer_ended[-MAX_OUTER_LINES:]
        printed = set()
        rows_of: dict[int, list[int]] = {}  # the records of those iterations, found in one pass
        if outer_done:
            for pos in np.flatnonzero(member(rec_ctx, np.array(outer_done, dtype=np.int64))).tolist():
                rows_of.setdefault(int(rec_ctx[pos]), []).append(pos)
        for ctx in outer_done:
            where = rows_of.get(ctx)
            if where:
                keyed.append((where[-1], self._line(ctx, [record(p) for p in where])))
                printed.add(ctx)
        back = max(n - _SCAN_BACK, 0)
        newest = self._newest_named(rec_ctx[back:]) if n and rec_ctx[-1] != 0 else None
        if newest is not None and newest not in printed:
            tail = [record(back + p) for p in np.flatnonzero(rec_ctx[back:] == newest).tolist()]
            keyed.append((n - 1, self._line(newest, tail)))
        for ctx in outer_ended:
            self._outer.pop(ctx, None)
        return [line for _pos, line in sorted(keyed)]

    def _newest_named(self, rec_ctx) -> int | None:
        """The newest context among ``rec_ctx`` the echo can name. The flusher takes the
        starts before the records, so the newest records may belong to an iteration whose
        start comes with the next flush: they would print with no loop named at all."""
        import numpy as np

        newest = int(rec_ctx[-1])
        if newest in self._outer or any(c == newest for c, _l, _i in self._newest.values()):
            return newest
        named = np.fromiter([*self._outer, *(c for c, _l, _i in self._newest.values())], dtype=np.int64)
        found = np.flatnonzero(member(rec_ctx, named))
        return int(rec_ctx[found[-1]]) if len(found) else None

    def _track_starts(self, starts, batch) -> None:
        import numpy as np

        from florgit.codec.pyarrays import view

        if not starts.n:
            return
        loop_ids = view(batch.column("loop_id"))
        depth_of = self._depths()
        depths = depth_of[np.minimum(loop_ids, len(depth_of) - 1)]
        for pos in self._printable(np.flatnonzero(depths == 1), loop_ids).tolist():
            ctx, loop_id, iteration = starts.row(pos)
            self._outer[ctx] = (loop_id, iteration)
        for depth in range(2, int(depths.max()) + 1):  # np.unique would import numpy.ma: 50 ms
            found = np.flatnonzero(depths == depth)
            if len(found):
                pos = int(found[-1])
                ctx, loop_id, iteration = starts.row(pos)
                self._newest[depth] = (ctx, loop_id, iteration)

    def _printable(self, outer, loop_ids):
        """Of the outermost iterations starting at positions ``outer``, those a line may
        still name: the newest ``TRACKED`` of each loop. Lines go to the newest
        ``MAX_OUTER_LINES`` that ended, and a flush's ends come loop by loop, oldest first,
        so older ones are never printed; not tracking them keeps a flat loop of a million
        steps from costing a dict entry each (~1-2 us a step)."""
        import numpy as np

        keep = self.TRACKED
        if len(outer) <= keep:
            return outer
        loops = loop_ids[outer]
        if loops[0] == loops[-1] and (loops == loops[0]).all():  # one outermost loop: the usual case
            return outer[-keep:]
        order = np.argsort(loops, kind="stable")  # each loop's together, oldest first
        by_loop = loops[order]
        last_of_loop = np.flatnonzero(np.append(by_loop[1:] != by_loop[:-1], True))
        from_end = np.repeat(last_of_loop, np.diff(np.append(-1, last_of_loop))) - np.arange(len(order))
        return np.sort(outer[order[from_end < keep]])

    def _depths(self):
        """loop_id -> depth for every loop seen, kept up to date from new loops only."""
        import numpy as np

        top = max(self._loops, default=0) + 1
        if self._depth_of is None or len(self._depth_of) < top:
            grown = np.zeros(max(top, 2 * (0 if self._depth_of is None else len(self._depth_of)), 64), dtype=np.int16)
            if self._depth_of is not None:
                grown[: len(self._depth_of)] = self._depth_of
            self._depth_of = grown
        for loop_id, (_p, _n, depth) in self._fresh.items():
            self._depth_of[loop_id] = depth
        self._fresh.clear()
        return self._depth_of

    def _forget_closed_loops(self) -> None:
        """Keep only the loops an echo line can still name: those of open outermost
        iterations and of each depth's newest one (their parents are among them)."""
        if len(self._loops) > 2 * (len(self._outer) + len(self._newest)) + 64:
            keep = {loop for loop, _it in self._outer.values()} | {loop for _c, loop, _it in self._newest.values()}
            self._loops = {k: v for k, v in self._loops.items() if k in keep}

    def _line(self, ctx: int, rows: list[tuple]) -> str:
        prefix = [f"{loop}: {it}" for loop, it in self._chain(ctx)]
        last: dict[str, object] = {}
        for _ctx, name, value in rows:
            last[name] = value
        return ", ".join(prefix + [f"{n}: {fmt(v)}" for n, v in last.items()])

    def _chain(self, ctx: int) -> list[tuple[str, int]]:
        chain = []
        while ctx:
            found = self._outer.get(ctx)
            if found is None:
                found = next(((l, i) for c, l, i in self._newest.values() if c == ctx), None)
            if found is None:
                break
            loop_id, iteration = found
            parent, name, _depth = self._loops.get(loop_id, (0, "?", 0))
            chain.append((name, iteration))
            ctx = parent
        return chain[::-1]


def member(values, ids):
    """``np.isin(values, ids)`` for int64 arrays, through a table over the ids' span when it
    is not much wider than ``values`` (context ids of a flush lie close together): a few
    passes over ``values`` instead of one per id or a sort (25,000 values: ~0.1 ms, not ~0.4)."""
    import numpy as np

    if not len(ids) or not len(values):
        return np.zeros(len(values), dtype=bool)
    low, high = int(ids.min()), int(ids.max())
    if high - low > 4 * len(values) + 1024:
        return np.isin(values, ids)
    table = np.zeros(high - low + 1, dtype=bool)
    table[ids - low] = True
    at = np.clip(values - low, 0, high - low)
    return table[at] & (values >= low) & (values <= high)


def write(lines: list[str]) -> None:
    if lines:
        try:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stdout must not stop recording
