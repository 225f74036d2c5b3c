"""What one replay process is asked to do, passed to it as a JSON file named by the
``FLORGIT_REPLAY`` environment variable."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

ENV = "FLORGIT_REPLAY"
STRATEGIES = ("run", "outer", "inner", "full")


@dataclass
class ReplaySpec:
    git_dir: str  # the user's repository, where results go
    run_id: str  # the run being replayed
    names: list[str]  # what to compute
    strategy: str  # run | outer | inner | full
    loop: str | None  # the checkpointed loop's name
    execute: list[int] | None  # iterations of that loop to run (None: all)
    replay_id: str  # replays.replay_id(names, code): stored with the code, so it can be checked
    part: str = "all"
    code: str = ""  # the patched script this process runs
    after_loop: bool = False  # a new statement follows the checkpointed loop: run on past it

    def dump(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, path: str) -> ReplaySpec:
        with open(path) as f:
            raw = json.load(f)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
