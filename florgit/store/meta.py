"""A run's metadata record (``meta.json`` in the run's tree) and its note line.

The recorder builds and updates a :class:`RunMeta` while the run goes; everything read
back from git goes through :meth:`RunMeta.parse`, which checks every field's type and
shape (the data may come from someone else's push) and that the run id is the one its
path says.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from florgit import validation as v
from florgit.codec.values import fits_int64

FORMAT_VERSION = 1
MAX_WORLD_SIZE = 65_536  # ranks of one launch a run may hold
STATUSES = ("running", "ok", "failed", "interrupted", "killed")
ARG_TYPES = (bool, int, float, str, type(None))


@dataclass
class RunMeta:
    run_id: str
    script: str
    argv: list[str]
    start: str  # ISO 8601, UTC
    status: str = "running"
    end: str | None = None
    cwd: str = "."
    module: str | None = None  # set when launched as `python -m module` (script is its file)
    user_commit: str | None = None
    branch: str | None = None
    detached: bool = False
    dirty: bool = False
    code_tree: str | None = None
    skipped_files: list[str] = field(default_factory=list)
    args: dict[str, object] = field(default_factory=dict)
    kwargs: dict[str, str] = field(default_factory=dict)
    unused_kwargs: list[str] = field(default_factory=list)
    error: str | None = None
    records: int = 0
    checkpoints: int = 0
    # The run's tree on the checkpoints ref, so a clone that pulled the run without its
    # checkpoints can fetch just those objects (hindsight.fetching).
    checkpoint_tree: str | None = None
    # The last value of each logged name, so run listings need no tables; None when the
    # run predates it or did not fit (too many names, a very long string).
    last: dict[str, object] | None = None
    python: str = ""
    florgit: str = ""
    torch: str | None = None
    host: str = ""
    author: str = ""  # `Name <email>` as git knows the person who ran it
    pid: int = 0
    # Multi-process training (torchrun): every rank of one launch records into one run.
    # Rank 0's meta.json is the run's; rank r > 0 stores its own at ranks/<r>/meta.json.
    rank: int = 0
    world_size: int = 1
    format: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1, allow_nan=True).encode()

    @classmethod
    def parse(cls, data: bytes, expected_run_id: str | None = None) -> RunMeta:
        """The only way a stored meta.json is read: every field checked, unknown fields
        ignored (a newer florgit may add some), the run id equal to its path's."""
        what = f"meta.json of run {expected_run_id}" if expected_run_id else "a run's meta.json"
        f = v.Fields(v.load_json(data, what, expected_run_id), what, expected_run_id)
        fmt = f.get("format", lambda x: v.integer(x, 1, 1_000), default=FORMAT_VERSION)
        if fmt > FORMAT_VERSION:
            raise f.fail("format", f"is {fmt}, newer than this florgit reads ({FORMAT_VERSION}); upgrade florgit")
        run_id = f.get("run_id", v.run_id)
        if expected_run_id is not None and run_id != expected_run_id:
            raise f.fail("run_id", f"says {run_id!r} but the run is stored as {expected_run_id!r}")
        opt_text = {"optional": True}
        meta = cls(
            run_id=run_id,
            script=f.get("script", lambda x: v.text(x, v.MAX_PATH_LENGTH)),
            argv=f.get("argv", v.text_list),
            start=f.get("start", v.timestamp),
            status=f.get("status", v.one_of(*STATUSES)),
            end=f.get("end", v.timestamp, default=None, **opt_text),
            cwd=f.get("cwd", lambda x: v.text(x, v.MAX_PATH_LENGTH), default="."),
            module=f.get("module", v.module_name, default=None, **opt_text),
            user_commit=f.get("user_commit", v.oid, default=None, **opt_text),
            branch=f.get("branch", lambda x: v.text(x, 1024), default=None, **opt_text),
            detached=f.get("detached", v.boolean, default=False),
            dirty=f.get("dirty", v.boolean, default=False),
            code_tree=f.get("code_tree", v.oid, default=None, **opt_text),
            skipped_files=f.get("skipped_files", v.text_list, default=[]),
            args=f.get("args", _args, default={}),
            kwargs=f.get("kwargs", _kwargs, default={}),
            unused_kwargs=f.get("unused_kwargs", v.text_list, default=[]),
            error=f.get("error", v.text, default=None, **opt_text),
            records=f.get("records", v.integer, default=0),
            checkpoints=f.get("checkpoints", v.integer, default=0),
            checkpoint_tree=f.get("checkpoint_tree", v.oid, default=None, **opt_text),
            last=f.get("last", _last, default=None, optional=True),
            python=f.get("python", lambda x: v.text(x, 64), default=""),
            florgit=f.get("florgit", lambda x: v.text(x, 64), default=""),
            torch=f.get("torch", lambda x: v.text(x, 64), default=None, **opt_text),
            host=f.get("host", lambda x: v.text(x, 256), default=""),
            author=f.get("author", lambda x: v.text(x, 512), default=""),
            pid=f.get("pid", v.integer, default=0),
            rank=f.get("rank", lambda x: v.integer(x, 0, MAX_WORLD_SIZE - 1), default=0),
            world_size=f.get("world_size", lambda x: v.integer(x, 1, MAX_WORLD_SIZE), default=1),
            format=fmt,
        )
        if meta.rank >= meta.world_size:
            raise f.fail("rank", f"is {meta.rank}, not below world_size {meta.world_size}")
        return meta

    def note_line(self, path: str) -> str:
        """The one-line summary hung on the user commit in ``refs/notes/flor``."""
        return NoteLine(self.run_id, path, self.status, self.start, self.script, self.branch, self.dirty).to_json()


