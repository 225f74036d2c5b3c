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
import functools
import os
import posixpath
import shlex
from dataclasses import dataclass, field

from florgit import validation
from florgit.errors import FlorgitError
from florgit.git import GitRepo
from florgit.hindsight import carried, propagate
from florgit.store import checkpoints as ckpts
from florgit.store import layout, replays, runs, trust

MAX_SCRIPT_BYTES = 16 * 1024 * 1024
ALREADY_DONE = "already replayed with this code"
MISSING = "its checkpoints are not in this clone"
NOTEBOOK = "<notebook>"  # the script the recorder writes when a kernel names no notebook
FOREIGN_SKIP = "recorded in another clone: its code is not run without --trust (see it with --dry-run)"


@dataclass
class RunPlan:
    run_id: str
    script: str
    argv: list[str]
    cwd: str
    code_tree: str | None
    module: str | None = None  # run as `python -m module`, found under module_root
    module_root: str = "."
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
    foreign: bool = False  # not recorded in this clone: its code is someone else's
    left_out: list[str] = field(default_factory=list)  # entries its export leaves out
    inexact: dict[str, str] = field(default_factory=dict)  # loop-carried variable not stored -> type
    stored_variables: set[str] = field(default_factory=set)  # loop-carried variables its checkpoints hold
    note: str = ""  # why the strategy is slower than its place suggests
    after_loop: bool = False  # a new statement lies outside every loop
    missing: int = 0  # checkpoints the run recorded that this clone lacks (see hindsight.fetching)
    checkpoint_tree: str | None = None  # where they are on the recording clone's checkpoints ref


@dataclass
class Plan:
    names: list[str]
    runs: list[RunPlan]
    results: list = field(default_factory=list)
    warm: str = ""  # how the tasks started: warm workers or plain processes, and why

    @property
    def todo(self) -> list[RunPlan]:
        return [r for r in self.runs if r.skip is None]

    @property
    def inexact(self) -> list[RunPlan]:
        """Runs to replay whose checkpoints lack loop-carried variables they could not store."""
        return [r for r in self.todo if r.inexact and r.strategy != "full"]


def make_plan(repo: GitRepo, names: list[str], where: str | None = None, run_ids: list[str] | None = None) -> Plan:
    """The plan for every selected run. Work shared by runs (today's statements, each code
    version's placement, the ``where`` selection) is done once, so planning grows with the
    number of runs, not its square."""
    stored = runs.list_runs(repo)
    if run_ids:
        wanted = {runs.resolve_run(repo, r, stored).run_id for r in run_ids}
        stored = [r for r in stored if r.run_id in wanted]
    if where:
        selected = _matching(repo, where)
        stored = [r for r in stored if r.run_id in selected]
    own, cache = trust.own_runs(repo), _Cache()
    return Plan(names, [_plan_checked(repo, r, names, r.run_id not in own, cache) for r in stored])


@dataclass
class _Cache:
    """What runs of one plan share: checked code trees, today's scripts and their new
    statements, and each code version's patched script."""

    code: dict = field(default_factory=dict)  # code tree -> trust.CodeTree or the error
    current: dict = field(default_factory=dict)  # script path -> today's text or None
    statements: dict = field(default_factory=dict)  # (script, names) -> statements or a skip reason
    patched: dict = field(default_factory=dict)  # (old script text, statements key) -> patched or error
    checkpoint_runs: dict | None = None  # run id -> (tree, path) on the checkpoints ref

    def checkpoint_folder(self, repo: GitRepo, run_id: str) -> tuple[str | None, str | None]:
        """The run's folder on the checkpoints ref; the ref's runs are listed once."""
        if self.checkpoint_runs is None:
            top = repo.tree_at(layout.CHECKPOINTS_REF, layout.RUNS_DIR)
            found = runs.walk_run_trees(repo, top) if top is not None else ()
            self.checkpoint_runs = {run: (tree, path) for path, run, tree in found}
        return self.checkpoint_runs.get(run_id, (None, None))


def hold_foreign(plan: Plan) -> list[RunPlan]:
    """Skip the foreign runs still to do (their code is not run); returns them."""
    held = [r for r in plan.todo if r.foreign]
    for item in held:
        item.skip = FOREIGN_SKIP
    return held


