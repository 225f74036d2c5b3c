"""``florgit.replay``: hindsight logging from Python (``git flor replay`` from the shell)."""

from __future__ import annotations

import os


def replay(
    names: str | list[str],
    *,
    where: str | None = None,
    runs: list[str] | None = None,
    jobs: int = 1,
    dry_run: bool = False,
    partition: tuple[int, int] | str | None = None,
    repo: str | None = None,
    trust: bool = False,
    strict: bool = False,
    gpus: list[int] | None = None,
    fetch: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    ray_clone: str | None = None,
    links: list[str] | None = None,
):
    """Compute ``flor.log(NAME, ...)`` statements added to today's code for past runs.

    Each selected run (``runs``: ids or prefixes; ``where``: a SQL predicate over its
    run-level values) gets the statements carried into its own code version and is
    replayed from its checkpoints, ``jobs`` processes at a time. With ``dry_run`` only
    the plan (patched code in ``plan.runs[i].diff``) is returned. ``partition=(k, n)``
    executes the k-th of n shares of the work, for cluster schedulers; by default a Slurm
    array task runs its own share (``"all"``: everything). Runs this clone
    did not record (pulled from a remote) execute someone else's code: they are skipped
    unless ``trust`` is True (read their code first: ``dry_run``). Returns the plan, with
    ``plan.results`` filled in after execution. ``gpus`` (device numbers) gives each
    running task one of them as its only visible CUDA device. ``strict`` refuses (UsageError) a plan in
    which some run's loop-carried variables could not be checkpointed (``plan.inexact``).
    Runs pulled without their checkpoints get them fetched from the remote they came from
    (only theirs); with ``fetch=False``, or where that fails, they are skipped and
    ``plan.runs[i].skip`` names the command that fetches them. ``executor="ray"`` runs
    the tasks on a Ray cluster (``ray_address``, else a running one, else a local one),
    on a shared filesystem, or each in a clone of the remote ``ray_clone`` that pushes
    its results (pulled here at the end). ``links``: working-tree paths git does not
    track (``["data"]``) that the replayed code reaches through symlinks, as it did when
    it ran in the working tree (what it writes there lands in the working tree too).
    """
    from florgit.git import open_repo
    from florgit.hindsight.execute import check_links, execute
    from florgit.hindsight.fetching import fetch_missing, waiting
    from florgit.hindsight.slurm import share_of
    from florgit.hindsight.plan import make_plan

    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    partition = share_of(partition, os.environ)
    git = open_repo(repo)
    plan = make_plan(git, names, where, runs)
    if waiting(plan):
        fetch_missing(git, plan, fetch=fetch and not dry_run)
    if strict and plan.inexact:
        from florgit.errors import UsageError

        detail = "; ".join(f"{r.run_id}: {', '.join(r.inexact)}" for r in plan.inexact)
        raise UsageError(f"replay would be inexact, loop-carried variables not in the checkpoints ({detail})")
    if not dry_run:
        execute(
            git, plan, jobs=jobs, partition=partition, trust_foreign=trust, gpus=gpus, executor=executor,
            ray_address=ray_address, ray_clone=ray_clone, links=check_links(git, links or []),
        )  # fmt: skip
    return plan
