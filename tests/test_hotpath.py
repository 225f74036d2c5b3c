"""The compiled hot path (florgit/api/_hotpath.c) stores exactly what the Python one does:
``flor.log`` (florgit.api.functions._python_log) and the steps of ``flor.loop`` over a
range (Recorder._loop). Both run the same generated programs, on recorders of their own,
and every packed row, side entry, loop, end, name and the recorder's ctx and depth are
compared; iteration times only as times (they are clock readings)."""

from __future__ import annotations

import itertools
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import florgit as flor
from florgit.api import functions, recorder
from florgit.api.flusher import Buffers
from florgit.codec import packed
from tests.conftest import bare_recorder

_hotpath = pytest.importorskip("florgit.api._hotpath", reason="built by `pip install -e .` with a C compiler")


@pytest.fixture
def bare(monkeypatch):
    """A bare recorder as the run in progress, gone again before the API state is reset."""
    rec = bare_recorder()
    monkeypatch.setattr(functions, "_rec", rec)
    yield rec
    functions._rec = None


class _Stop(Exception):
    pass


NAMES = st.sampled_from(["loss", "acc", "é∂", "lr"])
VALUES = st.one_of(st.floats(allow_nan=True), st.integers(-(2**70), 2**70), st.booleans(), st.none(), st.text(max_size=4))
LOGS = st.tuples(st.just("log"), NAMES, VALUES)


def _loops(body):
    # ("loop", n, leave_at, how, body): leave at that step by break or by an exception
    return st.tuples(st.just("loop"), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 5)), st.sampled_from(["break", "raise"]), st.lists(body, max_size=4))


PROGRAMS = st.lists(st.recursive(LOGS, _loops, max_leaves=12), max_size=6)


def _run(program, log, loop) -> None:
    for op in program:
        if op[0] == "log":
            assert log(op[1], op[2]) is op[2]
            continue
        _kind, n, leave_at, how, body = op
        try:
            for i in loop(op[0], range(n)):
                _run(body, log, loop)
                if i == leave_at:
                    if how == "break":
                        break
                    raise _Stop
        except _Stop:
            pass


def _stored(rec) -> dict:
    b = rec.buffers
    starts = [row[:3] for row in packed.START.iter_unpack(bytes(b.starts))]  # times apart
    times = [row[3] for row in packed.START.iter_unpack(bytes(b.starts))] + [t for _c, t in b.ends]
    assert all(isinstance(t, float) and t > 0 for t in times)
    return {
        "starts": starts, "items": list(b.items), "ends": [c for c, _t in b.ends], "loops": list(b.loops),
        "records": bytes(b.records), "others": [repr(x) for x in b.others], "names": list(b.table.names),
        "ctx": rec.ctx, "depth": rec.depth, "drained": rec.drained,
    }  # fmt: skip


def _both(monkeypatch, program, limit: int = 1 << 40, checkpointer=None) -> tuple[dict, dict]:
    monkeypatch.setattr(functions, "BUFFER_LIMIT", limit)
    out = []
    for compiled in (True, False):
        rec = bare_recorder(checkpointer)
        monkeypatch.setattr(functions, "_rec", rec)
        log = functions.log if compiled else functions._python_log
        loop = rec.loop if compiled else rec._loop
        _run(program, log, loop)
        out.append(_stored(rec))
    monkeypatch.setattr(functions, "_rec", None)
    return out[0], out[1]


def test_the_compiled_hot_path_is_the_one_in_use():
    assert isinstance(flor.log, _hotpath.Logger) and recorder._RangeSteps is _hotpath.RangeSteps
    assert flor.log.__doc__ == functions._python_log.__doc__ and flor.log.__wrapped__ is functions._python_log


@settings(max_examples=150, deadline=None)
@given(PROGRAMS)
def test_programs_store_the_same_rows_either_way(program):
    with pytest.MonkeyPatch.context() as m:
        compiled, python = _both(m, program)
    assert compiled == python


@settings(max_examples=40, deadline=None)
@given(PROGRAMS)
def test_a_small_buffer_bound_drains_as_often_either_way(program):
    with pytest.MonkeyPatch.context() as m:
        compiled, python = _both(m, program, limit=3 * packed.RECORD_SIZE)
    assert compiled == python


class _IdleCheckpointer:
    """A checkpointer whose loops are not checkpointed: the loop is still _loop's."""

    def bind(self, *args):
        return False

    def is_inner(self, depth):
        return False


def test_a_loop_with_a_checkpointer_is_left_to_the_generator(monkeypatch):
    program = [("loop", 3, 1, "break", [("log", "loss", 0.5)]), ("log", "acc", 1.0)]
    compiled, python = _both(monkeypatch, program, checkpointer=_IdleCheckpointer())
    assert compiled == python and len(compiled["starts"]) == 2


