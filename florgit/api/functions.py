"""The logging API a training script calls: ``log``, ``arg``, ``loop``, ``iteration``,
``checkpointing`` and ``commit``; FlorDB scripts run with only their import changed.

A run starts at the first call and ends at ``commit()``, at interpreter exit, or when
the script dies of an exception (status ``failed``). ``log`` is the hot path: a type
check, a dict lookup and a packed row appended to a bytearray.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar, overload

from florgit.api import echo
from florgit.api import kwargs as kwargs_mod
from florgit.api import notebook
from florgit.api.compiled import compiled
from florgit.codec.packed import RECORD_FLOAT, RECORD_SIZE, append_record
from florgit.codec.values import SCALAR_TYPES, check_name, to_scalar
from florgit.errors import KwargsError, UsageError

MODE_ENV = "FLORGIT_MODE"  # =disabled: record nothing (values are returned, loops iterate)
# Bytes of records waiting before log() converts them itself (the flusher thread writes
# them): converting here costs no GIL hand-overs (see flusher.Flusher), and the bound
# keeps the backlog a run's end must convert small, so a run of any length ends quickly.
BUFFER_LIMIT = 25_000 * RECORD_SIZE
_PACK_FLOAT = RECORD_FLOAT.pack

class _Required:
    """The default of ``arg``'s ``default``: the value must come from ``--kwargs``."""

    def __repr__(self) -> str:
        return "<required>"


_MISSING: Any = _Required()
T = TypeVar("T")
_rec = None  # the Recorder of the run in progress
_start_lock = threading.Lock()
_hooks_installed = False
_failure: tuple[str, str] | None = None
_echo_on = echo.enabled_by_default()
_checkpoint_period: int | None = None  # None: adaptive; set from the environment at first use
_period_set = False
# Cut `--kwargs` out of sys.argv now, before the script's own argparse reads it. In a
# notebook sys.argv is the kernel's own (`-f kernel.json`): left alone, so args use defaults.
ARGV = list(sys.argv)  # as typed, recorded with each run
KWARGS: dict[str, str] = (
    kwargs_mod.extract(sys.argv) if kwargs_mod.FLAG in sys.argv and not notebook.running_cells() else {}
)


def _start():
    global _rec, _checkpoint_period, _period_set
    with _start_lock:
        if _rec is None:
            from florgit.api.recorder import Recorder

            if not _period_set:
                from florgit.api.checkpointer import period_from_env

                _checkpoint_period, _period_set = period_from_env(), True

            _install_hooks()
            replay = os.environ.get("FLORGIT_REPLAY")
            if os.environ.get(MODE_ENV, "").strip().lower() == "disabled":
                _rec = _Disabled()  # a debug run: the API works, nothing is recorded
            elif replay:  # this process replays an old run: see florgit.replay
                from florgit.api.replaying import ReplayRecorder
                from florgit.hindsight.spec import ReplaySpec

                _rec = ReplayRecorder(ReplaySpec.load(replay))
            else:
                _rec = Recorder(ARGV, KWARGS, _echo_on, _checkpoint_period)
        return _rec


def log(name: str, value: T) -> T:
    """Record ``value`` under ``name`` in the current loop context and return ``value``.

    bool, int, float (NaN and inf included), str and None keep their type; numpy scalars
    and 0-d torch tensors are stored as Python scalars. Anything else raises
    :class:`~florgit.errors.UnsupportedValueError`.
    """
    rec = _rec or _start()
    if type(value) is float:  # the common case, packed inline (codec.packed)
        try:  # a subscript is ~35 ns cheaper than .get(); a name misses once per run
            code = rec.codes[name]
        except KeyError:
            code = rec.add_name(name)
        buf = rec.records
        buf += _PACK_FLOAT(rec.ctx, code, value)
    else:
        stored = value if type(value) in SCALAR_TYPES else to_scalar(value, name)
        try:
            code = rec.codes[name]
        except KeyError:
            code = rec.add_name(name)
        buf = rec.records
        append_record(buf, rec.others, rec.ctx, code, stored)
    if len(buf) > BUFFER_LIMIT:
        rec.drain()
    return value


# The compiled hot path (florgit/api/_hotpath.c) does a float or 64-bit int under a known name
# and hands every other call to the Python ``log`` above; FLORGIT_C_HOT_PATH=0 keeps
# Python's alone (so does a build without a C compiler).
_python_log = log
_Logger = compiled("Logger")
if _Logger is not None:
    log = _Logger(globals(), _python_log)  # type: ignore[assignment]


@overload
def arg(name: str) -> Any: ...


@overload
def arg(name: str, default: T) -> T: ...


def arg(name: str, default: Any = _MISSING) -> Any:
    """Record a hyper-parameter: ``--kwargs name=value`` overrides ``default``.

    The text is parsed by the default's type (bool accepts true/false/yes/no/1/0; a
    None default reads a Python literal). The value is returned and logged at run level.
    """
    rec = _rec or _start()
    check_name(name)
    value = rec.arg(name, default, _MISSING)
    if _echo_on:
        print(f"{name}: {value}")
    return value


def loop(name: str, iterable: Iterable[T]) -> Iterator[T]:
    """Iterate ``iterable`` lazily, recording each iteration as a context of loop ``name``.

    Logs inside the loop body carry the loop's 0-based iteration (and the item, when it
    is a scalar other than the index). Loops nest.
    """
    rec = _rec or _start()
    check_name(name)
    return rec.loop(name, iterable)


