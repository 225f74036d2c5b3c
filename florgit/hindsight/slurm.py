"""Which share of a replay this process runs when Slurm started it as a job array task.

``sbatch --array=1-8 replay.sh`` starts eight tasks with the same command; each reads its
place from the environment Slurm sets, so ``git flor replay NAME --yes`` needs no
``--partition``. Ids may start anywhere and step (``--array=0-14:2``): the share is the
task's position in the array, counted from 1.
"""

from __future__ import annotations

from collections.abc import Mapping

from florgit.errors import UsageError


def slurm_partition(env: Mapping[str, str]) -> tuple[int, int] | None:
    """``(k, n)`` for a Slurm array task, None outside one."""
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    try:
        task = int(env["SLURM_ARRAY_TASK_ID"])
        count = int(env["SLURM_ARRAY_TASK_COUNT"])
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or "1")
    except (KeyError, ValueError):
        raise UsageError(
            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT/MIN/STEP are missing or not numbers; "
            "pass --partition K/N (or --partition all)"
        ) from None
    k = (task - first) // max(step, 1) + 1
    if not 1 <= k <= count:
        raise UsageError(f"Slurm array task {task} is not one of the {count} tasks from {first} by {step}; pass --partition K/N")
    return k, count


def share_of(partition: tuple[int, int] | str | None, env: Mapping[str, str]) -> tuple[int, int] | None:
    """The share a replay runs: ``(k, n)`` as given; ``"all"``: everything; ``None``: a Slurm
    array task's own share, else everything; ``"slurm"``: the task's share, required."""
    if partition is None or partition == "slurm":
        found = slurm_partition(env)
        if found is None and partition == "slurm":
            raise UsageError("partition='slurm' outside a Slurm array task (no SLURM_ARRAY_TASK_ID)")
        return found
    return None if partition == "all" else partition