def test_a_loop_opens_at_its_first_step_as_a_generator_does(bare):
    rec = bare
    steps = rec.loop("epoch", range(3))
    assert rec.buffers.loops == [] and rec.depth == 0  # made, not yet iterated: nothing recorded
    assert next(steps) == 0 and rec.depth == 1 and rec.ctx == 1 and len(rec.buffers.loops) == 1
    assert list(steps) == [1, 2] and rec.depth == 0 and rec.ctx == 0
    assert next(steps, "done") == "done"  # exhausted stays exhausted
    never = rec.loop("unused", range(5))
    del never
    assert len(rec.buffers.loops) == 1 and [c for c, _t in rec.buffers.ends] == [3]


def test_an_abandoned_loop_ends_when_its_steps_go(bare):
    rec = bare
    steps = rec.loop("epoch", range(10))
    next(steps)
    next(steps)
    assert rec.ctx == 2 and rec.depth == 1
    del steps  # as a generator's `finally` runs when it goes
    assert rec.ctx == 0 and rec.depth == 0 and [c for c, _t in rec.buffers.ends] == [2]


def test_a_failing_first_step_ends_the_loop(bare):
    rec = bare

    def bad_kwargs():
        raise RuntimeError("bad --kwargs")

    rec._kwargs_checked, rec._check_kwargs = False, bad_kwargs
    steps = rec.loop("epoch", range(3))
    with pytest.raises(RuntimeError, match="bad --kwargs"):
        next(steps)
    assert next(steps, "done") == "done" and rec.buffers.loops == [] and rec.depth == 0


def test_unusual_calls_behave_as_the_python_log(bare):
    rec = bare
    assert flor.log(name="loss", value=0.5) == 0.5  # keywords: the Python log
    assert flor.log("loss", 0.25) == 0.25  # a known name: the compiled one
    with pytest.raises(TypeError):
        flor.log(["unhashable"], 1.0)
    with pytest.raises(TypeError):
        functions._python_log(["unhashable"], 1.0)
    with pytest.raises(TypeError):
        flor.log("loss")
    with pytest.raises(Exception) as compiled:
        flor.log("bad name\n", 1.0)
    with pytest.raises(Exception) as python:
        functions._python_log("bad name\n", 1.0)
    assert type(compiled.value) is type(python.value) and str(compiled.value) == str(python.value)
    assert [v for _c, _n, v in packed.record_rows(rec.buffers.records, rec.buffers.others, rec.buffers.table.names)] == [0.5, 0.25]
    assert struct.unpack("<qqd", bytes(rec.buffers.records[-24:]))[2] == 0.25


SCRIPT = """\
import florgit as flor
flor.arg("lr", 0.1)
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(4)):
        flor.log("loss", 1.0 / (1 + epoch + step))
        if step == 2 and epoch == 1:
            break
    flor.log("acc", epoch * 0.5)
    flor.log("note", f"epoch {epoch}")
for i in flor.loop("empty", range(0)):
    flor.log("never", 1.0)
"""


def test_a_script_records_the_same_run_either_way(repo):
    repo.write("train.py", SCRIPT)
    repo.run("train.py", env={"FLORGIT_C_HOT_PATH": "0"})
    repo.run("train.py")
    frame = flor.dataframe("lr", "loss", "acc", "note")
    runs = frame.get_column("run_id").unique(maintain_order=True).to_list()
    assert len(runs) == 2
    python, compiled = (frame.filter(frame["run_id"] == r).drop("run_id", "start_time") for r in runs)
    assert compiled.equals(python, null_equal=True) and compiled.height > 10
    probe = "import florgit, florgit.api.recorder as r; print(type(florgit.log).__name__, r._RangeSteps)"
    out = repo.run("-c", probe, env={"FLORGIT_C_HOT_PATH": "0"})  # the setting the first run had
    assert out.stdout.split() == ["function", "None"]


def test_no_reference_is_leaked_or_lost():
    """Every object the compiled path touches has the references it had before."""
    import time

    class Rec:
        pass

    rec = Rec()
    rec.codes, rec.records, rec.ctx, rec.depth = {"loss": 7 << 2}, bytearray(), 10**12, 0
    rec.drain = rec.records.clear
    slow = functions._python_log
    log = _hotpath.Logger({"_rec": rec, "BUFFER_LIMIT": 24 * 100}, lambda name, value: value)
    value, big = 1.5, 10**15
    watched = [rec, rec.codes, rec.records, rec.ctx, value, big, "loss", slow]
    log("loss", value)  # the first call keeps the recorder's codes and records (one reference each)
    before = [sys.getrefcount(o) for o in watched]
    for _ in range(5_000):
        log("loss", value), log("loss", big), log("loss", True), log("new", value), log(name="loss", value=value)
    assert [sys.getrefcount(o) for o in watched] == before
    counter, starts, ends = itertools.count(1), bytearray(), []
    steps_watched = [counter, starts, ends, time.perf_counter]
    steps_before = [sys.getrefcount(o) for o in steps_watched]
    for k in range(500):
        steps = _hotpath.RangeSteps(rec, lambda: (starts, ends, counter, time.perf_counter, 1, 0, 1), 20)
        for i in steps:
            if i == 10 and k % 2:
                break
        del steps
    assert [sys.getrefcount(o) for o in steps_watched] == steps_before and len(ends) == 500
    assert rec.ctx == 0 and rec.depth == 0


