"""The background thread that moves buffered records out of the training thread.

Every ``INTERVAL`` seconds it pops what the hot path appended to the deques (loop
instances, iteration starts and ends, then records, so nothing is spooled before what it
refers to), turns them into Arrow batches, appends those to the run's spool streams,
keeps them for the final files, and echoes a summary. ``deque.append``/``popleft`` are
thread-safe, so the hot path takes no lock at all.
"""

from __future__ import annotations

import threading
import warnings
from collections import deque
from dataclasses import dataclass, field
from operator import itemgetter

from florgit.api import echo
from florgit.codec.schemas import EndRow, LoopRow, RecordRow, StartRow, Tables

INTERVAL = 0.5


@dataclass
class Buffers:
    """What the training thread appends to; the flusher drains it."""

    loops: deque[LoopRow] = field(default_factory=deque)
    starts: deque[StartRow] = field(default_factory=deque)
    ends: deque[EndRow] = field(default_factory=deque)
    records: deque[RecordRow] = field(default_factory=deque)


class Flusher:
    def __init__(self, buffers: Buffers, spool, echo_on: bool, quiet_names=()) -> None:
        self._arrow = None  # pyarrow is imported by the thread, so the run starts at once
        self._buffers = buffers
        self._spool = spool
        self._kinds: list = []
        self.batches: Tables[list] = Tables([], [], [], [])
        self.echo_on = echo_on
        self._echo = echo.Echo(quiet_names)
        self.count = 0
        self.last: dict[str, object] = {}  # each name's newest value, for the run's meta.json
        self._lock = threading.Lock()  # one flush at a time (thread, overflow, finish)
        self._stop = threading.Event()
        self._streams: list | None = None
        self._spool_failed = False
        self._thread = threading.Thread(target=self._run, name="florgit-flusher", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        if self._arrow is not None:
            return
        from florgit.codec import arrow
        from florgit.store import layout

        b = self._buffers
        self._kinds = [
            (b.loops, arrow.loop_batch, arrow.LOOP_SCHEMA, layout.LOOPS),
            (b.starts, arrow.start_batch, arrow.START_SCHEMA, layout.STARTS),
            (b.ends, arrow.end_batch, arrow.END_SCHEMA, layout.ENDS),
            (b.records, arrow.record_batch, arrow.RECORD_SCHEMA, layout.RECORDS),
        ]
        self._arrow = arrow

    def _run(self) -> None:
        with self._lock:
            self._load()
        while not self._stop.wait(INTERVAL):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            self._load()
            rows = Tables(*(_pop_all(queue) for queue, *_ in self._kinds))
            if not any(rows):
                return
            batches = Tables(*(make(r) for r, (_q, make, _s, _f) in zip(rows, self._kinds)))
            for kept, batch in zip(self.batches, batches):
                kept.append(batch)
            self.count += len(rows.records)
            self.last.update(zip(map(_NAME, rows.records), map(_VALUE, rows.records)))  # in C: ~30 ns a record
            self._spool_batches(batches)
            if self.echo_on:
                echo.write(self._echo.lines(rows, batches))

    def _spool_batches(self, batches: list) -> None:
        if self._spool_failed:
            return
        try:
            if self._streams is None:
                self._streams = [
                    self._arrow.StreamAppender(self._spool.path(fname), schema) for _q, _m, schema, fname in self._kinds
                ]
            for stream, batch in zip(self._streams, batches):
                stream.append(batch)
        except OSError as exc:  # disk full, spool deleted: keep training, keep records in memory
            self._spool_failed = True
            warnings.warn(f"florgit: cannot spool records ({exc}); they are kept in memory until the run ends", stacklevel=1)

    def stop(self) -> None:
        """Stop the thread and flush what is left; the streams are closed."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        for stream in self._streams or []:
            try:
                stream.close()
            except OSError:
                pass
        self._streams = None

    def streams(self) -> dict[str, bytes]:
        """Each table as stored: the spooled stream file itself, or (if spooling failed)
        the batches kept in memory, serialised."""
        import pyarrow as pa

        self._load()
        out = {}
        for kept, (_q, _m, schema, fname) in zip(self.batches, self._kinds):
            if self._spool_failed:
                out[fname] = self._arrow.to_stream_bytes(pa.Table.from_batches(kept, schema=schema))
            else:
                try:
                    with open(self._spool.path(fname), "rb") as f:
                        out[fname] = f.read()
                except FileNotFoundError:  # nothing was ever spooled to it
                    out[fname] = self._arrow.to_stream_bytes(schema.empty_table())
        return out


_NAME, _VALUE = itemgetter(1), itemgetter(2)  # of a RecordRow (ctx, name, value)


def _pop_all(queue: deque) -> list:
    pop = queue.popleft
    return [pop() for _ in range(len(queue))]