def _matching(repo: GitRepo, where: str) -> set[str]:
    """Runs the predicate selects, over ``flor.runs()``'s columns (args, last values,
    status, tags...): read once for the whole plan, from run metadata only."""
    from florgit.frames import runs as run_frame
    from florgit.frames.where import apply_where

    frame = run_frame(repo=repo.workdir or repo.git_dir)
    return set(apply_where(frame, where).get_column("run_id").to_list())


def _plan_checked(repo: GitRepo, stored: runs.StoredRun, names: list[str], foreign: bool, cache: _Cache) -> RunPlan:
    """A run's plan; a run that cannot be read or replayed safely is skipped, saying why
    (one damaged or hostile run never stops the others)."""
    plan = RunPlan(stored.run_id, "", [], ".", None, foreign=foreign)
    try:
        _plan_run(repo, stored, names, plan, cache)
    except (FlorgitError, ValueError, KeyError, TypeError) as exc:  # ValueError: pyarrow's too
        plan.skip = f"cannot be replayed: {exc}"
    return plan


def _plan_run(repo: GitRepo, stored: runs.StoredRun, names: list[str], plan: RunPlan, cache: _Cache) -> None:
    meta = runs.read_meta(repo, stored)
    plan.argv, plan.original_s = list(meta.argv), _seconds(meta)
    plan.missing, plan.checkpoint_tree = meta.checkpoints, meta.checkpoint_tree
    # What is exported is the run's own code/ tree, not whatever id its meta.json names.
    plan.code_tree = repo.subtree(stored.tree, layout.CODE_DIR)
    plan.skip = (
        _notebook(meta.script) or _launched(meta.world_size) or _confine(plan, meta.script, meta.cwd) or _module(plan, meta.module)
    )
    if plan.skip:
        return
    statements = _statements(repo, plan.script, names, cache)
    if isinstance(statements, str):
        plan.skip = statements
        return
    old = _recorded_script(repo, plan, cache.code)
    if old is None:
        return
    key = (old, plan.script, tuple(names))
    if key not in cache.patched:  # runs of one code version share its patch, diff and id
        cache.patched[key] = _patch(old, statements)
        if not isinstance(cache.patched[key], Exception):
            patched, a, b = cache.patched[key], f"a/{plan.script}", f"b/{plan.script}"
            diff = "".join(difflib.unified_diff(old.splitlines(True), patched.splitlines(True), a, b))
            cache.patched[key] = (patched, diff, replays.replay_id(names, patched))
    patched = cache.patched[key]
    if isinstance(patched, Exception):
        plan.skip = f"cannot place the statement in this version: {patched}"
        return
    plan.patched, plan.diff, plan.replay_id = patched
    done = repo.subtree(stored.tree, replays.REPLAYS_DIR)  # the run as listed, not a path lookup
    if done is not None and repo.subtree(done, plan.replay_id) is not None:
        plan.skip = ALREADY_DONE
        return
    _choose_strategy(repo, stored, plan, max((s.loops for s in statements), key=len), cache)
    plan.after_loop = any(not s.loops for s in statements)
    if plan.strategy == "outer":
        _check_carried(plan, statements)


def _statements(repo: GitRepo, script: str, names: list[str], cache: _Cache) -> list | str:
    """Today's new statements in ``script`` (read and parsed once per plan), or why not."""
    key = (script, tuple(names))
    if key in cache.statements:
        return cache.statements[key]
    if script not in cache.current:
        cache.current[script] = _read_current(repo, script)
    current = cache.current[script]
    if current is None:
        found: list | str = f"{script} is not in the working tree to take the new statement from"
    else:
        found = []
        for name in names:
            try:
                these = propagate.find_statements(current, name)
            except (SyntaxError, ValueError, RecursionError) as exc:
                found = f"today's {script} does not parse: {exc}"
                break
            if not these:
                found = f"add a flor.log({name!r}, ...) statement to {script} first"
                break
            found += these
    cache.statements[key] = found
    return found


def _patch(old: str, statements: list) -> str | Exception:
    patched = old
    try:
        for statement in statements:
            patched = propagate.place(statement, patched)
    except (propagate.Unplaceable, SyntaxError, ValueError, RecursionError) as exc:
        return exc
    return patched


