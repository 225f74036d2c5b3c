"""Checks for values read from git, which may come from someone else's push.

Each stored format is parsed into a typed model at one boundary (``RunMeta.parse``,
``Manifest.parse``, ``ReplayPart.parse``, ``NoteLine.parse``); these are the checks they
share. Every check raises :class:`~florgit.errors.InvalidDataError` with ``what`` naming
the thing being read, so one bad run is reported and left out while the others load.
Same layer as ``errors``: nothing here imports git, polars or pyarrow.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from florgit.errors import InvalidDataError

T = TypeVar("T")

RUN_ID = re.compile(r"\A\d{8}-\d{6}\.\d{3}-[0-9a-f]{8}\Z")
OID = re.compile(r"\A[0-9a-f]{40}\Z")
MAX_NAME_LENGTH = 256
MAX_PATH_LENGTH = 4096
MAX_TEXT = 64 * 1024  # any single string field of a stored JSON record
MAX_JSON_BYTES = 16 * 1024 * 1024  # a meta.json, note or manifest bigger than this is refused unread
MAX_ITEMS = 100_000  # entries of any list or dict in a stored JSON record


def load_json(data: bytes, what: str, run_id: str | None = None) -> Any:
    """JSON from git bytes, bounded in size before it is parsed."""
    if len(data) > MAX_JSON_BYTES:
        raise InvalidDataError(what, f"it is {len(data):,} bytes, more than the {MAX_JSON_BYTES:,} allowed", run_id)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidDataError(what, f"it is not JSON ({_short(exc)})", run_id) from None


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


class Fields:
    """Typed access to one JSON object's fields, each failure naming the field."""

    def __init__(self, raw: Any, what: str, run_id: str | None = None) -> None:
        if not isinstance(raw, dict):
            raise InvalidDataError(what, f"expected a JSON object, found {type(raw).__name__}", run_id)
        self.raw, self.what, self.run_id = raw, what, run_id

    def fail(self, key: str, why: str) -> InvalidDataError:
        return InvalidDataError(self.what, f"field {key!r} {why}", self.run_id)

    def get(self, key: str, check: Callable[[Any], T], *, default: Any = ..., optional: bool = False) -> T:
        if key not in self.raw:
            if default is not ...:
                return default
            raise self.fail(key, "is missing")
        value = self.raw[key]
        if value is None and optional:
            return None  # type: ignore[return-value]
        try:
            return check(value)
        except BadField as bad:
            raise self.fail(key, str(bad)) from None


class BadField(ValueError):
    """A field check failed; Fields turns it into an InvalidDataError."""


def _need(ok: bool, why: str) -> None:
    if not ok:
        raise BadField(why)


def text(value: Any, max_len: int = MAX_TEXT) -> str:
    if type(value) is not str:  # checks build their message only when they fail: listings run 300k of them
        raise BadField(f"must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise BadField(f"is longer than {max_len} characters")
    return value


def integer(value: Any, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if type(value) is not int:
        raise BadField(f"must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise BadField(f"must be between {lo} and {hi}")
    return value


def number(value: Any) -> float:
    _need(type(value) in (int, float) and math.isfinite(value), "must be a finite number")
    return float(value)


def boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise BadField(f"must be true or false, not {type(value).__name__}")
    return value


def one_of(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise BadField(f"must be one of {', '.join(allowed)}")
        return value

    return check


def text_list(value: Any) -> list[str]:
    _need(type(value) is list and len(value) <= MAX_ITEMS, "must be a list of strings")
    return [text(v) for v in value]


def timestamp(value: Any) -> str:
    """An ISO 8601 time (what florgit writes: ``2026-11-28T02:08:36.123456Z``)."""
    text(value, 64)
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadField(f"must be an ISO 8601 time, not {value[:40]!r}") from None
    return value


def oid(value: Any) -> str:
    _need(type(value) is str and OID.match(value) is not None, "must be a 40-digit hex object id")
    return value


def run_id(value: Any) -> str:
    _need(type(value) is str and RUN_ID.match(value) is not None, "must be a florgit run id (YYYYMMDD-HHMMSS.mmm-xxxxxxxx)")
    return value


def module_name(value: Any) -> str:
    ok = type(value) is str and len(value) <= MAX_NAME_LENGTH
    _need(ok and all(part.isidentifier() for part in value.split(".")), "must be a dotted Python module name (pkg.train)")
    return value


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a loop, log or arg name, or None. Stored names pass the same
    check as names logged today (the reserved-column rule aside: see codec.values)."""
    if type(name) is not str:
        return f"names are str, not {type(name).__name__}"
    if not name or name.strip() != name:
        return "names must be non-empty without surrounding spaces"
    if len(name) > MAX_NAME_LENGTH:
        return f"names are at most {MAX_NAME_LENGTH} characters"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        return "names must not contain control characters"
    return None


def name(value: Any) -> str:
    why = name_problem(value)
    _need(why is None, f"is not a valid name ({why})")
    return value


def relative_path(value: Any) -> str:
    """A path inside a directory: relative, '/'-separated, no '..', no empty parts."""
    text(value, MAX_PATH_LENGTH)
    why = path_problem(value)
    _need(why is None, f"must be a path inside the code snapshot ({why})")
    return value


def path_problem(path: str) -> str | None:
    if not path:
        return "empty"
    if "\\" in path or "\0" in path:
        return "backslash or NUL in it"
    if path.startswith("/"):
        return "absolute"
    norm = posixpath.normpath(path)
    if norm == ".":
        return None
    parts = norm.split("/")
    if any(p == ".." for p in parts):
        return "'..' leaves the directory"
    if any(entry_name_problem(p) for p in parts):
        return next(entry_name_problem(p) for p in parts if entry_name_problem(p))
    return None


def entry_name_problem(entry: str) -> str | None:
    """Why ``entry`` cannot be a tree entry name (git fsck --strict's checks), or None."""
    if not entry:
        return "emptyName"
    if entry in (".", ".."):
        return "hasDot" if entry == "." else "hasDotdot"
    if "/" in entry or "\0" in entry:
        return "fullPathname"
    if entry.lower().rstrip(". ") == ".git" or entry.lower().startswith("git~1"):
        return "hasDotgit"
    return None


def memory_budget(override_env: str | None = None) -> int:
    """Bytes that decoding data read from git may still allocate: what the machine has
    free (MemAvailable, or the integer in ``override_env`` when set) and the room left under
    the address-space limit (ulimit -v, which the kernel enforces whatever else is free),
    whichever is less. A hostile size claim beyond it is refused instead of killing the
    process."""
    import os

    free = _env_bytes(os.environ.get(override_env, "")) if override_env else None
    if free is None:
        free = _proc_value("/proc/meminfo", "MemAvailable:")
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 2**63 - 1
    import resource

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        free = min(free, soft - (_proc_value("/proc/self/status", "VmSize:") or 0))
    return max(0, free)


def _env_bytes(value: str) -> int | None:
    try:
        return max(0, int(value.strip())) if value.strip() else None
    except ValueError:
        return None


def _proc_value(path: str, key: str) -> int | None:
    """A ``kB`` figure from a /proc file, in bytes."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
