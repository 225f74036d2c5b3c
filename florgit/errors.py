"""florgit's exceptions: one hierarchy, every message says how to fix the problem.

    FlorgitWarning (a UserWarning): data left out, work skipped; florgit went on
    FlorgitError
    ├── RepositoryError            where florgit cannot keep data
    │   ├── NotARepositoryError
    │   └── BareRepositoryError
    ├── UsageError                 misuse of the logging API (always raised)
    │   ├── InvalidNameError
    │   ├── UnsupportedValueError
    │   └── KwargsError
    ├── StoreError                 recorded data cannot be read or written
    │   ├── RefUpdateConflict      a compare-and-swap kept losing to other writers
    │   ├── RunNotFoundError
    │   │   └── AmbiguousRunError   a run reference matches several runs
    │   ├── InvalidDataError       stored data (maybe pulled) fails validation
    │   └── CheckpointError        a checkpoint cannot be taken, found or trusted
    └── QueryError                 a dataframe/query request cannot be answered
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class FlorgitError(Exception):
    """Base class of every error florgit raises on purpose."""


class FlorgitWarning(UserWarning):
    """Something was left out or could not be done, and florgit went on (e.g. a run that
    fails validation is skipped by a query); the message says how to fix it."""


def noting_warnings(compute: Callable[[], T]) -> tuple[T, bool]:
    """``compute()``, and whether it raised no :class:`FlorgitWarning` (a run left out, a
    name never logged): what memos keep must be whole. Every warning is still shown, as
    the caller's filters say, once the work is done."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", FlorgitWarning)
        value = compute()
    for w in warned:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return value, not any(issubclass(w.category, FlorgitWarning) for w in warned)


class RepositoryError(FlorgitError):
    """florgit cannot keep its data in this place."""


class NotARepositoryError(RepositoryError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"{path!r} is not inside a git repository; florgit keeps runs in the "
            "repository of the code you train. Run `git init` there (or cd into your "
            "project) and start the script again."
        )


class BareRepositoryError(RepositoryError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"{path!r} is a bare repository, which has no working tree to snapshot. "
            "Run the training script from a clone with a working tree."
        )


class UsageError(FlorgitError):
    """The logging API was called in a way it cannot honour."""


class InvalidNameError(UsageError):
    def __init__(self, name: object, why: str) -> None:
        self.name = name
        super().__init__(
            f"invalid florgit name {name!r}: {why}. Use a non-empty string of letters, "
            "digits, '_', '.', '-' or '/', e.g. flor.log('val_loss', x)."
        )


class UnsupportedValueError(UsageError):
    def __init__(self, name: str, value: object) -> None:
        self.name = name
        self.value_type = type(value).__name__
        super().__init__(
            f"flor.log({name!r}, ...) got a {self.value_type}; florgit logs bool, int, "
            "float, str or None (numpy and 0-d torch scalars are converted). Log a "
            "scalar such as `x.item()`, `float(x)` or `str(x)` instead."
        )


class KwargsError(UsageError):
    """`--kwargs` on the command line is malformed or does not fit an arg."""


class StoreError(FlorgitError):
    """Recorded data could not be read or written."""


class RefUpdateConflict(StoreError):
    def __init__(self, ref: str, attempts: int) -> None:
        self.ref = ref
        self.attempts = attempts
        super().__init__(
            f"could not update {ref} after {attempts} attempts because other "
            "processes kept updating it; nothing was lost (the run stays spooled "
            "under .git/flor and is recovered the next time florgit runs)."
        )


class RunNotFoundError(StoreError):
    def __init__(self, run: str, removed: str | None = None) -> None:
        self.run = run
        self.removed = removed
        if removed:
            message = f"run {removed} was set aside with `git flor rm`; `git flor rm --undo {removed}` brings it back."
        else:
            message = f"no recorded run matches {run!r}; list runs with `git flor log` and pass a run id, a unique prefix or suffix of one, `latest` or `latest~N`."
        super().__init__(message)


class InvalidDataError(StoreError):
    """Data read from git (perhaps pulled from someone else) is malformed or hostile.

    Raised at the one boundary where each stored format is parsed; callers above it
    leave the affected run out and go on with the others."""

    def __init__(self, what: str, why: str, run_id: str | None = None) -> None:
        self.what = what
        self.why = why
        self.run_id = run_id
        fix = (
            f"set it aside with `git flor rm {run_id}`" if run_id else "fetch it again"
        ) + "; `git flor verify` lists every problem"
        super().__init__(f"{what} is invalid: {why}; {fix}")


class RunInProgressError(InvalidDataError):
    """Other ranks of a multi-process run stored their part before rank 0 stored the run."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id}", "only ranks other than 0 have stored their part so far (rank 0 is still running, or died and is recovered the next time florgit runs in its clone)", run_id)


class AmbiguousRunError(RunNotFoundError):
    def __init__(self, run: str, candidates: list[str]) -> None:
        self.candidates = candidates
        shown = ", ".join(candidates[-10:]) + (f" and {len(candidates) - 10} more" if len(candidates) > 10 else "")
        StoreError.__init__(
            self, f"{run!r} matches {len(candidates)} runs ({shown}); give more of the id, or `latest`/`latest~N`."
        )
        self.run, self.removed = run, None


class CheckpointError(StoreError):
    """A checkpoint cannot be taken, found, or trusted (missing or corrupted objects)."""


class QueryError(FlorgitError):
    """A query over recorded runs cannot be answered as asked."""


__all__ = [
    "FlorgitError",
    "FlorgitWarning",
    "RepositoryError",
    "NotARepositoryError",
    "BareRepositoryError",
    "UsageError",
    "InvalidNameError",
    "UnsupportedValueError",
    "KwargsError",
    "StoreError",
    "RefUpdateConflict",
    "RunNotFoundError",
    "AmbiguousRunError",
    "InvalidDataError",
    "CheckpointError",
    "QueryError",
]