def _check_carried(plan: RunPlan, statements: list) -> None:
    """An outer-level replay skips the inner loops: a new statement that reads a variable
    they change needs that variable in the checkpoints, else the inner loops must run."""
    state = _loop_state(plan.patched or "", plan.loop or "")
    reads = _reads(tuple(s.source for s in statements))
    needed = reads & state.changed_in_inner if state is not None else set()
    missing = sorted(needed - plan.stored_variables)
    if state is None or missing:
        plan.strategy, plan.estimate_s = "inner", plan.original_s
        plan.note = (f"runs the inner loops: {', '.join(missing)} changes there and is not in its checkpoints"
                     if missing else "runs the inner loops: the checkpointed loop was not found in its code")  # fmt: skip


@functools.lru_cache(maxsize=64)
def _reads(sources: tuple[str, ...]) -> frozenset[str]:
    return frozenset().union(*(carried.statement_reads(s) for s in sources))


def _notebook(script: str) -> str | None:
    """Why a run recorded from notebook cells or a prompt is not replayed: replay patches
    and runs a script file, and cells are not one."""
    if script == "<interactive>":
        return "recorded at an interactive prompt: replay runs scripts; record runs from a script file"
    if script == NOTEBOOK or script.endswith(".ipynb"):
        known = script != NOTEBOOK
        return (
            f"recorded in a notebook{f' ({script})' if known else ''}: replay runs scripts; export it with "
            f"`jupyter nbconvert --to script {shlex.quote(script) if known else 'NOTEBOOK.ipynb'}`, "
            "commit it, and record runs from the script"
        )
    return None


def _launched(world_size: int) -> str | None:
    """Why a multi-process (torchrun) run is not replayed: replay starts one process, and
    a script that joins a process group would wait for ranks that never come."""
    if world_size > 1:
        return (
            f"recorded by {world_size} processes (torchrun): replay runs one process per task and cannot "
            "rebuild the process group the script joins"
        )
    return None


def _confine(plan: RunPlan, script: str, cwd: str) -> str | None:
    """Why the recorded script or working directory is not a path inside the code
    snapshot (absolute, leaving it with '..', through '.git'), or None once set."""
    for what, path in (("script", script), ("working directory", cwd)):
        why = validation.path_problem(path) if isinstance(path, str) else "not a string"
        if why:
            return f"its recorded {what} {path!r} is not a path inside its code snapshot ({why})"
    plan.script, plan.cwd = posixpath.normpath(script), posixpath.normpath(cwd)
    return None


def _module(plan: RunPlan, module: str | None) -> str | None:
    """For a `python -m` run, the folder its module is found under: its script's path less
    the module's own (``src/pkg/train.py`` for ``pkg.train`` is under ``src``)."""
    if module is None:
        return None
    own = module.replace(".", "/") + ".py"
    if plan.script != own and not plan.script.endswith("/" + own):
        return f"its recorded module {module!r} is not its script {plan.script!r}"
    plan.module, plan.module_root = module, plan.script[: -len(own)].rstrip("/") or "."
    return None


def _recorded_script(repo: GitRepo, plan: RunPlan, checked: dict) -> str | None:
    """The run's own version of its script, from a code tree checked for safe export
    (sets ``plan.skip`` and returns None when there is none)."""
    if plan.code_tree is None:
        plan.skip = "the run has no code snapshot"
        return None
    if plan.code_tree not in checked:  # runs often share one code version
        try:
            checked[plan.code_tree] = trust.code_entries(repo, plan.code_tree)
        except FlorgitError as exc:
            checked[plan.code_tree] = exc
    code = checked[plan.code_tree]
    if isinstance(code, FlorgitError):
        plan.skip = f"its code snapshot is refused: {code}"
        return None
    plan.left_out = code.left_out
    entry = code.find(plan.script)
    if entry is None or not entry.is_file:
        plan.skip = f"the run's code snapshot has no file {plan.script}"
        return None
    if repo.object_size(entry.oid) > MAX_SCRIPT_BYTES:
        plan.skip = f"its {plan.script} is over {MAX_SCRIPT_BYTES:,} bytes"
        return None
    try:
        return repo.read_blob(entry.oid).decode()
    except UnicodeDecodeError:
        plan.skip = f"its {plan.script} is not UTF-8 text"
        return None


