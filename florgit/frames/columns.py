"""Column names: users' names and florgit's own never share a namespace.

While a query is built, every column that comes from a user's name (a loop, a loop's item
value, a logged name) is named with a NUL-separated prefix. No legal name contains NUL
(control characters are refused when logging and when reading stored data), so any legal
name, ``run``, ``ctx``, ``i`` or ``name`` included, works in every query.

Only the finished frame gets readable names, by one documented rule (:func:`display`):
florgit's metadata columns (``run_id``, ``start_time``, ``script``) keep their names; then
loop columns, loop value columns and logged names, in that order, each take its own name
unless an earlier column has it, in which case it is prefixed ``loop:`` (loops and their
values) or ``log:`` (logged names) until it is unique. New data cannot collide with the
metadata columns (``flor.log``/``flor.arg`` refuse those names); the rule keeps data
recorded elsewhere readable.
"""

from __future__ import annotations

from collections.abc import Iterable

# The runs frame's columns, in order (frames.loader makes it; run listings check a memo's
# frame against them). Not users' names: the internal ``run`` number, then metadata.
RUNS_FRAME_COLUMNS = [
    "run", "run_id", "start_time", "end_time", "script", "status", "user_commit", "branch", "author", "dirty",
    "records", "checkpoints", "world_size", "args", "tags", "note", "duration_s",
]  # fmt: skip

DIMS_SEP = "\x00"  # joins a record's loop chain ("epoch\x00step"); names cannot hold it


def loop(name: str) -> str:
    return f"\x00loop\x00{name}"


def loop_value(name: str) -> str:
    return f"\x00value\x00{name}"


def logged(name: str) -> str:
    return f"\x00log\x00{name}"


def ancestor(name: str, part: str) -> str:
    """An ancestor loop's item column (``kind``, ``i``, ``f``, ``s``) while chains resolve."""
    return f"\x00anc\x00{part}\x00{name}"


def loop_ctx(name: str) -> str:
    """The context id of the iteration of outer loop ``name`` a record is inside: which
    instance of the loop, when a run enters a loop of that name more than once."""
    return f"\x00ctx\x00{name}"


def display(metadata: Iterable[str], loops: Iterable[tuple[str, str]], names: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{internal column: shown name}`` for loop and logged columns, given
    ``(internal, user name)`` pairs, by the rule in this module's docstring."""
    taken = set(metadata)
    shown: dict[str, str] = {}
    for pairs, prefix in ((loops, "loop:"), (names, "log:")):
        for internal, name in pairs:
            while name in taken:
                name = prefix + name
            taken.add(name)
            shown[internal] = name
    return shown