def iteration(name: str, idx: int, value: object = None) -> AbstractContextManager[int]:
    """Context manager for a hand-written loop: the body is iteration ``idx`` of ``name``."""
    rec = _rec or _start()
    check_name(name)
    if type(idx) is not int:
        raise UsageError(f"flor.iteration({name!r}, idx, ...) needs an int idx, got {type(idx).__name__}")
    return rec.iteration(name, idx, value)


@contextmanager
def checkpointing(**objs: object) -> Iterator[None]:
    """Checkpoint these objects (modules, optimizers, LR schedulers, grad scalers: anything
    with ``state_dict()``/``load_state_dict()``) at iteration boundaries of the outermost
    ``flor.loop`` inside the block, with parameter ``.grad``s and RNG states. Which
    iterations follows an adaptive rule (under 1/15 of loop time); see
    :func:`set_checkpoint_period`."""
    for key, obj in objs.items():
        if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
            raise UsageError(
                f"flor.checkpointing({key}=...) got a {type(obj).__name__}, which has no "
                "state_dict()/load_state_dict(); pass modules, optimizers or schedulers"
            )
    rec = _rec or _start()
    previous = rec.open_checkpointing(objs)
    try:
        yield
    finally:
        rec.close_checkpointing(previous)


def set_checkpoint_period(period: int | None) -> None:
    """Checkpoint every ``period`` iterations (1: every one); None restores the adaptive
    rule. Env: ``FLORGIT_CHECKPOINT_PERIOD=N|adaptive``. Applies to runs started later."""
    global _checkpoint_period, _period_set
    if period is not None and (type(period) is not int or period < 1):
        raise UsageError(f"set_checkpoint_period takes a positive int or None, not {period!r}")
    _checkpoint_period, _period_set = period, True


def commit() -> None:
    """End the current run and store it; logging afterwards starts a new run."""
    _end("ok")


def set_echo(enabled: bool) -> None:
    """Turn the printed echo of args and logs on or off (env: ``FLORGIT_ECHO=0``)."""
    global _echo_on
    _echo_on = bool(enabled)
    flusher = getattr(_rec, "flusher", None)
    if flusher is not None:
        flusher.echo_on = _echo_on


def current_run_id() -> str | None:
    """The id of the run in progress, or None."""
    return _rec.run_id if _rec is not None else None


def _end(status: str, error: str | None = None) -> None:
    global _rec
    with _start_lock:
        rec, _rec = _rec, None
    if rec is not None:
        rec.finish(status, error)


def _at_exit() -> None:
    if _failure is None:
        _end("ok")
    else:
        _end(*_failure)


def _excepthook(exc_type, exc, tb) -> None:
    global _failure
    if issubclass(exc_type, KwargsError) and _previous_excepthook is sys.__excepthook__:
        # The command line was wrong and nothing was trained: one line, no run recorded.
        _failure = ("discard", str(exc))
        text = str(exc)
        print(text if text.startswith("florgit:") else f"florgit: {text}", file=sys.stderr)
        return
    status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
    _failure = (status, f"{exc_type.__name__}: {exc}")
    _previous_excepthook(exc_type, exc, tb)


_previous_excepthook = sys.excepthook


def _install_hooks() -> None:
    global _hooks_installed, _previous_excepthook
    if _hooks_installed:
        return
    _hooks_installed = True
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    atexit.register(_at_exit)
    os.register_at_fork(after_in_child=_forked_child)


class _ForkedChild:
    """Stands in for the parent's run in a forked child (e.g. a DataLoader worker)."""

    run_id = None
    ctx = 0

    def __init__(self) -> None:
        # What log() appends is dropped: by drain(), once the buffer reaches its bound.
        self.records, self.others = bytearray(), []
        self.codes: dict[str, int] = {}  # every name gets code 0: nothing reads them
        self.warned = False

    def add_name(self, name: str) -> int:
        if not self.warned:
            self.warned = True
            warnings.warn("florgit: logs from a forked child process are not recorded", stacklevel=3)
        return self._dropped(name)

    def _dropped(self, name: str) -> int:
        self.codes[name] = 0
        return 0

    def drain(self) -> None:
        del self.records[:]
        self.others.clear()

    def finish(self, status: str, error: str | None = None) -> None:
        pass

    def loop(self, name: str, iterable: Iterable) -> Iterator:
        return iter(iterable)

    def arg(self, name: str, default: object, missing: object) -> object:
        return None if default is missing else default

    def iteration(self, name: str, idx: int, value: object):
        return contextmanager(lambda: (yield idx))()

    def open_checkpointing(self, objs: dict) -> None:
        return None

    def close_checkpointing(self, previous: object) -> None:
        pass


class _Disabled(_ForkedChild):
    """FLORGIT_MODE=disabled: the script runs as it would, `--kwargs` included, and nothing
    is recorded or written."""

    def add_name(self, name: str) -> int:
        check_name(name)  # misuse still raises, as it would when recording
        return self._dropped(name)

    def arg(self, name: str, default: object, missing: object) -> object:
        if name in KWARGS:
            return kwargs_mod.parse(name, KWARGS[name], None if default is missing else default)
        if default is missing:
            raise UsageError(f"flor.arg({name!r}) has no default and {kwargs_mod.FLAG} does not set it")
        return default


def _forked_child() -> None:
    global _rec
    if _rec is not None:
        _rec = _ForkedChild()
