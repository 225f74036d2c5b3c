"""What a run prints while it goes: ``seed: 4179``, ``epoch: 0, step: 500, loss: 1.22``.

Printing is done by the flusher thread once per flush, never by ``log`` itself, so the
echo costs the training loop nothing. Per flush it prints every run-level value, every
outermost-loop line, and only the newest line of each deeper loop level.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

MAX_OUTER_LINES = 20
MAX_RUN_LEVEL = 50


def enabled_by_default() -> bool:
    return os.environ.get("FLORGIT_ECHO", "1").strip().lower() not in ("0", "false", "no", "off")


def fmt(value: object) -> str:
    if type(value) is float:
        return f"{value:.6g}"
    return str(value)


class Echo:
    """Tracks loops and open iterations seen in spooled rows so lines can name their chain."""

    def __init__(self, quiet_names=()) -> None:
        # Run-level names echoed elsewhere (args print when they are read).
        self._quiet = quiet_names
        self._loops: dict[int, tuple[int, str]] = {}  # loop_id -> (parent ctx, loop name)
        self._live: dict[int, tuple[int, int]] = {}  # open ctx -> (loop_id, iteration)

    def lines(self, loops: Sequence[tuple], starts: Sequence[tuple], ends: Sequence[tuple], records: Sequence[tuple]) -> list[str]:
        for loop_id, parent, _depth, name in loops:
            self._loops[loop_id] = (parent, name)
        live = self._live
        for ctx, loop_id, iteration, _value, _t in starts:
            live[ctx] = (loop_id, iteration)
        grouped: dict[int, list[tuple[str, object]]] = {}
        last_seen: dict[int, int] = {}  # ctx -> position of its newest record
        keyed: list[tuple[int, str]] = []  # (position, line): lines print in log order
        for pos, (ctx, name, value) in enumerate(records):
            if ctx == 0:
                if name not in self._quiet and len(keyed) < MAX_RUN_LEVEL:
                    keyed.append((pos, f"{name}: {fmt(value)}"))
                continue
            grouped.setdefault(ctx, []).append((name, value))
            last_seen[ctx] = pos
        newest_by_depth: dict[int, int] = {}
        outer: list[int] = []
        for ctx in grouped:
            depth = len(self._chain(ctx))
            if depth == 1:
                outer.append(ctx)
            elif depth > 1:
                newest_by_depth[depth] = ctx
            # depth 0: its loop rows land in the next flush; the next line covers it
        for ctx in outer[-MAX_OUTER_LINES:] + list(newest_by_depth.values()):
            prefix = [f"{loop}: {it}" for loop, it in self._chain(ctx)]
            values = [f"{n}: {fmt(v)}" for n, v in _last_per_name(grouped[ctx])]
            keyed.append((last_seen[ctx], ", ".join(prefix + values)))
        for ctx, _t in ends:
            live.pop(ctx, None)
        return [line for _pos, line in sorted(keyed)]

    def _chain(self, ctx: int) -> list[tuple[str, int]]:
        chain = []
        while ctx and ctx in self._live:
            loop_id, iteration = self._live[ctx]
            parent, name = self._loops.get(loop_id, (0, "?"))
            chain.append((name, iteration))
            ctx = parent
        return chain[::-1]


def _last_per_name(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    last: dict[str, object] = {}
    for name, value in pairs:
        last[name] = value
    return list(last.items())


def write(lines: list[str]) -> None:
    if lines:
        try:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stdout must not stop recording
