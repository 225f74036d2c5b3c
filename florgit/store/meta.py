"""A run's metadata record (``meta.json`` in the run's tree)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

FORMAT_VERSION = 1
STATUSES = ("running", "ok", "failed", "interrupted", "killed")


@dataclass
class RunMeta:
    run_id: str
    script: str
    argv: list[str]
    start: str  # ISO 8601, UTC
    status: str = "running"
    end: str | None = None
    cwd: str = "."
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
    python: str = ""
    florgit: str = ""
    torch: str | None = None
    host: str = ""
    pid: int = 0
    format: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1, allow_nan=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> RunMeta:
        raw = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def note_line(self, path: str) -> str:
        """The one-line summary hung on the user commit in ``refs/notes/flor``."""
        summary = {
            "run": self.run_id,
            "path": path,
            "status": self.status,
            "start": self.start,
            "script": self.script,
            "branch": self.branch,
            "dirty": self.dirty,
        }
        return json.dumps(summary, sort_keys=True, separators=(",", ":"))
