"""Query internals on hand-made runs: ids out of order, nested chains, loop values."""

from __future__ import annotations

import threading

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

import florgit as flor
from florgit.codec import arrow
from florgit.git import open_repo
from florgit.store import layout
from florgit.store.meta import RunMeta
from florgit.store.runs import persist_run


def _persist(loops, starts, ends, records, run_id="20260101-000000.000-aaaaaaaa"):
    tables = {
        layout.LOOPS: arrow.loop_batch(loops),
        layout.STARTS: arrow.start_batch(starts),
        layout.ENDS: arrow.end_batch(ends),
        layout.RECORDS: arrow.record_batch(records),
    }
    streams = {name: arrow.to_stream_bytes(pa.Table.from_batches([b])) for name, b in tables.items()}
    meta = RunMeta(run_id=run_id, script="hand.py", argv=["hand.py"], start="2026-01-01T00:00:00.000000Z", status="ok")
    persist_run(open_repo(), meta, streams)


def test_ids_out_of_order_are_resolved_by_join(repo):
    # Two loops whose rows were spooled out of id order (as concurrent threads can do).
    loops = [(2, 0, 1, "b"), (1, 0, 1, "a")]
    starts = [(2, 2, 0, None, 0.1), (1, 1, 0, None, 0.0), (4, 2, 1, None, 0.3), (3, 1, 1, None, 0.2)]
    records = [(1, "x", 10), (2, "y", 20), (3, "x", 11), (4, "y", 21)]
    _persist(loops, starts, [], records)
    df = flor.dataframe("x")
    assert df["a"].to_list() == [0, 1] and df["x"].to_list() == [10, 11]
    df = flor.dataframe("y")
    assert df["b"].to_list() == [0, 1] and df["y"].to_list() == [20, 21]


def test_nested_chain_with_loop_values_and_three_levels(repo):
    loops = [(1, 0, 1, "dataset"), (2, 1, 2, "epoch"), (3, 2, 3, "step"), (4, 5, 2, "epoch")]
    starts = [
        (1, 1, 0, "mnist", 0.0),
        (2, 2, 0, None, 0.1),
        (3, 3, 0, None, 0.2),
        (4, 3, 1, None, 0.3),
        (5, 1, 1, "cifar", 0.4),
        (6, 4, 0, None, 0.5),
    ]
    records = [(0, "lr", 0.1), (3, "loss", 1.0), (4, "loss", 0.5), (2, "acc", 0.7), (6, "acc", 0.8)]
    _persist(loops, starts, [(3, 0.25)], records)
    df = flor.dataframe("lr", "acc", "loss")
    rows = df.select("dataset", "dataset_value", "epoch", "step", "lr", "acc", "loss").rows()
    assert rows == [
        (0, "mnist", 0, 0, 0.1, 0.7, 1.0),
        (0, "mnist", 0, 1, 0.1, 0.7, 0.5),
        (1, "cifar", 0, None, 0.1, 0.8, None),  # an epoch with no steps keeps its own row
    ]


def test_name_logged_twice_in_one_context_keeps_the_last(repo):
    for step in flor.loop("step", range(2)):
        flor.log("loss", float(step))
        flor.log("loss", float(step) + 0.5)
    flor.commit()
    assert flor.dataframe("loss")["loss"].to_list() == [0.5, 1.5]


def test_same_name_at_two_levels_keeps_both(repo):
    for epoch in flor.loop("epoch", range(2)):
        for step in flor.loop("step", range(2)):
            flor.log("loss", float(step))
        flor.log("loss", 9.0)  # an epoch summary under the same name
    flor.commit()
    df = flor.dataframe("loss")
    assert df.height == 6
    assert df.filter(df["step"].is_null())["loss"].to_list() == [9.0, 9.0]


def test_loops_in_threads_resolve(repo):
    def work(tag):
        for i in flor.loop(f"t{tag}", range(50)):
            flor.log(f"v{tag}", i)

    flor.log("start", 1)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flor.commit()
    for k in range(2):
        df = flor.dataframe(f"v{k}")
        assert df.height == 50  # each value lands in some iteration of a loop; none is lost


def test_a_loop_entered_twice_keeps_each_instance_apart(repo):
    # Two phases, each with a loop named "epoch": their epoch 0s are different iterations.
    for phase_loss in (1.0, 2.0):
        for epoch in flor.loop("epoch", range(1)):
            flor.log("loss", phase_loss)
            for step in flor.loop("step", range(2)):
                flor.log("acc", phase_loss + step / 10)
    flor.commit()
    rows = flor.dataframe("loss", "acc").select("epoch", "step", "loss", "acc").rows()
    assert rows == [(0, 0, 1.0, 1.0), (0, 1, 1.0, 1.1), (0, 0, 2.0, 2.0), (0, 1, 2.0, 2.1)]


def test_values_spread_through_a_level_that_keeps_its_own_row(repo):
    # acc at run level spreads onto the epoch row; the step rows log acc themselves, so the
    # epoch row (which carries the run-level acc) keeps its own row: no value is lost.
    flor.log("acc", 0.5)
    for epoch in flor.loop("epoch", range(1)):
        flor.log("loss", 2.0)
        for step in flor.loop("step", range(1)):
            flor.log("acc", 0.9)
    flor.commit()
    rows = flor.dataframe("acc", "loss").select("epoch", "step", "acc", "loss").rows()
    assert rows == [(0, None, 0.5, 2.0), (0, 0, 0.9, 2.0)]


@settings(max_examples=150, deadline=None)
@given(
    fine=st.lists(st.integers(0, 12), max_size=40),
    coarse=st.sets(st.integers(0, 15), max_size=14),
    many=st.booleans(),
)
def test_spreading_run_level_values_is_a_left_join(fine, coarse, many):
    """pivot._spread gathers run-level values by run number where it can; it must be the
    left join it replaces: every fine row in order, nulls for runs with no coarse row."""
    import polars as pl

    from florgit.frames import pivot

    fine_frame = pl.DataFrame({"run": sorted(fine), "seq": range(len(fine))}, schema={"run": pl.UInt32, "seq": pl.Int64})
    runs = sorted(coarse) * (2 if many and coarse else 1)  # a run twice: not one row a run, so joined
    coarse_frame = pl.DataFrame(
        {"run": runs, "v": [r * 0.5 for r in runs], "s": [str(r) for r in runs]},
        schema={"run": pl.UInt32, "v": pl.Float64, "s": pl.String},
    )
    expected = fine_frame.join(coarse_frame, on="run", how="left", maintain_order="left")
    assert pivot._spread(fine_frame, coarse_frame, ["run"]).equals(expected)
