"""Loop-carried state: the plain Python variables a checkpointed loop carries from one
iteration to the next, found by static analysis of the loop.

A checkpoint restores the objects passed to ``flor.checkpointing`` and the RNG states,
but a replay that starts at iteration *k* (or skips an iteration's inner loops) also
needs what earlier iterations left in variables: ``best_acc``, a ``history`` list, an
early-stopping counter, a manual learning rate, ``global_step``, the last ``loss`` of an
inner loop. A variable is *carried* when the loop body changes it (assigns it anywhere,
inner loops included, or mutates it: ``history.append(...)``, ``d[k] = ...``) and some
code needs the changed value:

- it is read in an iteration before the body assigns it (``best_acc = max(best_acc,
  acc)``, ``global_step += 1``): the next iteration reads this one's value;
- it is read after the loop (``print(best_acc)``);
- it is read in the body outside the inner loops (``flor.log("loss", loss)`` after the
  step loop): an outer-level replay skips the inner loops and must restore it.

The recorder stores those variables' values with each checkpoint (florgit's state-tree
encoding; never pickle) and replay puts them back. Values that can't be stored that way
are named in the checkpoint as *inexact*, and the replay plan lists them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

MUTATING_METHODS = frozenset(
    {"append", "extend", "insert", "pop", "remove", "clear", "update", "setdefault", "popitem", "add",
     "discard", "sort", "reverse", "appendleft", "extendleft", "popleft", "__setitem__", "__delitem__"}
)  # fmt: skip


@dataclass
class LoopState:
    carried: list[str]  # variables to store with each checkpoint, in first-seen order
    changed_in_inner: set[str] = field(default_factory=set)  # assigned or mutated inside inner loops


def find_loop(tree: ast.AST, line: int) -> ast.For | None:
    """The ``for ... in ...loop(...)`` statement whose iterable starts on ``line``."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor)) and _is_loop_call(node.iter) and node.iter.lineno <= line <= (node.iter.end_lineno or line):
            return node
    return None


def loop_state_named(source: str, loop_name: str) -> LoopState | None:
    """:func:`loop_state` of the one ``flor.loop(loop_name, ...)`` in ``source``."""
    tree = ast.parse(source)
    lines = [
        node.iter.lineno for node in ast.walk(tree)
        if isinstance(node, (ast.For, ast.AsyncFor)) and _is_loop_call(node.iter) and node.iter.args
        and isinstance(node.iter.args[0], ast.Constant) and node.iter.args[0].value == loop_name
    ]  # fmt: skip
    return loop_state(source, lines[0]) if len(lines) == 1 else None


def _is_loop_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "loop") or (isinstance(func, ast.Name) and func.id == "loop")


def loop_state(source: str, line: int, exclude: set[str] | frozenset[str] = frozenset()) -> LoopState | None:
    """What the loop at ``line`` carries (None when there is no such loop)."""
    tree = ast.parse(source)
    loop = find_loop(tree, line)
    if loop is None:
        return None
    scope = _enclosing_body(tree, loop)
    after = _statements_after(scope, loop)
    own_targets = _stored_names(loop.target)
    changed, changed_inner = _changes(loop.body)
    read_after = {n for stmt in after for n in _loaded_names(stmt)}
    read_outside_inner = {n for stmt in loop.body for n in _loaded_names(stmt, skip_loops=True)}
    exposed = _upward_exposed(loop.body)
    wanted = (read_after | exposed | (read_outside_inner & changed_inner)) & changed
    definitions = _defined_names(loop.body) | _checkpointed_around(tree, loop)
    order = list(dict.fromkeys(n for stmt in loop.body for n in _all_names(stmt)))
    keep = [n for n in order if n in wanted and n not in own_targets and n not in exclude and n not in definitions]
    return LoopState(keep, changed_inner - definitions - set(exclude))


def _enclosing_body(tree: ast.AST, target: ast.stmt) -> list[ast.stmt]:
    """The function (or module) body the loop is in: code after the loop in that scope
    reads what the loop left."""
    best: list[ast.stmt] = tree.body  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(n is target for n in ast.walk(node)):
            best = node.body  # the innermost one wins: ast.walk goes outside in
    return best


