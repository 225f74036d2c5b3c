"""The background thread that moves buffered records out of the training thread.

Every ``INTERVAL`` seconds, or sooner once ``EAGER_ROWS`` are waiting (so the end of a run
never has more than that left to convert), it takes what the hot path appended to the lists (loop
instances, iteration starts and ends, then records, so nothing is spooled before what it
refers to), turns them into Arrow batches (with the iteration ends the starts imply: see
iteration_ends), appends those to the run's spool streams and echoes a summary. Taking is
``rows = buf[:n]; del buf[:n]``: each one step under the GIL, and appends land after
``n``, so the hot path takes no lock at all. Batches are not kept: the spool holds them
(only if spooling fails are they kept in memory, from then on).
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field

from florgit.api import echo
from florgit.codec.schemas import RECORD_WIDTH, START_WIDTH, EndRow, LoopRow, Tables

INTERVAL = 0.5
EAGER_ROWS = 25_000  # records + iteration starts waiting that make the thread flush early
_POLL = 0.05


@dataclass
class Buffers:
    """What the training thread appends to; the flusher drains it."""

    loops: list[LoopRow] = field(default_factory=list)
    starts: list = field(default_factory=list)  # flat StartRows; t: raw time.perf_counter()
    ends: list[EndRow] = field(default_factory=list)  # only the ends iteration_ends cannot infer
    records: list = field(default_factory=list)  # flat RecordRows
    t0: float = 0.0  # the clock at the run's start: stored times are seconds since then
    explicit_loops: set[int] = field(default_factory=set)  # flor.iteration loops: each end recorded


class Flusher:
    def __init__(self, buffers: Buffers, spool, echo_on: bool, quiet_names=()) -> None:
        self._arrow = None  # pyarrow is imported by the thread, so the run starts at once
        self._buffers = buffers
        self._spool = spool
        self._kinds: list = []
        self.batches: Tables[list] = Tables([], [], [], [])  # kept only once spooling failed
        self._ends = None  # IterationEnds, made by the thread with the rest (numpy)
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
        from florgit.api.iteration_ends import IterationEnds
        from florgit.codec import arrow
        from florgit.store import layout

        b = self._buffers
        self._kinds = [  # in Tables order: each buffer, its schema and its spooled file
            (b.loops, arrow.LOOP_SCHEMA, layout.LOOPS),
            (b.starts, arrow.START_SCHEMA, layout.STARTS),
            (b.ends, arrow.END_SCHEMA, layout.ENDS),
            (b.records, arrow.RECORD_SCHEMA, layout.RECORDS),
        ]
        self._ends = IterationEnds(b.explicit_loops)
        self._arrow = arrow

    def _run(self) -> None:
        with self._lock:
            self._load()
        b, clock = self._buffers, time.monotonic
        last = clock()
        while not self._stop.wait(_POLL):
            if clock() - last >= INTERVAL or len(b.records) // RECORD_WIDTH + len(b.starts) // START_WIDTH >= EAGER_ROWS:
                self.flush()
                last = clock()

    def flush(self) -> None:
        with self._lock:
            self._load()
            rows = Tables(*(_take(queue) for queue, _s, _f in self._kinds))
            if not any(rows):
                return
            from florgit.codec.pyarrays import view

            arrow, t0 = self._arrow, self._buffers.t0
            starts = arrow.start_batch_flat(rows.starts, t0)
            ctx, loop_id = view(starts.column("ctx")), view(starts.column("loop_id"))
            t = view(starts.column("t"))
            ended = self._ends.ends(ctx, loop_id, t, [(c, e - t0) for c, e in rows.ends])
            batches = Tables(arrow.loop_batch(rows.loops), starts, arrow.end_batch_of(*ended), arrow.record_batch_flat(rows.records))
            if self._spool_failed:
                for kept, batch in zip(self.batches, batches):
                    kept.append(batch)
            self.count += len(rows.records) // RECORD_WIDTH
            self.last.update(zip(rows.records[1::RECORD_WIDTH], rows.records[2::RECORD_WIDTH]))  # in C: ~30 ns a record
            self._spool_batches(batches)
            if self.echo_on:
                echo.write(self._echo.lines(rows, batches))

    def _spool_batches(self, batches: list) -> None:
        if self._spool_failed:
            return
        done = 0  # tables whose batch of this flush is spooled
        try:
            if self._streams is None:
                self._streams = [
                    self._arrow.StreamAppender(self._spool.path(fname), schema) for _q, schema, fname in self._kinds
                ]
            for stream, batch in zip(self._streams, batches):
                stream.append(batch)
                done += 1
        except OSError as exc:  # disk full, spool deleted: keep training, keep records in memory
            self._spool_failed = True
            for kept, batch in list(zip(self.batches, batches))[done:]:  # the spool has the others
                kept.append(batch)
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
        the complete batches the spool holds and those kept in memory since, serialised."""
        import pyarrow as pa

        self._load()
        out = {}
        for kept, (_q, schema, fname) in zip(self.batches, self._kinds):
            if self._spool_failed:
                spooled = self._arrow.read_stream(self._spool.path(fname), schema).to_batches()
                out[fname] = self._arrow.to_stream_bytes(pa.Table.from_batches([*spooled, *kept], schema=schema))
            else:
                try:
                    with open(self._spool.path(fname), "rb") as f:
                        out[fname] = f.read()
                except FileNotFoundError:  # nothing was ever spooled to it
                    out[fname] = self._arrow.to_stream_bytes(schema.empty_table())
        return out


def _take(buf: list) -> list:
    n = len(buf)  # whole rows: a flat row is appended by one `+=`, one step under the GIL
    rows = buf[:n]
    del buf[:n]  # appends made since the copy stay
    return rows
