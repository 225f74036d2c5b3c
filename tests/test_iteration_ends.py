"""Iteration times: the hot path reads the clock once per iteration and the flusher works
out where each iteration ended. Every iteration of every loop gets exactly one end, an
iteration of ``flor.loop`` ends where the next one of its loop starts, and that holds
across flushes, for ``break`` and exceptions, and for hand-written ``flor.iteration``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import florgit as flor
from florgit.api import functions
from florgit.api.iteration_ends import IterationEnds
from florgit.store import layout, runs


def _tables(repo_path):
    from florgit.git import open_repo

    repo = open_repo(str(repo_path))
    stored = runs.list_runs(repo)[-1]
    return (runs.read_table(repo, stored, layout.STARTS).to_pylist(), runs.read_table(repo, stored, layout.ENDS).to_pylist(),
            runs.read_table(repo, stored, layout.LOOPS).to_pylist())  # fmt: skip


def test_every_iteration_ends_once_where_the_next_starts(repo):
    flush = lambda: functions._rec.flusher.flush()  # noqa: E731
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(4)):
            flor.log("loss", step)
            if step == 1:
                flush()  # a flush in the middle of a loop: its open iteration ends in the next one
        if epoch == 1:
            flush()
    for i in flor.loop("early", range(10)):
        if i == 2:
            break
    with pytest.raises(ValueError):
        for i in flor.loop("failing", range(5)):
            if i == 1:
                raise ValueError("boom")
    for i in range(3):
        with flor.iteration("hand", i):
            flor.log("h", i)
    flor.commit()
    starts, ends, loops = _tables(repo.path)
    end_of = {}
    for e in ends:
        assert e["ctx"] not in end_of, f"iteration {e['ctx']} ended twice"
        end_of[e["ctx"]] = e["t"]
    assert sorted(end_of) == sorted(s["ctx"] for s in starts)  # every iteration ended once
    name_of = {lp["loop_id"]: lp["loop"] for lp in loops}
    by_loop: dict[int, list[dict]] = {}
    for s in starts:
        by_loop.setdefault(s["loop_id"], []).append(s)
    for loop_id, its in by_loop.items():
        for s in its:
            assert end_of[s["ctx"]] >= s["t"] >= 0
        if name_of[loop_id] != "hand":
            for a, b in zip(its, its[1:]):
                assert end_of[a["ctx"]] == b["t"]  # ends where the next iteration starts
    assert [s["iteration"] for s in starts if name_of[s["loop_id"]] == "early"] == [0, 1, 2]
    assert [s["iteration"] for s in starts if name_of[s["loop_id"]] == "failing"] == [0, 1]
    # an epoch's end is its last step's end or later: inner iterations fit inside
    for s in starts:
        if name_of[s["loop_id"]] == "step":
            parent = next(lp["parent"] for lp in loops if lp["loop_id"] == s["loop_id"])
            assert end_of[s["ctx"]] <= end_of[parent]


def test_inferred_ends_carry_over_batches_and_skip_hand_loops():
    ends = IterationEnds(explicit_loops={9})
    c, t = ends.ends(np.array([1, 2, 3]), np.array([5, 5, 9]), np.array([0.0, 1.0, 1.5]), [])
    assert c.tolist() == [1] and t.tolist() == [1.0]  # 2 stays open; loop 9's ends are recorded
    c, t = ends.ends(np.array([4, 5]), np.array([5, 6]), np.array([2.0, 2.5]), [(3, 1.7)])
    assert sorted(zip(c.tolist(), t.tolist())) == [(2, 2.0), (3, 1.7)]
    c, t = ends.ends(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), [(4, 3.0), (5, 3.5)])
    assert c.tolist() == [4, 5] and ends.ends(np.array([6]), np.array([5]), np.array([4.0]), [])[0].tolist() == []


@settings(max_examples=150, deadline=None)
@given(loops=st.lists(st.integers(1, 4), max_size=60), cuts=st.sets(st.integers(0, 60), max_size=6))
def test_batches_of_starts_end_each_iteration_where_its_loops_next_starts(loops, cuts):
    """Starts of up to four loops, interleaved or one loop's alone (sorted already), cut
    into batches anywhere: each iteration but a loop's last ends at its loop's next start,
    whichever batch that comes in; the lasts end where the hot path recorded them."""
    ctx = np.arange(1, len(loops) + 1, dtype=np.int64)
    loop_id, t = np.array(loops, dtype=np.int64), ctx * 0.5
    ends, got = IterationEnds(set()), {}
    bounds = sorted({0, len(loops), *(c for c in cuts if c <= len(loops))})
    for lo, hi in zip(bounds, bounds[1:]):
        c, e = ends.ends(ctx[lo:hi], loop_id[lo:hi], t[lo:hi], [])
        for k, v in zip(c.tolist(), e.tolist()):
            assert k not in got
            got[k] = v
    last_of = {lp: int(c) for c, lp in zip(ctx, loops)}  # each loop's last iteration
    c, e = ends.ends(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), [(k, -1.0) for k in last_of.values()])
    got.update(zip(c.tolist(), e.tolist()))
    expected = {}
    for i, (k, lp) in enumerate(zip(ctx.tolist(), loops)):
        following = [j for j in range(i + 1, len(loops)) if loops[j] == lp]
        expected[k] = t[following[0]] if following else -1.0
    assert got == expected


@settings(max_examples=150, deadline=None)
@given(loops=st.lists(st.integers(1, 4), max_size=80), cuts=st.sets(st.integers(0, 80), max_size=6), explicit=st.booleans())
def test_ends_by_blocks_and_by_rows_are_the_same_arrays(loops, cuts, explicit):
    """Batches taken block by block (a few blocks of one loop's starts) or row by row give
    the same ends in the same order (the echo picks the newest it prints by it)."""
    from florgit.api import iteration_ends

    ctx = np.arange(1, len(loops) + 1, dtype=np.int64)
    loop_id, t = np.array(loops, dtype=np.int64), ctx * 0.25
    bounds = sorted({0, len(loops), *(c for c in cuts if c <= len(loops))})
    outs = []
    for few in (0, 10**9):  # every batch by rows, then every batch by blocks
        saved, iteration_ends._FEW_BLOCKS = iteration_ends._FEW_BLOCKS, few
        try:
            ends, got = IterationEnds({4} if explicit else set()), []
            for lo, hi in zip(bounds, bounds[1:]):
                c, e = ends.ends(ctx[lo:hi], loop_id[lo:hi], t[lo:hi], [(int(ctx[hi - 1]), 99.0)] if hi - lo > 2 else [])
                got.append((c.tolist(), e.tolist()))
            outs.append((got, dict(ends._open), dict(ends._loop_of)))
        finally:
            iteration_ends._FEW_BLOCKS = saved
    assert outs[0] == outs[1]
