"""The logging API in-process: run lifecycle, types, loops, pivot rules."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

import florgit as flor
from florgit.errors import InvalidNameError, UnsupportedValueError, UsageError


def test_log_returns_value_and_keeps_types(repo):
    tensor = torch.tensor(2.5)
    assert flor.log("t", tensor) is tensor
    flor.log("i", 3)
    flor.log("f", 0.25)
    flor.log("b", True)
    flor.log("s", "adam")
    flor.log("none", None)
    flor.log("nan", float("nan"))
    flor.log("inf", float("-inf"))
    flor.log("np_i", np.int32(7))
    flor.log("np_f", np.float32(0.5))
    flor.log("np_b", np.bool_(False))
    flor.commit()
    df = flor.dataframe("t", "i", "f", "b", "s", "none", "nan", "inf", "np_i", "np_f", "np_b")
    assert df.height == 1
    row = df.row(0, named=True)
    assert row["t"] == 2.5 and df.schema["t"] == pl.Float64
    assert row["i"] == 3 and df.schema["i"] == pl.Int64
    assert row["b"] is True and df.schema["b"] == pl.Boolean
    assert row["s"] == "adam" and df.schema["s"] == pl.String
    assert row["none"] is None
    assert math.isnan(row["nan"]) and row["inf"] == float("-inf")
    assert row["np_i"] == 7 and df.schema["np_i"] == pl.Int64
    assert row["np_f"] == 0.5 and row["np_b"] is False


def test_an_int_beyond_64_bits_keeps_its_run_queryable(repo, recwarn):
    """The run's meta.last once kept such an int as it was, which the meta's validation
    refuses: the whole run was left out of every query. It is kept as its text, as the
    records keep it, and the run reads back whole."""
    flor.arg("seed", 2**70)
    for step in flor.loop("step", range(2)):
        flor.log("big", -(2**65) + step)
        flor.log("loss", 0.5)
    flor.commit()
    df = flor.dataframe("seed", "big", "loss")
    assert df.get_column("big").to_list() == [str(-(2**65)), str(-(2**65) + 1)]
    assert df.get_column("seed").to_list() == [str(2**70)] * 2
    assert flor.runs().height == 1
    assert not [w for w in recwarn if "left out" in str(w.message)]


def test_unsupported_value_raises_clearly(repo):
    with pytest.raises(UnsupportedValueError, match="item()"):
        flor.log("weights", [1, 2, 3])
    with pytest.raises(UnsupportedValueError):
        flor.log("matrix", torch.ones(2, 2))
    with pytest.raises(UnsupportedValueError):
        flor.log("arr", np.ones(3))


@pytest.mark.parametrize("bad", ["", " x", "a\nb", "run_id", 7, "x" * 300])
def test_invalid_names_raise(repo, bad):
    with pytest.raises(InvalidNameError):
        flor.log(bad, 1)


def test_loop_is_lazy_and_records_nesting(repo):
    consumed = []

    def gen():
        for i in range(3):
            consumed.append(i)
            yield i

    it = flor.loop("epoch", gen())
    assert consumed == []  # nothing materialised before iteration
    for epoch in it:
        assert consumed == list(range(epoch + 1))
        for step in flor.loop("step", range(2)):
            flor.log("loss", epoch * 10 + step)
        flor.log("acc", epoch / 10)
    flor.commit()
    df = flor.dataframe("loss")
    assert df.columns == ["run_id", "start_time", "script", "epoch", "step", "loss"]
    assert df["loss"].to_list() == [0, 1, 10, 11, 20, 21]
    assert df["epoch"].to_list() == [0, 0, 1, 1, 2, 2]
    assert df["step"].to_list() == [0, 1, 0, 1, 0, 1]


def test_outer_values_broadcast_to_inner_rows_in_any_order(repo):
    flor.arg("lr", 0.1)
    for epoch in flor.loop("epoch", range(2)):
        for step in flor.loop("step", range(2)):
            flor.log("loss", float(step))
        flor.log("acc", epoch + 0.5)
    flor.log("final", "done")
    flor.commit()
    a = flor.dataframe("lr", "acc", "loss", "final")
    b = flor.dataframe("loss", "final", "acc", "lr")
    assert a.height == b.height == 4
    assert a["acc"].to_list() == [0.5, 0.5, 1.5, 1.5]
    assert set(a["lr"].to_list()) == {0.1} and set(a["final"].to_list()) == {"done"}
    assert a.sort("epoch", "step").select(sorted(a.columns)).equals(b.sort("epoch", "step").select(sorted(b.columns)))


def test_run_level_only_gives_one_row_per_run(repo):
    for lr in (0.1, 0.2):
        flor.log("lr", lr)
        for _ in flor.loop("epoch", range(3)):
            flor.log("loss", 1.0)
        flor.commit()
    df = flor.dataframe("lr")
    assert df["lr"].to_list() == [0.1, 0.2]


def test_two_commits_make_two_runs(repo):
    flor.log("x", 1)
    flor.commit()
    flor.log("x", 2)
    flor.commit()
    df = flor.dataframe("x")
    assert df["x"].to_list() == [1, 2]
    assert df["run_id"].n_unique() == 2
    assert flor.runs()["status"].to_list() == ["ok", "ok"]


def test_loop_value_column_only_for_scalar_items_other_than_index(repo):
    for name in flor.loop("dataset", ["mnist", "cifar"]):
        flor.log("size", len(name))
    for bs in flor.loop("batch_size", [16, 32]):
        flor.log("bs_seen", bs)
    for i in flor.loop("plain", range(2)):
        flor.log("p", i)
    flor.commit()
    df = flor.dataframe("size")
    assert df["dataset"].to_list() == [0, 1]
    assert df["dataset_value"].to_list() == ["mnist", "cifar"]
    df = flor.dataframe("bs_seen")
    assert df["batch_size_value"].to_list() == [16, 32]
    assert "plain_value" not in flor.dataframe("p").columns


def test_iteration_context_manager(repo):
    for i, item in enumerate(["a", "b"]):
        with flor.iteration("doc", i, item):
            flor.log("len", len(item) + i)
    with flor.iteration("plain", 5):
        flor.log("q", 1)
    flor.commit()
    df = flor.dataframe("len")
    assert df["doc"].to_list() == [0, 1] and df["doc_value"].to_list() == ["a", "b"]
    df = flor.dataframe("q")
    assert df["plain"].to_list() == [5] and "plain_value" not in df.columns
    with pytest.raises(UsageError):
        flor.iteration("doc", "zero")


def test_value_after_break_is_run_level(repo):
    for epoch in flor.loop("epoch", range(10)):
        flor.log("loss", float(epoch))
        if epoch == 2:
            break
    flor.log("best", 2)
    flor.commit()
    df = flor.dataframe("loss", "best")
    assert df["best"].to_list() == [2, 2, 2]  # run-level, broadcast to the loop rows
    assert flor.dataframe("best").height == 1
    contexts = flor.scan().filter(pl.col("name") == "best").collect()
    assert contexts["epoch"].to_list() == [None]


def test_no_names_gives_run_level_values_per_run(repo):
    flor.arg("seed", 3)
    for _ in flor.loop("epoch", range(2)):
        flor.log("loss", 0.1)
    flor.log("acc", 0.9)
    flor.commit()
    flor.log("other", "x")
    flor.commit()
    df = flor.dataframe()
    assert df.height == 2
    assert {"seed", "acc", "other"} <= set(df.columns) and "loss" not in df.columns
    assert df["seed"].to_list() == [3, None]


def test_mixed_int_float_is_float_and_text_mix_is_string(repo):
    flor.log("m", 1)
    flor.commit()
    flor.log("m", 2.5)
    flor.commit()
    flor.log("t", 1)
    flor.commit()
    flor.log("t", "one")
    flor.commit()
    assert flor.dataframe("m")["m"].to_list() == [1.0, 2.5]
    assert flor.dataframe("t")["t"].to_list() == ["1", "one"]


def test_missing_name_gives_null_column(repo):
    flor.log("x", 1)
    flor.commit()
    df = flor.dataframe("x", "never")
    assert df["never"].to_list() == [None]
    assert flor.dataframe("never").height == 0


def test_scan_and_query(repo):
    flor.arg("lr", 0.5)
    for epoch in flor.loop("epoch", range(3)):
        flor.log("loss", 1.0 / (epoch + 1))
    flor.commit()
    long = flor.scan().collect()
    assert set(long["name"].to_list()) == {"lr", "loss"}
    assert long.filter(pl.col("name") == "loss")["value_float"].to_list() == [1.0, 0.5, 1 / 3]
    out = flor.query("SELECT name, COUNT(*) AS n FROM records GROUP BY name ORDER BY name")
    assert out.to_dicts() == [{"name": "loss", "n": 3}, {"name": "lr", "n": 1}]
    assert flor.query("SELECT status FROM runs")["status"].to_list() == ["ok"]


def test_checkpointing_accepts_state_dict_objects(repo):
    model = torch.nn.Linear(2, 2)
    with flor.checkpointing(model=model):
        for _ in flor.loop("epoch", range(2)):
            flor.log("w", model.weight.detach().sum())
    with pytest.raises(UsageError, match="state_dict"):
        with flor.checkpointing(model=object()):
            pass
    flor.commit()


def test_arg_without_default_or_kwargs_raises(repo):
    with pytest.raises(UsageError, match="--kwargs"):
        flor.arg("needed")


def test_arg_records_list_default_as_literal_text(repo):
    assert flor.arg("layers", [64, 32]) == [64, 32]
    flor.commit()
    assert flor.dataframe("layers")["layers"].to_list() == ["[64, 32]"]


def test_name_equal_to_a_loop_gets_the_documented_prefix(repo):
    for epoch in flor.loop("epoch", range(2)):
        flor.log("epoch_loss", 1.0)
    flor.log("epoch", 5)
    flor.commit()
    df = flor.dataframe("epoch", "epoch_loss")
    assert df.columns == ["run_id", "start_time", "script", "epoch", "log:epoch", "epoch_loss"]
    assert df["epoch"].to_list() == [0, 1]
    assert df["log:epoch"].to_list() == [5, 5]


def test_echo_keeps_only_the_loops_it_can_still_name(repo):
    """A loop opened inside every step adds a loop instance per step; the echo's own
    bookkeeping must not grow with them (it rebuilt a depth table of every loop per flush)."""
    from florgit.api import functions

    for _e in flor.loop("epoch", range(20)):
        for _s in flor.loop("step", range(50)):
            for _m in flor.loop("micro", range(2)):
                flor.log("loss", 0.25)
        functions._rec.flusher.flush()
        assert len(functions._rec.flusher._echo._loops) <= 64 + 8
    flor.commit()
    assert flor.dataframe("loss").height == 20 * 50 * 2


def test_echo_names_the_loops_of_its_progress_line_when_the_newest_start_comes_later():
    """The flusher takes iteration starts before records, so a flush can hold a record of
    an iteration whose start it does not have yet: the progress line then shows the newest
    iteration it can name, never a bare ``loss: ...`` with no loop."""
    from florgit.api.echo import Echo
    from florgit.codec import arrow, packed, unpacked
    from florgit.codec.schemas import Tables

    def flush(echo: Echo, loops: list, starts: list, records: list) -> list[str]:
        rows = Tables(loops, unpacked.Starts(*packed.pack_starts(starts)), [], unpacked.Records(*packed.pack_records(records)))
        batches = Tables(arrow.loop_batch(loops), rows.starts.batch(), arrow.end_batch([]), rows.records.batch())
        return echo.lines(rows, batches)

    echo = Echo()
    loops = [(1, 0, 1, "epoch"), (2, 1, 2, "step")]
    starts = [(1, 1, 0, None, 0.0), (2, 2, 0, None, 0.1)]  # epoch 0 (ctx 1), its step 0 (ctx 2)
    assert flush(echo, loops, starts, [(2, "loss", 0.5), (3, "loss", 0.25)]) == ["epoch: 0, step: 0, loss: 0.5"]
    assert flush(echo, [], [(3, 2, 1, None, 0.2)], [(3, "loss", 0.125)]) == ["epoch: 0, step: 1, loss: 0.125"]
    assert flush(Echo(), [], [], [(9, "loss", 1.0)]) == []  # nothing it can name: no progress line


def test_a_disabled_run_records_nothing_and_holds_no_more_than_the_bound(repo, monkeypatch):
    from florgit.api import functions
    from florgit.codec.packed import RECORD_SIZE

    monkeypatch.setenv("FLORGIT_MODE", "disabled")
    monkeypatch.setattr(functions, "BUFFER_LIMIT", 100 * RECORD_SIZE)
    for step in flor.loop("step", range(1000)):
        assert flor.log("loss", 0.5) == 0.5 and flor.log("note", "x") == "x"
        assert len(functions._rec.records) <= functions.BUFFER_LIMIT and len(functions._rec.others) <= 300
    with pytest.raises(InvalidNameError):
        flor.log("run_id", 1.0)  # misuse still raises
    flor.commit()
    assert flor.runs().height == 0