@functools.lru_cache(maxsize=256)
def _loop_state(code: str, loop: str) -> carried.LoopState | None:
    """The checkpointed loop's state in one patched version (runs of a version share it)."""
    try:
        return carried.loop_state_named(code, loop)
    except (SyntaxError, ValueError, RecursionError):
        return None


def _choose_strategy(repo: GitRepo, stored: runs.StoredRun, plan: RunPlan, loops: list[str], cache: _Cache) -> None:
    tree, path = cache.checkpoint_folder(repo, plan.run_id)
    places = ckpts.checkpoint_places(repo, plan.run_id, tree, path) if tree is not None else []
    if not places and plan.missing:  # never quietly re-executed in full instead
        plan.skip = f"{MISSING}: {plan.missing} recorded, none here"
        return
    plan.missing = 0
    infos = _sample(repo, places)
    if not infos:
        plan.strategy, plan.estimate_s = "full", plan.original_s
        return
    plan.loop = infos[0].loop
    plan.starts = sorted(p.boundary for p, _ in places if p.phase == "start" and p.loop == plan.loop)
    manifest = infos[-1].manifest  # what the recorder stored of the loop-carried variables
    if manifest is not None:
        plan.stored_variables = set(manifest.variables)
        plan.inexact = dict(manifest.inexact)
    timing = _loop_timing(infos, plan.loop) or _loop_timing_from_tables(repo, stored, plan.loop)
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


def _sample(repo: GitRepo, places: list) -> list:
    """The few checkpoints a plan reads (the rest are checked when a replay restores them):
    the first and last start of the loop, the last checkpoint (its loop-carried variables),
    and one iteration's start and "after" checkpoints, for the time its inner loops take."""
    if not places:
        return []
    loop = places[0][0].loop
    starts = {p.boundary: i for i, (p, _) in enumerate(places) if p.phase == "start" and p.loop == loop}
    after = next((i for i, (p, _) in enumerate(places) if p.phase != "start" and p.loop == loop and p.boundary in starts), None)
    picked = {0, len(places) - 1, *(starts[b] for b in (min(starts), max(starts)) if starts)}
    if after is not None:
        boundary = places[after][0].boundary
        picked |= {starts[boundary]} | {i for i, (p, _) in enumerate(places) if p.phase != "start" and p.boundary == boundary}
    good, bad = ckpts.read_places(repo, [places[i] for i in sorted(picked)])
    ckpts.warn_bad(bad)
    return good


def _loop_timing(infos: list, loop: str) -> dict | None:
    """Iterations of ``loop`` and seconds spent in it and in its inner loops, from the
    times of its checkpoints (no tables read): the end state is always checkpointed, at
    boundary = iterations; inner-loop time is the mean gap from an iteration's start to
    its last "after" checkpoint, over the iterations that have both. None when the
    manifests lack times."""
    starts = {c.boundary: c.manifest.time for c in infos if c.loop == loop and c.phase == "start" and c.manifest}
    afters: dict[int, float] = {}
    for c in infos:
        if c.loop == loop and c.phase != "start" and c.manifest and c.manifest.time is not None:
            afters[c.boundary] = max(afters.get(c.boundary, 0.0), c.manifest.time)
    if not starts or None in starts.values() or 0 not in starts:
        return None
    iterations = max(starts)
    gaps = [afters[i] - starts[i] for i in afters if i in starts and afters[i] >= starts[i]]
    loop_s = max(0.0, starts[iterations] - starts[0])
    inner = (sum(gaps) / len(gaps)) * iterations if gaps else 0.0
    return {"iterations": iterations, "loop": loop_s, "inner": min(inner, loop_s)}


def _loop_timing_from_tables(repo: GitRepo, stored: runs.StoredRun, loop: str) -> dict:
    """Iterations of ``loop`` and seconds spent in it and in loops directly inside it."""
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
    """Today's version of ``script`` (a path already confined to the working tree)."""
    if not repo.workdir:
        return None
    try:
        with open(os.path.join(repo.workdir, script)) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None
