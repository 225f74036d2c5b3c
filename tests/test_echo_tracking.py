"""The echo tracks only the outermost iterations a line may still name (api/echo.py,
``Echo._printable``): what it prints must be what tracking every one of them prints."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from florgit.api import echo, functions
from florgit.api.flusher import Flusher
from tests.conftest import bare_recorder


def _converter(rec) -> Flusher:
    """A flusher's conversion (and echo) without its thread or spool."""
    conv = object.__new__(Flusher)
    conv._arrow, conv._buffers, conv._kinds, conv._ends = None, rec.buffers, [], None
    conv.echo_on, conv._echo, conv.count, conv.last = True, echo.Echo(), 0, {}
    return conv


# A program: outermost loops, one after another, each (iterations, inner steps, flush points)
PROGRAMS = st.lists(
    st.tuples(st.integers(0, 70), st.integers(0, 2), st.sets(st.integers(0, 70), max_size=4)), min_size=1, max_size=4
)


def _printed(program, monkeypatch) -> list[str]:
    rec = bare_recorder()
    monkeypatch.setattr(functions, "_rec", rec)
    conv, lines = _converter(rec), []

    def flush():
        item = conv._convert()
        if item is not None:
            lines.extend(item[1])

    functions._python_log("seed", 7)
    for k, (n, inner, flushes) in enumerate(program):
        for i in rec._loop(f"outer{k}", range(n)):
            functions._python_log("loss", i * 0.5)
            for j in rec._loop("inner", range(inner)):
                functions._python_log("acc", j)
            if i in flushes:
                flush()
    flush()
    monkeypatch.setattr(functions, "_rec", None)
    return lines


@settings(max_examples=60, deadline=None)
@given(program=PROGRAMS)
def test_the_echo_prints_what_tracking_every_iteration_prints(program):
    with pytest.MonkeyPatch.context() as mp:
        tracked = _printed(program, mp)
        mp.setattr(echo.Echo, "TRACKED", 10**9)
        everything = _printed(program, mp)
    assert tracked == everything
    assert len(tracked) <= 2 + (echo.MAX_OUTER_LINES + 1) * (len(program) + sum(len(f) for _n, _i, f in program))


def test_a_flat_loop_of_many_steps_tracks_a_few(monkeypatch):
    rec = bare_recorder()
    monkeypatch.setattr(functions, "_rec", rec)
    conv = _converter(rec)
    for i in rec._loop("step", range(5000)):
        functions._python_log("loss", float(i))
    _batches, lines = conv._convert()
    monkeypatch.setattr(functions, "_rec", None)
    assert len(conv._echo._outer) <= echo.Echo.TRACKED
    assert lines[-1] == "step: 4999, loss: 4999" and len(lines) == echo.MAX_OUTER_LINES


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(-(2**40), 2**40), max_size=60),
    ids=st.lists(st.integers(-(2**40), 2**40), max_size=8),
    near=st.lists(st.integers(-50, 50), max_size=60),
    base=st.integers(0, 10**6),
)
def test_member_is_isin(values, ids, near, base):
    """echo.member answers np.isin, by its table (ids close together) or by np.isin (far apart)."""
    import numpy as np

    for vals, wanted in ((values, ids), ([base + v for v in near], [base + v for v in near[:5]] + ids[:1])):
        v, i = np.array(vals, dtype=np.int64), np.array(wanted, dtype=np.int64)
        assert echo.member(v, i).tolist() == np.isin(v, i).tolist()