def test_the_kept_buffers_follow_the_run_in_progress(monkeypatch):
    """The compiled log reads a recorder's codes and records once and keeps them: a new
    recorder (even one at a dead one's address) gets its own, and a recorder it cannot
    refer to weakly, or one without such buffers, is still served right."""
    import gc

    monkeypatch.setattr(functions, "BUFFER_LIMIT", 1 << 40)
    rows = []
    for _ in range(50):  # new recorders, each freed before the next: addresses get reused
        rec = bare_recorder()
        monkeypatch.setattr(functions, "_rec", rec)
        functions.log("loss", 1.0)  # the first log of a name goes through Python
        functions.log("loss", 2.5)
        rows.append(bytes(rec.buffers.records))
        monkeypatch.setattr(functions, "_rec", None)
        del rec
        gc.collect()
    assert len(set(rows)) == 1 and len(rows[0]) == 2 * packed.RECORD_SIZE

    class Slotted:  # no __weakref__: used on every call, never kept
        __slots__ = ("codes", "records", "ctx", "drain")

    plain = Slotted()
    plain.codes, plain.records, plain.ctx, plain.drain = {"loss": 3 << 2}, bytearray(), 7, None
    log = _hotpath.Logger({"_rec": plain, "BUFFER_LIMIT": 1 << 40}, functions._python_log)
    assert log("loss", 0.5) == 0.5 and log("loss", 1) == 1
    assert [r[:2] for r in struct.iter_unpack("<qq8x", plain.records)] == [(7, 3 << 2), (7, (3 << 2) | 1)]
    plain.records = bytearray()  # not kept: the next call sees the new one
    log("loss", 0.5)
    assert len(plain.records) == packed.RECORD_SIZE

    calls = []
    log = _hotpath.Logger({"_rec": object(), "BUFFER_LIMIT": 1 << 40}, lambda n, v: calls.append((n, v)) or v)
    assert log("loss", 0.5) == 0.5 and calls == [("loss", 0.5)]  # no buffers: the Python log's case


def test_a_recorders_buffers_are_set_once():
    rec = bare_recorder()
    with pytest.raises(RuntimeError, match="set once"):
        rec._use_buffers(Buffers())


def test_the_steps_read_perf_counters_clock(bare):
    """Where perf_counter is CLOCK_MONOTONIC the C steps read that clock themselves: every
    start and end lies between perf_counter readings taken around the loop, in order."""
    import time

    before = time.perf_counter()
    for _ in bare.loop("step", range(200)):
        pass
    after = time.perf_counter()
    starts = [row[3] for row in packed.START.iter_unpack(bytes(bare.buffers.starts))]
    ends = [t for _c, t in bare.buffers.ends]
    assert len(starts) == 200 and len(ends) == 1
    assert before <= starts[0] and starts == sorted(starts) and starts[-1] <= ends[0] <= after
    if time.get_clock_info("perf_counter").implementation == "clock_gettime(CLOCK_MONOTONIC)":
        assert recorder._STEP_CLOCK is None  # the C clock was the one read


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(0, 300), size=st.sampled_from([1, 24, 32]), more=st.binary(max_size=50))
def test_take_rows_is_take_bytes_without_the_copy(data, cut, size, more):
    """The same rows and the same buffer left behind, also for a buffer whose front was
    taken before (its memory starts inside its allocation) or that holds a partial row;
    the buffer stays the object the hot path appends to, and the rows are its own memory."""
    from florgit.codec.unpacked import take_bytes

    bufs = []
    for _ in range(2):
        buf = bytearray(data)
        del buf[: min(cut, len(buf))]  # a logical start inside the allocation
        bufs.append(buf)
    ours, theirs = bufs
    same = ours
    rows = _hotpath.take_rows(ours, size)
    assert type(rows) is bytearray and rows == take_bytes(theirs, size) and ours == theirs and ours is same
    ours += more
    theirs += more
    assert ours == theirs
    rows[:] = b"\xff" * len(rows)  # the taken rows share nothing with the buffer
    assert ours == theirs


def test_take_rows_refuses_a_viewed_buffer_as_take_bytes_does():
    buf = bytearray(b"r" * 48)
    view = memoryview(buf)
    with pytest.raises(BufferError):
        _hotpath.take_rows(buf, 24)
    view.release()
    assert len(_hotpath.take_rows(buf, 24)) == 48 and len(buf) == 0
    with pytest.raises(ValueError):
        _hotpath.take_rows(buf, 0)
    with pytest.raises(TypeError):
        _hotpath.take_rows(b"bytes", 24)
