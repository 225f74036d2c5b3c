"""Reading checkpoints back: list a run's checkpoints, restore one into live objects.

Restoring verifies every chunk (libgit2 checks each object's hash as it reads it, and
florgit checks each array's sha1) and never unpickles anything.
"""

from __future__ import annotations

from florgit.errors import CheckpointError, RunNotFoundError


def checkpoints(run: str, repo: str | None = None) -> list:
    """The checkpoints of ``run`` (an id, a unique prefix or suffix, `latest` or `latest~N`), oldest first.

    Each item has ``loop``, ``iteration`` (-1: before the loop ran), ``boundary``
    (completed iterations), ``nbytes`` and ``stored`` (compressed bytes).
    """
    from florgit.git import open_repo
    from florgit.store import checkpoints as store

    git = open_repo(repo, require_workdir=False)
    return store.list_checkpoints(git, _run_id(git, run))


def load_checkpoint(run: str, iteration: int | None = None, *, rng: bool = True, repo: str | None = None, **objs: object):
    """Restore the checkpoint of ``run`` taken at the end of ``iteration`` (-1: before the
    loop; None: the latest) into ``objs``, named as they were in ``flor.checkpointing``.
    Parameter ``.grad``s and, with ``rng=True``, the random states come back too. ``repo``:
    a path inside the repository (default: the current directory).
    Returns the checkpoint's info."""
    from florgit.git import open_repo
    from florgit.store import checkpoints as store

    git = open_repo(repo, require_workdir=False)
    run_id = _run_id(git, run)
    good, bad = store.scan_checkpoints(git, run_id)
    found = sorted((c for c in (*good, *bad) if c.phase == "start"), key=lambda c: (c.loop_id, c.boundary))
    if not found:
        raise CheckpointError(f"run {run_id} has no checkpoints; wrap its training loop in flor.checkpointing(...)")
    if iteration is None:
        info = found[-1]
    else:
        matches = [c for c in found if c.iteration == iteration]
        if not matches:
            have = ", ".join(str(c.iteration) for c in found)
            raise CheckpointError(f"run {run_id} has no checkpoint at the end of iteration {iteration}; it has: {have}")
        info = matches[-1]
    if isinstance(info, store.BadCheckpoint):  # never quietly fall back to another state
        loadable = ", ".join(str(c.iteration) for c in good if c.phase == "start") or "none"
        raise CheckpointError(f"{info.error} (iterations that load: {loadable})")
    store.warn_bad(bad)
    restore(git, info, objs, rng=rng)
    return info


def restore(git, info, objs: dict[str, object], *, rng: bool = True) -> dict[str, object]:
    """Load checkpoint ``info`` into ``objs`` (used by load_checkpoint and replay);
    returns the loop-carried variables stored with it (florgit.hindsight.carried)."""
    from florgit.codec import statetree
    from florgit.store import checkpoints as store

    where = store.describe(info)
    manifest = store.read_manifest(git, info)
    arrays = store.load_arrays(git, manifest, where)
    states = statetree.decode(manifest.objects, arrays)
    grads = statetree.decode(manifest.grads, arrays)
    for name, obj in objs.items():
        if name not in states:
            raise CheckpointError(f"{where} has no object {name!r}; it has {sorted(states)}")
        _apply(where, name, lambda: obj.load_state_dict(states[name]))
        if hasattr(obj, "named_parameters"):
            _apply(where, f"{name} .grad", lambda: _restore_grads(obj, grads.get(name, {})))
    if rng:
        from florgit.api.checkpointer import restore_rng

        _apply(where, "random states", lambda: restore_rng(statetree.decode(manifest.rng, arrays)))
    return statetree.decode(manifest.variables, arrays) if manifest.variables else {}


def _restore_grads(module, saved: dict) -> None:
    for pname, param in module.named_parameters():
        grad = saved.get(pname)
        param.grad = None if grad is None else grad.to(device=param.device, dtype=param.dtype).clone()


def _apply(where: str, what: str, step) -> None:
    """Run one restore step; state that does not fit (a stored shape or type the object
    refuses) is a CheckpointError naming the checkpoint and the object."""
    try:
        step()
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"{where}: {what} cannot take the stored state ({type(exc).__name__}: {str(exc)[:300]})") from exc


def _run_id(git, run: str) -> str:
    from florgit import validation
    from florgit.store import checkpoints as store
    from florgit.store.runs import find_run

    try:
        return find_run(git, run).run_id
    except RunNotFoundError:
        # A run still going (or killed, not yet recovered) has checkpoints but no run entry.
        if validation.RUN_ID.match(run) and store.run_folder(git, run)[0] is not None:
            return run
        raise
