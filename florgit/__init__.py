"""florgit: a hindsight-logging database for ML that keeps its data in your git repository.

Quick start (FlorDB scripts run with only their import changed)::

    import florgit as flor

    lr = flor.arg("lr", 1e-3)                      # `python train.py --kwargs lr=5e-4`
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(10)):
            for step, batch in flor.loop("step", enumerate(data)):
                loss = train_step(batch)
                flor.log("loss", loss.item())
            flor.log("val_acc", evaluate(net))

    flor.dataframe("lr", "loss")                   # polars: one row per run and loop context

Every run is committed to ``flor.shadow`` in this repository (code, args, logs,
checkpoints); your working tree, index and branches are never touched. From the shell:
``git flor log``, ``git flor show latest``, ``git flor replay NAME`` (hindsight logging),
``git flor help``. Query with :func:`dataframe`, :func:`scan`, :func:`query`,
:func:`runs`; restore with :func:`load_checkpoint`. Errors are :class:`FlorgitError`.
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
