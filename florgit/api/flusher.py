"""The background thread that moves buffered records out of the training thread.

Every ``INTERVAL`` seconds, or sooner once ``EAGER_ROWS`` are waiting (so the end of a run
never has more than that left to convert), it takes what the hot path appended (loop
instances, iteration starts and ends, then records, so nothing is spooled before what it
refers to), turns them into Arrow batches (with the iteration ends the starts imply: see
iteration_ends), appends those to the run's spool streams and echoes a summary. Taking is
``rows = buf[:n]; del buf[:n]``: each one step under the GIL, and appends land after
``n``, so the hot path takes no lock at all. Starts and records are packed rows
(codec.packed): taking them is a copy of bytes, and reading them numpy's work
(codec.unpacked), so the thread holds the GIL briefly. Batches are not kept: the spool
holds them (only if spooling fails are they kept in memory, from then on).
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field

from florgit.api import echo
from florgit.codec.packed import RECORD_SIZE, START_SIZE, NameTable, append_record, record_rows, start_rows
from florgit.codec.schemas import EndRow, LoopRow, Tables

INTERVAL = 0.5
EAGER_ROWS = 25_000  # records + iteration starts waiting that make the thread flush early
_POLL = 0.05


@dataclass
class Buffers:
    """What the training thread appends to; the flusher drains it. Starts and records are
    packed rows with side lists (see codec.packed)."""

    loops: list[LoopRow] = field(default_factory=list)
    starts: bytearray = field(default_factory=bytearray)  # t: raw time.perf_counter()
    items: list = field(default_factory=list)  # flat (ctx, item) of starts that keep an item
    ends: list[EndRow] = field(default_factory=list)  # only the ends iteration_ends cannot infer
    records: bytearray = field(default_factory=bytearray)
    others: list = field(default_factory=list)  # flat (ctx, code, value) of OTHER_ROW records
    table: NameTable = field(default_factory=NameTable)  # logged names and their codes
    t0: float = 0.0  # the clock at the run's start: stored times are seconds since then
    explicit_loops: set[int] = field(default_factory=set)  # flor.iteration loops: each end recorded

    def waiting(self) -> int:
        """Rows waiting to be converted: records plus iteration starts."""
        return len(self.records) // RECORD_SIZE + len(self.starts) // START_SIZE

    def record(self, ctx: int, name: str, value: object) -> None:
        """Append a record off the hot path (args; ``name`` already checked)."""
        append_record(self.records, self.others, ctx, self.table.code_of(name), value)

    def start_rows(self) -> list[tuple]:
        return start_rows(self.starts, self.items)

    def record_rows(self) -> list[tuple]:
        return record_rows(self.records, self.others, self.table.names)


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
        self._kinds = [  # in Tables order: each table's schema and its spooled file
            (arrow.LOOP_SCHEMA, layout.LOOPS),
            (arrow.START_SCHEMA, layout.STARTS),
            (arrow.END_SCHEMA, layout.ENDS),
            (arrow.RECORD_SCHEMA, layout.RECORDS),
        ]
        self._ends = IterationEnds(b.explicit_loops)
        self._arrow = arrow

    def _run(self) -> None:
        with self._lock:
            self._load()
        b, clock = self._buffers, time.monotonic
        last = clock()
        while not self._stop.wait(_POLL):
            if clock() - last >= INTERVAL or b.waiting() >= EAGER_ROWS:
                self.flush()
                last = clock()

    def flush(self) -> None:
        with self._lock:
            self._load()
            from florgit.codec.unpacked import Records, Starts

            b, arrow = self._buffers, self._arrow
            # Loops, starts, ends, then records: nothing is spooled before what it refers to.
            loops, starts, ends = _take(b.loops), Starts.take(b.starts, b.items, b.t0), _take(b.ends)
            records = Records.take(b.records, b.others, b.table.names)
            if not (loops or starts.n or ends or records.n):
                return
            ended = self._ends.ends(starts.ctx, starts.loop_id, starts.t, [(c, e - b.t0) for c, e in ends])
            batches = Tables(arrow.loop_batch(loops), starts.batch(), arrow.end_batch_of(*ended), records.batch())
            if self._spool_failed:
                for kept, batch in zip(self.batches, batches):
                    kept.append(batch)
            self.count += records.n
            self.last.update(records.newest())
            self._spool_batches(batches)
            if self.echo_on:
                echo.write(self._echo.lines(Tables(loops, starts, ends, records), batches))

    def _spool_batches(self, batches: list) -> None:
        if self._spool_failed:
            return
        done = 0  # tables whose batch of this flush is spooled
        try:
            if self._streams is None:
                self._streams = [
                    self._arrow.StreamAppender(self._spool.path(fname), schema) for schema, fname in self._kinds
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
        for kept, (schema, fname) in zip(self.batches, self._kinds):
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
    n = len(buf)  # appended by one step under the GIL each
    rows = buf[:n]
    del buf[:n]  # appends made since the copy stay
    return rows