def _args(value: Any) -> dict[str, object]:
    if type(value) is not dict or len(value) > v.MAX_ITEMS:
        raise v.BadField("must be an object of name: value")
    for key, item in value.items():
        v.name(key)
        if type(item) not in ARG_TYPES or (type(item) is str and len(item) > v.MAX_TEXT):
            raise v.BadField(f"holds {type(item).__name__} for {key!r}; args are bool, int, float, str or null")
    return value


MAX_LAST_NAMES = 10_000
MAX_LAST_TEXT = 1024


def last_summary(last: dict[str, object]) -> dict[str, object] | None:
    """What ``last`` is stored as: the values themselves, or None when they don't fit. An
    int beyond 64 bits is its decimal text, as the records keep it."""
    stored = {k: str(x) if type(x) is int and not fits_int64(x) else x for k, x in last.items()}
    if len(stored) > MAX_LAST_NAMES or any(type(x) is str and len(x) > MAX_LAST_TEXT for x in stored.values()):
        return None
    return stored


def _last(value: Any) -> dict[str, object]:
    if type(value) is not dict or len(value) > MAX_LAST_NAMES:
        raise v.BadField(f"must be an object of at most {MAX_LAST_NAMES:,} name: value")
    for key, item in value.items():
        v.name(key)
        kind = type(item)
        if kind not in ARG_TYPES or (kind is str and len(item) > MAX_LAST_TEXT) or (kind is int and not fits_int64(item)):
            raise v.BadField(f"holds an unexpected value for {key!r}")
    return value


def _kwargs(value: Any) -> dict[str, str]:
    if type(value) is not dict or len(value) > v.MAX_ITEMS:
        raise v.BadField("must be an object of name: text")
    for key, item in value.items():
        v.text(key, v.MAX_NAME_LENGTH)
        v.text(item)
    return value


@dataclass(frozen=True)
class NoteLine:
    """One run's line in ``refs/notes/flor`` (``git log --notes=flor`` shows it)."""

    run: str
    path: str
    status: str
    start: str
    script: str
    branch: str | None
    dirty: bool

    def to_json(self) -> str:
        return json.dumps(
            {"run": self.run, "path": self.path, "status": self.status, "start": self.start,
             "script": self.script, "branch": self.branch, "dirty": self.dirty},
            sort_keys=True, separators=(",", ":"),
        )  # fmt: skip

    @classmethod
    def parse(cls, line: str, where: str) -> NoteLine:
        what = f"note line on {where}"
        f = v.Fields(v.load_json(line.encode(), what), what)
        run = f.get("run", v.run_id)
        path = f.get("path", lambda x: v.text(x, 256))
        from florgit.store.layout import run_paths

        if path not in run_paths(run):
            raise f.fail("path", f"is {path!r}, not the path of run {run}")
        return cls(
            run=run,
            path=path,
            status=f.get("status", v.one_of(*STATUSES)),
            start=f.get("start", v.timestamp),
            script=f.get("script", lambda x: v.text(x, v.MAX_PATH_LENGTH)),
            branch=f.get("branch", lambda x: v.text(x, 1024), default=None, optional=True),
            dirty=f.get("dirty", v.boolean, default=False),
        )


__all__ = ["RunMeta", "NoteLine", "STATUSES", "FORMAT_VERSION"]
