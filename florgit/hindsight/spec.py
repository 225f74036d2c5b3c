"""What one replay process is asked to do, passed to it as a JSON file named by the
``FLORGIT_REPLAY`` environment variable."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

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
    replay_id: str
    part: str = "all"

    def dump(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, path: str) -> ReplaySpec:
        with open(path) as f:
            return cls(**json.load(f))
