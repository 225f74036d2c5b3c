"""Who converts and who writes (api.flusher): ``log`` converts once its bound is reached
and queues the batches; the flusher thread writes them, oldest first, and converts by
itself when nobody has for a while. Nothing is lost, doubled or reordered on any path."""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest

import florgit as flor
from florgit.api import flusher, functions
from florgit.codec import arrow
from florgit.codec.packed import RECORD_SIZE


def _values(name: str) -> list:
    frame = flor.scan().filter(pl.col("name") == name).collect()  # in stored order
    return [i if f is None else f for i, f in zip(frame["value_int"].to_list(), frame["value_float"].to_list())]


def test_a_slow_disk_holds_log_back_at_the_queue_bound_and_loses_nothing(repo, monkeypatch):
    """The writer is slow (a slow disk): the queue of converted batches stays within its
    bound (log() waits for room, so memory stays bounded) and the spool gets every batch,
    in order."""
    monkeypatch.setattr(functions, "BUFFER_LIMIT", 200 * RECORD_SIZE)
    slow = arrow.StreamAppender.append_all

    def slow_append_all(self, batches):
        time.sleep(0.01)
        slow(self, batches)

    monkeypatch.setattr(arrow.StreamAppender, "append_all", slow_append_all)
    flor.log("first", 0)
    rec = functions._rec
    deepest = 0
    for epoch in flor.loop("epoch", range(20)):
        for step in flor.loop("step", range(100)):
            flor.log("loss", float(epoch * 100 + step))
            deepest = max(deepest, rec.flusher._queue.qsize())
    assert deepest <= flusher._QUEUED
    flor.commit()
    assert _values("loss") == [float(k) for k in range(2000)]
    assert flor.dataframe("loss")["step"].to_list() == list(range(100)) * 20


def test_threads_logging_while_log_and_the_thread_both_convert_keep_every_record(repo, monkeypatch):
    """Two threads log while hand-offs (a small bound) and the thread's own conversions
    (a short interval) interleave: every record is stored once, each thread's in order."""
    monkeypatch.setattr(functions, "BUFFER_LIMIT", 300 * RECORD_SIZE)
    monkeypatch.setattr(flusher, "INTERVAL", 0.001)
    flor.log("first", 0)
    n = 20_000

    def worker(name: str, text: bool) -> None:
        for k in range(n):
            flor.log(name, f"{name}{k}" if text else k)

    threads = [threading.Thread(target=worker, args=(name, text)) for name, text in (("a", False), ("b", True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flor.commit()
    assert _values("a") == list(range(n))
    frame = flor.scan().filter(pl.col("name") == "b").collect()
    assert frame["value_str"].to_list() == [f"b{k}" for k in range(n)]
    assert flor.runs()["records"].to_list() == [2 * n + 1]


def test_a_writer_failure_that_is_not_an_os_error_keeps_the_records_in_memory(repo, monkeypatch):
    """Any failure while writing (not only a full disk) switches to keeping batches in
    memory, with a warning: the flusher thread stays alive and the run is stored whole."""
    for step in flor.loop("step", range(5)):
        flor.log("x", step)
    rec = functions._rec
    rec.flusher.flush()

    def broken(batches):
        raise RuntimeError("a bug in the writer")

    rec.flusher._streams[3].append_all = broken
    for step in flor.loop("more", range(3)):
        flor.log("y", step)
    with pytest.warns(UserWarning, match="cannot spool records"):
        rec.flusher.flush()
    assert rec.flusher._thread.is_alive()
    flor.commit()
    assert _values("x") == [0, 1, 2, 3, 4] and _values("y") == [0, 1, 2]


def test_a_stopped_thread_leaves_log_to_write_in_order(repo, monkeypatch):
    """With the thread gone (as at the run's end), a conversion writes what is queued
    first (older rows), then its own batches."""
    monkeypatch.setattr(functions, "BUFFER_LIMIT", 50 * RECORD_SIZE)
    flor.log("first", 0)
    rec = functions._rec
    rec.flusher._stop.set()
    rec.flusher._queue_or_write(None)
    rec.flusher._thread.join()
    for step in flor.loop("step", range(30)):
        flor.log("loss", float(step))
    with rec.flusher._lock:  # converted, queued, not written yet: as the thread stopped
        rec.flusher._queue.put(rec.flusher._convert())
    for step in flor.loop("step", range(30, 500)):
        flor.log("loss", float(step))
    assert rec.flusher._queue.qsize() == 0
    flor.commit()
    assert _values("loss") == [float(k) for k in range(500)]


def test_log_waiting_for_room_in_the_queue_never_deadlocks_with_the_thread(repo, monkeypatch):
    """A log() holding the conversion lock waits for room in the queue, which only the
    thread makes; the thread, due to convert by itself, must not wait for that lock."""
    monkeypatch.setattr(flusher, "INTERVAL", 0.0)  # the thread is always due
    flor.log("first", 0.5)
    f = functions._rec.flusher

    def hand_offs_holding_the_lock() -> None:
        with f._lock:
            for _ in range(6 * flusher._QUEUED):
                f._queue_or_write(None)  # a wake-up the thread takes off the queue

    holder = threading.Thread(target=hand_offs_holding_the_lock, daemon=True)
    holder.start()
    holder.join(timeout=30)
    assert not holder.is_alive(), "log() and the flusher thread wait for each other"
    flor.commit()
    assert _values("first") == [0.5]


def test_a_run_start_imports_what_converting_needs_in_the_background(repo):
    """`import florgit` loads neither numpy nor pyarrow; a run's start begins importing them
    in a thread of its own, so the training thread's first hand-off does not wait for them."""
    probe = """\
import sys, threading
import florgit as flor
print("light", not {"numpy", "pyarrow"} & set(sys.modules))
flor.arg("lr", 0.1)
warming = [t for t in threading.enumerate() if t.name == "florgit-warm-up"]
for t in warming:
    t.join(60)
print("warmed", {"numpy", "pyarrow", "florgit.codec.unpacked"} <= set(sys.modules), len(warming) <= 1)
"""
    repo.write("probe.py", probe)
    out = repo.run("probe.py").stdout.splitlines()
    assert "light True" in out and "warmed True True" in out
