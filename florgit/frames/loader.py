"""Loading every run's tables from the shadow branch into three polars frames.

Runs are numbered (``run`` column, UInt32) so joins never compare run-id strings;
the run id itself lives in the ``runs`` frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from florgit.codec import arrow
from florgit.git import open_repo
from florgit.store import layout
from florgit.store import runs as store_runs


@dataclass
class Loaded:
    runs: pl.DataFrame  # run, run_id, start_time, script, status, ... one row per run
    records: pl.DataFrame  # run, seq, ctx, name, kind, i, f, s
    contexts: pl.DataFrame  # run, ctx, parent, depth, loop, iteration, kind, i, f, s, t_start, t_end


def load(repo_path: str | None = None, names: list[str] | None = None) -> Loaded:
    repo = open_repo(repo_path, require_workdir=False)
    stored = store_runs.list_runs(repo)
    metas = []
    tables: dict[str, list[pa.Table]] = {name: [] for name in layout.TABLES}
    wanted = pa.array(names, pa.string()) if names is not None else None
    for idx, run in enumerate(stored):
        metas.append(store_runs.read_meta(repo, run))
        for name in layout.TABLES:
            table = store_runs.read_table(repo, run, name)
            if name == layout.RECORDS:
                table = table.append_column("seq", pa.array(range(table.num_rows), pa.int64()))
                if wanted is not None:
                    table = table.filter(pc.is_in(table["name"], value_set=wanted))
            tables[name].append(_with_run(table, idx))
    runs_frame = pl.DataFrame(
        {
            "run": pl.Series(range(len(metas)), dtype=pl.UInt32),
            "run_id": [m.run_id for m in metas],
            "start_time": pl.Series([m.start for m in metas], dtype=pl.String).str.to_datetime(time_zone="UTC"),
            "end_time": pl.Series([m.end for m in metas], dtype=pl.String).str.to_datetime(time_zone="UTC", strict=False),
            "script": pl.Series([m.script for m in metas], dtype=pl.String),
            "status": pl.Series([m.status for m in metas], dtype=pl.String),
            "user_commit": pl.Series([m.user_commit for m in metas], dtype=pl.String),
            "branch": pl.Series([m.branch for m in metas], dtype=pl.String),
            "dirty": pl.Series([m.dirty for m in metas], dtype=pl.Boolean),
            "records": pl.Series([m.records for m in metas], dtype=pl.Int64),
        }
    )
    rec_schema = arrow.RECORD_SCHEMA.append(pa.field("seq", pa.int64()))
    loops = _frame(tables[layout.LOOPS], arrow.LOOP_SCHEMA)
    starts = _frame(tables[layout.STARTS], arrow.START_SCHEMA).rename({"t": "t_start"})
    ends = _frame(tables[layout.ENDS], arrow.END_SCHEMA).rename({"t": "t_end"})
    contexts = starts.join(loops, on=["run", "loop_id"], how="left").join(ends, on=["run", "ctx"], how="left")
    return Loaded(
        runs=runs_frame,
        records=_frame(tables[layout.RECORDS], rec_schema),
        contexts=contexts.select(
            "run", "ctx", "parent", "depth", "loop", "iteration", "kind", "i", "f", "s", "t_start", "t_end"
        ),
    )


def _with_run(table: pa.Table, idx: int) -> pa.Table:
    return table.add_column(0, "run", pa.array([idx] * table.num_rows, pa.uint32()))


def _frame(tables: list[pa.Table], schema: pa.Schema) -> pl.DataFrame:
    full = pa.schema([pa.field("run", pa.uint32()), *schema])
    table = pa.concat_tables(tables) if tables else full.empty_table()
    return pl.from_arrow(table)  # type: ignore[return-value]