def _statements_after(body: list[ast.stmt], target: ast.stmt) -> list[ast.stmt]:
    """Statements that run after ``target`` within ``body``: those after the top-level
    statement holding it, and those after it inside that statement's blocks."""
    out: list[ast.stmt] = []

    def visit(stmts: list[ast.stmt]) -> bool:
        for i, stmt in enumerate(stmts):
            if stmt is target:
                out.extend(stmts[i + 1 :])
                return True
            for name in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, name, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt) and visit(inner):
                    out.extend(stmts[i + 1 :])
                    return True
            for handler in getattr(stmt, "handlers", []) or []:
                if visit(handler.body):
                    out.extend(stmts[i + 1 :])
                    return True
        return False

    visit(body)
    return out


def _changes(body: list[ast.stmt]) -> tuple[set[str], set[str]]:
    """Names the body assigns or mutates, and those changed inside inner loops."""
    changed: set[str] = set()
    inner: set[str] = set()

    def visit(node: ast.AST, in_loop: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return  # their own scopes
        names: set[str] = set()
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = _base_name(node.value)
            if base:
                names.add(base)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATING_METHODS:
            base = _base_name(node.func.value)
            if base:
                names.add(base)
        elif isinstance(node, ast.AugAssign):
            base = _base_name(node.target)
            if base:
                names.add(base)
        changed.update(names)
        if in_loop:
            inner.update(names)
        nested = in_loop or isinstance(node, (ast.For, ast.AsyncFor, ast.While))
        for child in ast.iter_child_nodes(node):
            visit(child, nested if child is not getattr(node, "iter", None) else in_loop)

    for stmt in body:
        visit(stmt, False)
    return changed, inner


def _base_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _loaded_names(node: ast.AST, skip_loops: bool = False) -> set[str]:
    found: set[str] = set()

    def visit(n: ast.AST) -> None:
        if skip_loops and isinstance(n, (ast.For, ast.AsyncFor, ast.While)):
            visit(n.iter) if isinstance(n, (ast.For, ast.AsyncFor)) else visit(n.test)
            return
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            found.add(n.id)
        elif isinstance(n, ast.AugAssign):
            base = _base_name(n.target)
            if base:
                found.add(base)
        for child in ast.iter_child_nodes(n):
            visit(child)

    visit(node)
    return found


def _upward_exposed(body: list[ast.stmt]) -> set[str]:
    """Names read in the body before an unconditional top-level assignment of them:
    what an iteration reads from the previous one (or from before the loop)."""
    assigned_at: dict[str, int] = {}
    for index, stmt in enumerate(body):
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                for name in _stored_names(target):
                    assigned_at.setdefault(name, index)
    exposed: set[str] = set()
    for index, stmt in enumerate(body):
        value_reads = _loaded_names(stmt.value) if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value else _loaded_names(stmt)
        for name in value_reads:
            if assigned_at.get(name, len(body)) >= index:
                exposed.add(name)
    return exposed


def _stored_names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _defined_names(body: list[ast.stmt]) -> set[str]:
    """Functions, classes and modules bound in the body: not data to carry."""
    out: set[str] = set()
    for node in (n for stmt in body for n in ast.walk(stmt)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


def _all_names(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def statement_reads(statement_source: str) -> set[str]:
    """Names a (new) statement reads."""
    try:
        tree = ast.parse(statement_source.strip())
    except SyntaxError:
        return set()
    return _loaded_names(tree)


def _checkpointed_around(tree: ast.AST, loop: ast.stmt) -> set[str]:
    """Names passed to the ``flor.checkpointing(model=model, ...)`` blocks around the
    loop: their state is in the checkpoint already."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(n is loop for n in ast.walk(node)):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and _called_name(call) == "checkpointing":
                    out.update(kw.value.id for kw in call.keywords if isinstance(kw.value, ast.Name))
    return out


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
