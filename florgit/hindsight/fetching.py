"""Getting the checkpoints a replay needs when this clone pulled runs without them.

A run's meta records its tree on the checkpoints ref of the clone that recorded it. That
tree (the run's manifests) is fetched by id from a remote the run came from, checked like
any manifest, then only the chunks those manifests name and this clone lacks are fetched,
and both are added to the local checkpoints ref (chunks first, so a checkpoint is never
listed before its bytes are here). Runs whose checkpoints cannot be fetched stay skipped,
with the exact command that gets them: a replay never quietly re-executes such a run in
full instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from florgit.errors import FlorgitError
from florgit.git import GitRepo
from florgit.hindsight.plan import MISSING, Plan, RunPlan, make_plan
from florgit.store import checkpoints as ckpts
from florgit.store import layout, sharing


@dataclass
class Fetched:
    runs: list[str] = field(default_factory=list)  # runs whose checkpoints are now here
    chunks: int = 0
    bytes: int = 0  # compressed bytes of the chunks fetched


def waiting(plan: Plan) -> list[RunPlan]:
    """Runs skipped only because their checkpoints are not in this clone."""
    return [r for r in plan.runs if r.missing and (r.skip or "").startswith(MISSING)]


def fetch_missing(
    repo: GitRepo, plan: Plan, *, fetch: bool = True, say: Callable[[str], None] = lambda _m: None,
    progress: bool = False,
) -> Fetched:
    """Fetch the checkpoints of the plan's waiting runs and plan those runs again; a run
    that cannot be completed (or every one, without ``fetch``) keeps its skip, now naming
    the command that fetches them."""
    done = Fetched()
    by_remote: dict[str, list[RunPlan]] = {}
    for item in waiting(plan):
        remotes = sharing.remotes_with_run(repo, item.run_id)
        if item.checkpoint_tree is None or not remotes or not fetch:
            item.skip = _how_to_get(item, remotes, "its record does not say where they are" if remotes and fetch else "")
            continue
        by_remote.setdefault(remotes[0], []).append(item)
    for remote, items in sorted(by_remote.items()):
        say(f"fetching the checkpoints of {len(items)} run(s) from {remote}")
        try:
            _fetch_from(repo, remote, items, done, say, progress)
        except FlorgitError as exc:
            for item in items:
                if item.run_id not in done.runs:
                    item.skip = _how_to_get(item, [remote], f"fetching from {remote} failed: {_first_line(exc)}")
    if done.runs:
        again = {r.run_id: r for r in make_plan(repo, plan.names, run_ids=done.runs).runs}
        plan.runs = [again.get(r.run_id, r) for r in plan.runs]
    return done


def _fetch_from(
    repo: GitRepo, remote: str, items: list[RunPlan], done: Fetched, say: Callable[[str], None], progress: bool
) -> None:
    trees = {item.run_id: item.checkpoint_tree for item in items}
    absent = [t for t in trees.values() if not repo.has_object(t)]
    try:
        sharing.fetch_objects(repo, remote, absent, progress)
    except FlorgitError:  # one run the remote lacks fails the batch: ask run by run
        for tree in absent:
            try:
                sharing.fetch_objects(repo, remote, [tree], progress)
            except FlorgitError:
                pass  # its run is reported below
    items = [item for item in items if repo.has_object(trees[item.run_id]) or _lacks(item, remote)]
    chunks: dict[str, int] = {}  # chunk id -> compressed size, for chunks not here yet
    usable = {}
    for item in items:
        infos, bad = ckpts.scan_checkpoints(repo, item.run_id, trees[item.run_id])
        if bad or not infos:
            why = bad[0].error if bad else "the fetched tree holds no checkpoints of this run"
            item.skip = _how_to_get(item, [remote], f"{remote} sent unusable checkpoints ({why})")
            continue
        usable[item.run_id] = trees[item.run_id]
        for info in infos:
            for array in info.manifest.arrays if info.manifest else ():
                for chunk in array.chunks:
                    if not repo.has_object(chunk.id):
                        chunks[chunk.id] = chunk.size
    if not usable:
        return
    say(f"fetching {len(chunks)} checkpoint chunk(s), {sum(chunks.values()) / 1e6:.1f} MB, from {remote}")
    sharing.fetch_objects(repo, remote, sorted(chunks), progress)
    if chunks:
        entries = {ckpts.blob_path(oid): oid for oid in chunks}
        repo.put_blobs_in_ref(layout.CHECKPOINTS_REF, entries, f"flor: checkpoint chunks fetched from {remote}")
    for run_id, tree in usable.items():
        repo.put_tree_in_ref(layout.CHECKPOINTS_REF, layout.run_path(run_id), tree, f"flor: checkpoints of {run_id} fetched from {remote}")
        done.runs.append(run_id)
    done.chunks += len(chunks)
    done.bytes += sum(chunks.values())


def _how_to_get(item: RunPlan, remotes: list[str], why: str) -> str:
    how = (
        f"`git flor pull --checkpoints {remotes[0]}` fetches them"
        if remotes
        else "`git flor pull --checkpoints REMOTE` fetches them from the remote that has them"
    )
    return f"{MISSING}{f' ({why})' if why else ''}: {item.missing} recorded; {how}, then replay again"


def _lacks(item: RunPlan, remote: str) -> bool:
    item.skip = (f"{MISSING}: {item.missing} recorded, and {remote} does not have them either; whoever "
                 "recorded the run can share them with `git flor push --checkpoints`")
    return False


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
