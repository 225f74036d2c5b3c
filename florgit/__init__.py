"""florgit: a hindsight-logging database for ML that keeps its data in your git repository.

Use it as ``import florgit as flor``; FlorDB scripts run with only their import changed.
"""

__version__ = "0.1.0"

from florgit.api.functions import (  # noqa: E402
    arg,
    checkpointing,
    commit,
    current_run_id,
    iteration,
    log,
    loop,
    set_checkpoint_period,
    set_echo,
)
from florgit.api.replay_call import replay  # noqa: E402
from florgit.api.restore import checkpoints, load_checkpoint  # noqa: E402
from florgit.errors import FlorgitError  # noqa: E402
from florgit.frames import dataframe, query, runs, scan  # noqa: E402

__all__ = [
    "FlorgitError",
    "__version__",
    "arg",
    "checkpointing",
    "checkpoints",
    "commit",
    "current_run_id",
    "dataframe",
    "iteration",
    "load_checkpoint",
    "log",
    "loop",
    "query",
    "replay",
    "runs",
    "scan",
    "set_checkpoint_period",
    "set_echo",
]
