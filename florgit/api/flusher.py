"""Moving buffered records out of the training thread, onto disk.

What the hot path appended (loop instances, iteration starts and ends, then records, so
nothing is spooled before what it refers to) is taken and turned into Arrow batches (with
the iteration ends the starts imply: see iteration_ends), which are appended to the run's
spool streams, and a summary is echoed. Taking is ``rows = buf[:n]; del buf[:n]``: each
one step under the GIL, and appends land after ``n``, so the hot path takes no lock at
all. Starts and records are packed rows (codec.packed): taking them is a copy of bytes,
and reading them numpy's work (codec.unpacked). Who converts and who writes: see
``Flusher``. Batches are not kept: the spool holds them (only if spooling fails are they
kept in memory, from then on).
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from dataclasses import dataclass, field

from florgit.api import echo
from florgit.api.compiled import compiled
from florgit.codec.packed import START_SIZE, NameTable, append_record, record_rows, start_rows
from florgit.codec.schemas import EndRow, LoopRow, Tables

INTERVAL = 0.5  # the thread converts when nobody has for this long
EAGER_STARTS = 100_000  # iteration starts waiting that make the thread convert early
_POLL = 0.05
_QUEUED = 2  # converted batches waiting to be written: bounds the end of a run


def warm_up() -> None:
    """Import what converting needs (numpy, pyarrow: ~0.15 s) in the background, from the
    start of a run: while the repository is snapshotted, rather than in the training
    thread's first hand-off, 25,000 records in (a fast loop reached it before the flusher
    thread had imported them, and stalled there; 1M steps took ~0.2 us a step longer)."""

    def imports() -> None:
        import florgit.api.iteration_ends  # noqa: F401
        import florgit.codec.arrow  # noqa: F401
        import florgit.codec.unpacked  # noqa: F401

    threading.Thread(target=imports, name="florgit-warm-up", daemon=True).start()


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

    def record(self, ctx: int, name: str, value: object) -> None:
        """Append a record off the hot path (args; ``name`` already checked)."""
        append_record(self.records, self.others, ctx, self.table.code_of(name), value)

    def start_rows(self) -> list[tuple]:
        return start_rows(self.starts, self.items)

    def record_rows(self) -> list[tuple]:
        return record_rows(self.records, self.others, self.table.names)


_take_rows = compiled("take_rows")  # a buffer's rows without a copy, where the compiled hot path is in use


class Flusher:
    """Converts waiting rows to Arrow batches and spools them, keeping the training thread's
    share to the conversion itself.

    The training thread converts (``hand_off``, called by ``log`` once ``BUFFER_LIMIT``
    records wait): numpy and pyarrow release the GIL inside most calls, and a background
    thread needs the training thread's switch interval (5 ms) to take it back each time, so
    a conversion there took 10-25x its CPU time while the backlog grew. Converted batches
    go to this thread through a short queue; it compresses and writes them (mostly without
    the GIL) and prints the echo. It also converts by itself when nobody has for
    ``INTERVAL`` (a slow loop, or loops that log little). Conversions hold ``_lock`` and
    queue in the order they took rows, so batches are spooled in order.
    """

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
        self._lock = threading.Lock()  # one conversion at a time (thread, hand_off, finish)
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUED)  # converted, not yet written
        self._converted_at = time.monotonic()
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
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
                if item is None:  # stop's wake-up
                    self._queue.task_done()
            except queue.Empty:
                item = None
            if item is None:
                if self._stop.is_set():
                    return
                due = clock() - self._converted_at >= INTERVAL or len(b.starts) >= EAGER_STARTS * START_SIZE
                # Never wait long for the lock: a log() holding it may be waiting for room
                # in the queue, which only this thread makes.
                if due and self._lock.acquire(timeout=_POLL):
                    try:
                        queued = self._take_queued()  # older rows than the ones converted now
                        newest = self._convert()
                    finally:
                        self._lock.release()
                    self._write_taken([*queued, newest], len(queued))
                continue
            self._drain(first=item)  # with whatever else waits: fewer GIL hand-overs

    def _convert(self) -> tuple[Tables, list[str]] | None:
        """Take what waits and make its batches (and echo lines); holds ``_lock``."""
        self._load()
        from florgit.codec.unpacked import Records, Starts, take_bytes

        b, arrow, take = self._buffers, self._arrow, _take_rows or take_bytes
        self._converted_at = time.monotonic()
        # Loops, starts, ends, then records: nothing is spooled before what it refers to.
        loops, starts, ends = _take(b.loops), Starts.take(b.starts, b.items, b.t0, take), _take(b.ends)
        records = Records.take(b.records, b.others, b.table.names, take)
        if not (loops or starts.n or ends or records.n):
            return None
        ended = self._ends.ends(starts.ctx, starts.loop_id, starts.t, [(c, e - b.t0) for c, e in ends])
        batches = Tables(arrow.loop_batch(loops), starts.batch(), arrow.end_batch_of(*ended), records.batch())
        self.count += records.n
        self.last.update(records.newest())
        lines = self._echo.lines(Tables(loops, starts, ends, records), batches) if self.echo_on else []
        return batches, lines

    def hand_off(self) -> None:
        """Convert what waits now, in the calling (training) thread, and leave the writing
        to the background thread."""
        with self._lock:
            item = self._convert()
            if item is not None:
                self._queue_or_write(item)

    def flush(self) -> None:
        """Convert what waits and return once it and everything before it is spooled."""
        with self._lock:
            item = self._convert()
            if item is not None:
                self._queue_or_write(item)
        if self._thread.is_alive():
            self._queue.join()

    def _queue_or_write(self, item: tuple | None) -> None:
        while self._thread.is_alive():  # a full queue waits for the writer (bounded memory)
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue
        self._drain(newest=item)  # no thread (stopped): write here, after what is queued

    def _drain(self, first: tuple | None = None, newest: tuple | None = None) -> None:
        """Write ``first`` (taken off the queue by ``get``), everything still queued, then
        ``newest`` (just converted): oldest rows first."""
        queued = self._take_queued()
        self._write_taken([first, *queued, newest], len(queued) + (first is not None))

    def _take_queued(self) -> list:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _write_taken(self, items: list, taken: int) -> None:
        """Write ``items`` in order (None: nothing, or stop's wake-up), then mark the
        ``taken`` of them that came off the queue as done."""
        try:
            self._write([item for item in items if item is not None])
        finally:
            for _ in range(taken):
                self._queue.task_done()

    def _write(self, items: list[tuple]) -> None:
        """Spool converted batches, oldest first: each table's batches in one append."""
        if not items:
            return
        per_table = Tables(*([batches[k] for batches, _lines in items] for k in range(4)))
        if self._spool_failed:
            for kept, batches in zip(self.batches, per_table):
                kept.extend(batches)
        self._spool_batches(per_table)
        lines = [line for _batches, item_lines in items for line in item_lines]
        if lines:
            echo.write(lines)

    def _spool_batches(self, batches: list) -> None:
        if self._spool_failed:
            return
        done = 0  # tables whose batch of this flush is spooled
        try:
            if self._streams is None:
                self._streams = [
                    self._arrow.StreamAppender(self._spool.path(fname), schema) for schema, fname in self._kinds
                ]
            for stream, table_batches in zip(self._streams, batches):
                stream.append_all(table_batches)
                done += 1
        except Exception as exc:  # disk full, spool deleted...: keep training, keep records in memory
            self._spool_failed = True
            for kept, table_batches in list(zip(self.batches, batches))[done:]:  # the spool has the others
                kept.extend(table_batches)
            warnings.warn(f"florgit: cannot spool records ({exc}); they are kept in memory until the run ends", stacklevel=1)

    def stop(self) -> None:
        """Stop the thread (it writes what is queued first) and spool what is left; the
        streams are closed."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._queue_or_write(None)  # wakes the thread now, not at its next poll
            self._thread.join()
        with self._lock:
            self._drain(newest=self._convert())
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
