"""The background thread that moves buffered records out of the training thread.

Every ``INTERVAL`` seconds it pops what the hot path appended to the two deques (loop
events first, so a record's context is never spooled after the record), turns them into
Arrow batches, appends those to the run's spool streams, keeps them for the final files,
and echoes a summary. ``deque.append``/``popleft`` are thread-safe, so the hot path takes
no lock at all.
"""

from __future__ import annotations

import threading
import warnings
from collections import deque

from florgit.api import echo

INTERVAL = 0.5


class Flusher:
    def __init__(self, records: deque, events: deque, spool, echo_on: bool, quiet_names=()) -> None:
        from florgit.codec import arrow  # pyarrow loads here, off `import florgit`

        self._arrow = arrow
        self._records = records
        self._events = events
        self._spool = spool
        self.echo_on = echo_on
        self._echo = echo.Echo(quiet_names)
        self.record_batches: list = []
        self.event_batches: list = []
        self.count = 0
        self._lock = threading.Lock()  # one flush at a time (thread, overflow, finish)
        self._stop = threading.Event()
        self._streams = None
        self._spool_failed = False
        self._thread = threading.Thread(target=self._run, name="florgit-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            events = _pop_all(self._events)
            records = _pop_all(self._records)
            if not events and not records:
                return
            ev_batch = self._arrow.event_batch(events)
            rec_batch = self._arrow.record_batch(records)
            self.event_batches.append(ev_batch)
            self.record_batches.append(rec_batch)
            self.count += len(records)
            self._spool_batches(ev_batch, rec_batch)
            if self.echo_on:
                echo.write(self._echo.lines(events, records))

    def _spool_batches(self, ev_batch, rec_batch) -> None:
        if self._spool_failed:
            return
        try:
            if self._streams is None:
                from florgit.store import layout

                self._streams = (
                    self._arrow.StreamAppender(self._spool.path(layout.SPOOL_EVENTS), self._arrow.EVENT_SCHEMA),
                    self._arrow.StreamAppender(self._spool.path(layout.SPOOL_RECORDS), self._arrow.RECORD_SCHEMA),
                )
            self._streams[0].append(ev_batch)
            self._streams[1].append(rec_batch)
        except OSError as exc:  # disk full, spool deleted: keep training, keep records in memory
            self._spool_failed = True
            warnings.warn(f"florgit: cannot spool records ({exc}); they are kept in memory until the run ends", stacklevel=1)

    def stop(self) -> None:
        """Stop the thread and flush what is left; the streams are closed."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        if self._streams is not None:
            for stream in self._streams:
                try:
                    stream.close()
                except OSError:
                    pass
            self._streams = None

    def tables(self):
        arrow = self._arrow
        import pyarrow as pa

        records = pa.Table.from_batches(self.record_batches, schema=arrow.RECORD_SCHEMA)
        events = pa.Table.from_batches(self.event_batches, schema=arrow.EVENT_SCHEMA)
        return records, arrow.fold_events(events)


def _pop_all(queue: deque) -> list:
    pop = queue.popleft
    return [pop() for _ in range(len(queue))]
