"""Any nesting of loops, item values, early breaks and run-level values: every record
comes back from ``flor.scan()`` in its own loop context, exactly as it was logged, read
fresh from git, from the query cache, and with the cache off (frames.placing works out
each record's place once, when its run is read from git)."""

from __future__ import annotations

import math
import secrets

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import florgit as flor
from tests.conftest import make_repo

LOOPS = ["epoch", "step", "micro"]
NAMES = ["loss", "acc", "note"]

items = st.one_of(
    st.integers(0, 3).map(lambda n: list(range(n))),  # plain indexes: no item values
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    st.lists(st.integers(-16, 16).map(lambda k: k / 4), max_size=3),
)


@st.composite
def loop_tree(draw, depth=0):
    """``(items, logs, inner, break_at)``: a loop over ``items`` that logs ``logs`` (names)
    in each iteration, then runs the ``inner`` loops, and breaks after ``break_at`` items."""
    inner = draw(st.lists(loop_tree(depth + 1), max_size=2)) if depth < len(LOOPS) - 1 else []
    logs = draw(st.lists(st.sampled_from(NAMES), max_size=2, unique=True))
    return draw(items), logs, inner, draw(st.none() | st.integers(0, 2))


runs_st = st.lists(
    st.tuples(st.lists(st.sampled_from(NAMES), max_size=2, unique=True), st.lists(loop_tree(), min_size=0, max_size=2)),
    min_size=1,
    max_size=3,
)


def _value(name: str, k: int):
    return f"v{k}" if name == "note" else float(k) * 1.25


def _record(run, expected: list) -> None:
    """Run ``run`` through florgit, listing what each log call should come back as."""
    top_logs, loops = run
    counter = [0]

    def log(name, context):
        counter[0] += 1
        value = _value(name, counter[0])
        flor.log(name, value)
        expected.append((name, value, dict(context)))

    for name in top_logs:
        log(name, {})

    def walk(tree, depth, context):
        its, logs, inner, break_at = tree
        loop = LOOPS[depth]
        for idx, item in enumerate(flor.loop(loop, its)):
            here = {**context, loop: (idx, None if isinstance(item, int) else item)}
            for name in logs:
                log(name, here)
            for sub in inner:
                walk(sub, depth + 1, here)
            if break_at is not None and idx >= break_at:
                break

    for tree in loops:
        walk(tree, 0, {})
    flor.commit()


def _scanned() -> list[list[tuple]]:
    """Per run (oldest first), ``(name, value, {loop: (iteration, item value)})`` by seq."""
    frame = flor.scan().collect().sort("start_time", "run_id", "seq")
    out: dict[str, list] = {}
    loops = [c for c in LOOPS if c in frame.columns]
    for row in frame.iter_rows(named=True):
        value = row["value_str"] if row["kind"] == "str" else row["value_float"]
        context = {
            loop: (row[loop], row.get(f"{loop}_value")) for loop in loops if row[loop] is not None
        }  # fmt: skip
        out.setdefault(row["run_id"], []).append((row["name"], value, context))
    return list(out.values())


def _same(got, want) -> bool:
    if isinstance(got, str) and not isinstance(want, str):  # a loop whose items mix kinds shows them as text
        return got == str(want)
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want)
    return got == want


def _equal(got: list[tuple], want: list[tuple]) -> bool:
    if len(got) != len(want):
        return False
    for (g_name, g_value, g_ctx), (w_name, w_value, w_ctx) in zip(got, want):
        if g_name != w_name or not _same(g_value, w_value) or g_ctx.keys() != w_ctx.keys():
            return False
        for loop, (it, item) in w_ctx.items():
            g_it, g_item = g_ctx[loop]
            if g_it != it or not (item is None and g_item is None or _same(g_item, item)):
                return False
    return True


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=runs_st)
def test_every_record_comes_back_in_its_own_context(tmp_path, monkeypatch, runs):
    monkeypatch.chdir(make_repo(tmp_path / secrets.token_hex(4)).path)
    flor.set_echo(False)
    expected: list[list[tuple]] = []
    for run in runs:
        logged: list[tuple] = []
        _record(run, logged)
        expected.append(logged)
    wanted = [e for e in expected if e]  # a run that logged nothing has no records
    for cache in ("1", "1", "0"):  # fresh from git (fills the cache), from the cache, cache off
        monkeypatch.setenv("FLORGIT_QUERY_CACHE", cache)
        got = _scanned()
        assert len(got) == len(wanted) and all(_equal(g, w) for g, w in zip(got, wanted)), (got, wanted)
    # The pivot drops no value: each one is on its own row or spread onto finer rows.
    frame = flor.dataframe(*NAMES)
    for name in NAMES:
        logged = {v for run in expected for n, v, _ctx in run if n == name}
        shown = set(frame.get_column(name).drop_nulls().to_list()) if name in frame.columns else set()
        assert shown == logged, (name, shown, logged)


@st.composite
def flat_loops(draw):
    """A loops frame (as frames.contexts reads it) in which no instance is inside another."""
    n = draw(st.integers(1, 12))
    names = draw(st.lists(st.sampled_from(LOOPS), min_size=n, max_size=n))
    kind = draw(st.lists(st.sampled_from([None, 0, 2]), min_size=n, max_size=n))
    return pl.DataFrame(
        {
            "parent": draw(st.lists(st.sampled_from([None, 0]), min_size=n, max_size=n)),
            "depth": draw(st.lists(st.sampled_from([None, 0]), min_size=n, max_size=n)),
            "loop": names,
            "parent_loop_row": [None] * n,
            "parent_iteration": [None] * n,
            "p_kind": kind, "p_i": [None] * n, "p_f": [None] * n, "p_s": [None] * n,
        },
        schema_overrides={"parent": pl.Int64, "depth": pl.Int64, "parent_loop_row": pl.Int64, "parent_iteration": pl.Int64,
                          "p_kind": pl.Int8, "p_i": pl.Int64, "p_f": pl.Float64, "p_s": pl.String},
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(flat_loops(), st.booleans())
def test_loops_with_no_nesting_take_the_vectorized_path_to_the_same_chains(loops, with_values):
    from florgit.frames import contexts

    fast, walked = contexts._chains(loops, with_values), contexts._walked_chains(loops, with_values)
    assert fast[0].equals(walked[0]) and fast[1:] == walked[1:]
