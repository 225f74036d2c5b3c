"""Carrying a new ``flor.log("NAME", ...)`` statement into an older version of a script.

The statement is found in today's code with ``ast``; its place is described by the chain
of ``flor.loop`` names around it and by its neighbouring statements. In the old version
the same loop chain is found, and the statement is inserted next to the neighbour that
matches (exactly, or as the one clearly best near-match), re-indented, as new lines: the
old version's formatting and comments stay as they were. Identifiers that the old
version spells differently are renamed when aligned lines show one unambiguous mapping.
Anything less certain is reported as unplaceable, never guessed.
"""

from __future__ import annotations

import ast
import difflib
import io
import tokenize
from dataclasses import dataclass, field

FUZZY = 0.8  # similarity a near-matching anchor needs, and it must be the only one


class Unplaceable(Exception):
    """The statement cannot be placed in that version with confidence."""


@dataclass
class Statement:
    name: str
    source: str  # the statement's lines, dedented
    loops: list[str]  # enclosing flor.loop names, outermost first
    before: list[str]  # normalised previous sibling statements, nearest first
    after: list[str]  # normalised next sibling statements, nearest first
    first_in_body: bool
    identifiers: set[str] = field(default_factory=set)  # names it reads that today's code defines
    code_lines: list[str] = field(default_factory=list)  # today's file, as token strings


def find_statements(code: str, name: str) -> list[Statement]:
    """Every ``*.log("name", ...)`` statement in ``code``."""
    tree = ast.parse(code)
    lines = code.splitlines()
    found: list[Statement] = []
    defined = _defined(code)

    def visit(body: list[ast.stmt], loops: list[str]) -> None:
        for i, stmt in enumerate(body):
            if _logs(stmt, name):
                src = _source(lines, stmt)
                found.append(
                    Statement(
                        name=name,
                        source=src,
                        loops=list(loops),
                        before=[_key(lines, s) for s in reversed(body[:i]) if not _logs(s, name)],
                        after=[_key(lines, s) for s in body[i + 1 :] if not _logs(s, name)],
                        first_in_body=i == 0,
                        identifiers=_identifiers(stmt) & defined,
                        code_lines=[" ".join(_tokens(ln.strip())) for ln in lines if ln.strip()],
                    )
                )
                continue
            for child_body, child_loops in _bodies(stmt, loops):
                visit(child_body, child_loops)

    visit(tree.body, [])
    return found


def place(statement: Statement, old_code: str) -> str:
    """``old_code`` with ``statement`` inserted at its matching place (or Unplaceable)."""
    if find_statements(old_code, statement.name):
        return old_code  # that version already logs it
    tree = ast.parse(old_code)
    lines = old_code.splitlines(keepends=True)
    source = _renamed(statement, old_code)
    at, indent = _place_in(statement, _matching_bodies(tree, statement.loops), lines)
    text = "".join(indent + ln + "\n" if ln.strip() else "\n" for ln in source.splitlines())
    return "".join(lines[:at]) + text + "".join(lines[at:])


def _matching_bodies(tree: ast.Module, loops: list[str]) -> list[list[ast.stmt]]:
    """Every statement list of the old version inside the same chain of flor.loop names
    (the module's, a function's, a ``with`` block's...), outermost first."""
    found: list[list[ast.stmt]] = []

    def visit(body: list[ast.stmt], chain: list[str]) -> None:
        if chain == loops and body:
            found.append(body)
        for stmt in body:
            for child, child_chain in _bodies(stmt, chain):
                if child_chain == loops[: len(child_chain)]:
                    visit(child, child_chain)

    visit(tree.body, [])
    if not found:
        where = " > ".join(loops) or "the top level"
        raise Unplaceable(f"no flor.loop chain {where} found where the statement belongs")
    return found


def _place_in(statement: Statement, bodies: list[list[ast.stmt]], lines: list[str]) -> tuple[int, str]:
    """Where the statement goes: the one body holding its nearest neighbour that matches.
    Neighbours that are themselves new ``log`` statements (added with it, not in this
    version) are passed over."""
    plain = [ln.rstrip("\n") for ln in lines]
    keyed = [(body, [_key(plain, s) for s in body]) for body in bodies]
    depth = max(len(statement.before), len(statement.after))
    for k in range(depth):  # nearest neighbours first, the previous one before the next one
        for side, neighbours in (("before", statement.before), ("after", statement.after)):
            if k >= len(neighbours):
                continue
            hits = [(body, i) for body, norms in keyed for i, n in enumerate(norms) if n == neighbours[k]]
            if not hits:  # no exact match anywhere: the one clearly best near-match
                hits = [(body, i) for body, norms in keyed if (i := _unique(neighbours[k], norms)) is not None]
            if len(hits) == 1:
                body, hit = hits[0]
                at = body[hit].end_lineno if side == "before" else body[hit].lineno - 1
                return at, _indent(lines[body[hit].lineno - 1])
            if len(hits) > 1:
                raise Unplaceable(f"its neighbour {neighbours[k][:60]!r} is in {len(hits)} places in that version")
    first = statement.first_in_body or all(key.startswith(_LOG_KEY_PREFIXES) for key in statement.before)
    if first and len(bodies) == 1:
        body = bodies[0]
        return body[0].lineno - 1, _indent(lines[body[0].lineno - 1])
    raise Unplaceable("none of the statement's neighbours is in that version")


