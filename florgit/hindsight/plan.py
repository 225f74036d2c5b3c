"""Planning a replay: which runs, which code version, which strategy, how long.

The strategy follows from where the new statement sits relative to the loop that was
checkpointed (C):
- outside every loop -> "run": run only C's last iteration, from the checkpoint at its
  start (the code after the loop may read variables the loop body set), then the rest;
- in C's body, outside inner loops -> "outer": every iteration of C starts from its
  checkpoint and skips its inner loops by restoring the state right after them;
- inside an inner loop -> "inner": iterations of C run fully, each range of them from
  the checkpoint at its start (ranges run in parallel with --jobs);
- no usable checkpoints -> "full": the run is executed again from the start.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from florgit.errors import QueryError
from florgit.git import GitRepo
from florgit.hindsight import propagate
from florgit.store import checkpoints as ckpts
from florgit.store import layout, replays, runs


@dataclass
class RunPlan:
    run_id: str
    script: str
    argv: list[str]
    cwd: str
    code_tree: str | None
    strategy: str = "full"
    loop: str | None = None
    iterations: int = 0  # of the checkpointed loop in the original run
    starts: list[int] = field(default_factory=list)  # boundaries with a start checkpoint
    execute: list[int] | None = None  # iterations of the checkpointed loop to run (None: all)
    original_s: float = 0.0
    estimate_s: float = 0.0
    patched: str | None = None
    diff: str = ""
    replay_id: str = ""
    skip: str | None = None  # why this run is not replayed


@dataclass
class Plan:
    names: list[str]
    runs: list[RunPlan]
    results: list = field(default_factory=list)

    @property
    def todo(self) -> list[RunPlan]:
        return [r for r in self.runs if r.skip is None]


def make_plan(repo: GitRepo, names: list[str], where: str | None = None, run_ids: list[str] | None = None) -> Plan:
    stored = runs.list_runs(repo)
    if run_ids:
        wanted = {runs.find_run(repo, r).run_id for r in run_ids}
        stored = [r for r in stored if r.run_id in wanted]
    if where:
        stored = [r for r in stored if r.run_id in _matching(repo, where)]
    return Plan(names, [_plan_run(repo, r, names) for r in stored])


def _matching(repo: GitRepo, where: str) -> set[str]:
    from florgit.frames import dataframe
    from florgit.frames.where import apply_where

    frame = dataframe(repo=repo.workdir or repo.git_dir)
    return set(apply_where(frame, where).get_column("run_id").to_list())


def _plan_run(repo: GitRepo, stored: runs.StoredRun, names: list[str]) -> RunPlan:
    meta = runs.read_meta(repo, stored)
    plan = RunPlan(meta.run_id, meta.script, meta.argv, meta.cwd, meta.code_tree)
    plan.original_s = _seconds(meta)
    current = _read_current(repo, meta.script)
    if current is None:
        plan.skip = f"{meta.script} is not in the working tree to take the new statement from"
        return plan
    old = repo.blob_in_tree(meta.code_tree, meta.script) if meta.code_tree else None
    if old is None:
        plan.skip = f"the run's code snapshot has no {meta.script}"
        return plan
    statements = []
    for name in names:
        found = propagate.find_statements(current, name)
        if not found:
            plan.skip = f"add a flor.log({name!r}, ...) statement to {meta.script} first"
            return plan
        statements += found
    patched = old.decode()
    try:
        for statement in statements:
            patched = propagate.place(statement, patched)
    except (propagate.Unplaceable, SyntaxError) as exc:
        plan.skip = f"cannot place the statement in this version: {exc}"
        return plan
    plan.patched = patched
    plan.diff = "".join(difflib.unified_diff(old.decode().splitlines(True), patched.splitlines(True), f"a/{meta.script}", f"b/{meta.script}"))
    plan.replay_id = replays.replay_id(names, patched)
    if replays.exists(repo, meta.run_id, plan.replay_id):
        plan.skip = "already replayed with this code"
        return plan
    _choose_strategy(repo, plan, max((s.loops for s in statements), key=len))
    return plan


def _choose_strategy(repo: GitRepo, plan: RunPlan, loops: list[str]) -> None:
    infos = ckpts.list_checkpoints(repo, plan.run_id)
    if not infos:
        plan.strategy, plan.estimate_s = "full", plan.original_s
        return
    plan.loop = infos[0].loop
    plan.starts = sorted(c.boundary for c in infos if c.phase == "start" and c.loop == plan.loop)
    timing = _loop_timing(repo, plan.run_id, plan.loop)
    plan.iterations = timing["iterations"]
    last = plan.iterations - 1
    if not loops:
        begin = max((b for b in plan.starts if b <= last), default=None)
        if begin is not None:  # from the last checkpoint before the end, run to the end
            plan.strategy, plan.execute = "run", list(range(begin, plan.iterations))
            plan.estimate_s = plan.original_s - timing["loop"] * begin / plan.iterations
        else:
            plan.strategy, plan.estimate_s = "full", plan.original_s
    elif loops[0] == plan.loop and len(loops) == 1 and 0 in plan.starts:
        plan.strategy = "outer"
        plan.estimate_s = plan.original_s - timing["inner"]
    elif loops[0] == plan.loop and 0 in plan.starts:
        plan.strategy, plan.estimate_s = "inner", plan.original_s
    else:
        plan.strategy, plan.estimate_s = "full", plan.original_s


def _loop_timing(repo: GitRepo, run_id: str, loop: str) -> dict:
    """Iterations of ``loop`` and seconds spent in it and in loops directly inside it."""
    stored = runs.find_run(repo, run_id)
    loops = runs.read_table(repo, stored, layout.LOOPS).to_pylist()
    starts = runs.read_table(repo, stored, layout.STARTS).to_pylist()
    ends = {r["ctx"]: r["t"] for r in runs.read_table(repo, stored, layout.ENDS).to_pylist()}
    outer = {r["loop_id"] for r in loops if r["loop"] == loop}
    outer_ctx = {s["ctx"] for s in starts if s["loop_id"] in outer}
    inner = {r["loop_id"] for r in loops if r["parent"] in outer_ctx}

    def spent(ids: set[int]) -> float:
        return sum(max(0.0, ends.get(s["ctx"], s["t"]) - s["t"]) for s in starts if s["loop_id"] in ids)

    return {"iterations": len(outer_ctx), "loop": spent(outer), "inner": spent(inner)}


def _seconds(meta) -> float:
    from datetime import datetime

    try:
        start = datetime.fromisoformat(meta.start.replace("Z", "+00:00"))
        end = datetime.fromisoformat((meta.end or meta.start).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def _read_current(repo: GitRepo, script: str) -> str | None:
    import os

    if not repo.workdir:
        return None
    try:
        with open(os.path.join(repo.workdir, script)) as f:
            return f.read()
    except OSError:
        return None