_LOG_KEY_PREFIXES = ("flor . log (", "log (")


def _unique(target: str, norms: list[str]) -> int | None:
    exact = [i for i, n in enumerate(norms) if n == target]
    if len(exact) == 1:
        return exact[0]
    if exact:
        return None
    scored = sorted(((difflib.SequenceMatcher(None, target, n).ratio(), i) for i, n in enumerate(norms)), reverse=True)
    if scored and scored[0][0] >= FUZZY and (len(scored) == 1 or scored[1][0] < FUZZY):
        return scored[0][1]
    return None


def _renamed(statement: Statement, old_code: str) -> str:
    """The statement with identifiers renamed to the old version's spelling."""
    old_names = _defined(old_code)
    missing = {n for n in statement.identifiers if n not in old_names}
    if not missing:
        return statement.source
    mapping = _rename_map(statement, old_code, missing)
    unresolved = missing - set(mapping)
    if unresolved:
        raise Unplaceable(f"that version has no {', '.join(sorted(unresolved))} and no unambiguous renaming of it")
    return _substitute(statement.source, mapping)


def _rename_map(statement: Statement, old_code: str, missing: set[str]) -> dict[str, str]:
    # Evidence: lines of today's file that differ from a line of the old file by exactly one
    # identifier, the same way every time.
    new_lines = [s.split(" ") for s in statement.code_lines]
    old_lines = [_tokens(ln.strip()) for ln in old_code.splitlines() if ln.strip()]
    votes: dict[str, set[str]] = {}
    for new in new_lines:
        for old in old_lines:
            if len(new) != len(old) or new == old:
                continue
            diffs = {(a, b) for a, b in zip(new, old) if a != b}
            if len(diffs) == 1:
                a, b = next(iter(diffs))
                if a in missing and b.isidentifier():
                    votes.setdefault(a, set()).add(b)
    return {a: next(iter(bs)) for a, bs in votes.items() if len(bs) == 1}


def _substitute(source: str, mapping: dict[str, str]) -> str:
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string in mapping:
            tok = tok._replace(string=mapping[tok.string])
        out.append(tok)
    return tokenize.untokenize(out)


def _tokens(text: str) -> list[str]:
    try:
        toks = tokenize.generate_tokens(io.StringIO(text).readline)
        return [t.string for t in toks if t.string.strip() and t.type != tokenize.COMMENT]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return text.split()


def _defined(code: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _identifiers(stmt: ast.stmt) -> set[str]:
    """Names the statement reads from outside itself (not its own comprehension targets)."""
    nodes = list(ast.walk(stmt))
    own = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    own |= {a.arg for n in nodes if isinstance(n, ast.Lambda) for a in n.args.args}
    return {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - own


_COMPOUND = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _logs(stmt: ast.stmt, name: str) -> bool:
    """Is ``stmt`` itself (not a block around it) a statement logging ``name``?"""
    if isinstance(stmt, _COMPOUND):
        return False
    for node in ast.walk(stmt):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "log"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == name
        ):
            return True
    return False


def _loop_name(stmt: ast.For) -> str | None:
    it = stmt.iter
    if (
        isinstance(it, ast.Call)
        and isinstance(it.func, ast.Attribute)
        and it.func.attr == "loop"
        and it.args
        and isinstance(it.args[0], ast.Constant)
    ):
        return str(it.args[0].value)
    return None


def _bodies(stmt: ast.stmt, loops: list[str]):
    """Child statement lists of ``stmt``, with the loop chain inside each."""
    if isinstance(stmt, ast.For):
        name = _loop_name(stmt)
        yield stmt.body, loops + [name] if name else loops
        yield stmt.orelse, loops
    elif isinstance(stmt, (ast.If, ast.While)):
        yield stmt.body, loops
        yield stmt.orelse, loops
    elif isinstance(stmt, (ast.With, ast.AsyncWith)):
        yield stmt.body, loops
    elif isinstance(stmt, ast.Try):
        yield stmt.body, loops
        for handler in stmt.handlers:
            yield handler.body, loops
        yield stmt.orelse, loops
        yield stmt.finalbody, loops
    elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        yield stmt.body, loops


def _walk_stmts(body: list[ast.stmt]):
    for stmt in body:
        yield stmt
        for child, _loops in _bodies(stmt, []):
            yield from _walk_stmts(child)


def _source(lines: list[str], stmt: ast.stmt) -> str:
    chunk = lines[stmt.lineno - 1 : stmt.end_lineno]
    if not chunk:
        return ""
    pad = len(chunk[0]) - len(chunk[0].lstrip())
    return "\n".join(ln[pad:] if ln[:pad].strip() == "" else ln.lstrip() for ln in chunk)


def _key(lines: list[str], stmt: ast.stmt) -> str:
    """How a neighbour is recognised: a simple statement by its code, a block by its
    header line (its body may differ between versions), comments left out."""
    text = lines[stmt.lineno - 1] if isinstance(stmt, _COMPOUND) else _source(lines, stmt)
    return _norm(" ".join(_tokens(text)))


def _norm(text: str) -> str:
    return " ".join(text.split())


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]
