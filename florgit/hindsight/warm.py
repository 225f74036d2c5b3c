"""Warm replay workers: pay a script's imports once, not once per task.

A replay task used to be a fresh ``python script.py``: ~2.5 s of importing torch before
any work. Here one *zygote* process imports the third-party modules the scripts import
(found with ``ast``), then forks one child per task. The child starts from the state
right after those imports, so everything the script itself does (seeding RNGs, module
globals, argv, its own local modules) is fresh in every task, as in a new interpreter:

- the child sets argv, the working folder, the environment and ``sys.path[0]`` as
  ``python script.py`` would, reseeds ``random`` and numpy's global RNG from the OS (a
  fresh interpreter's are unseeded too; torch's default seed is fixed either way), runs
  the script as ``__main__`` and exits like the interpreter does (non-daemon threads
  joined, ``atexit`` handlers run);
- its stdout and stderr go to a file the parent reads, like the output of a subprocess.

Forking is only safe in a process that has one Python thread and no CUDA context (the
native thread pools of BLAS and torch re-create themselves after fork, as they do for
torch's DataLoader workers): the zygote checks after its imports and, when forking is unsafe (or the platform has no ``fork``,
or is macOS), says so and the executor starts plain processes instead.

The protocol runs on two pipes (not stdout, which imported libraries may print to): the
parent writes one JSON request per line, the zygote answers with a JSON line per
finished child, after one first line saying whether it is warm.
"""

from __future__ import annotations

import ast
import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass

NEVER_PREIMPORTED = frozenset({"florgit", "__future__", "__main__"})
# Modules a library imports lazily on first use, as costly as the library itself: torch's
# optimizers import torch._dynamo (~2.4 s) the first time one is built.
LAZY_IMPORTS = {"torch": ("torch._dynamo",)}


def imported_modules(sources: Iterable[str], local_roots: Iterable[str]) -> list[str]:
    """Absolute imports at module level (not inside functions or classes) of every
    source, minus modules found in ``local_roots`` (the user's own code is part of the
    script: it runs fresh in each task)."""
    roots = list(local_roots)
    found: dict[str, None] = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for node in _module_level(tree.body):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in NEVER_PREIMPORTED and not _is_local(top, roots):
                    found[name] = None
    return list(found)


def _module_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    yield from _module_level(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _is_local(top: str, roots: list[str]) -> bool:
    return any(os.path.exists(os.path.join(r, top + ".py")) or os.path.isdir(os.path.join(r, top)) for r in roots)


def fork_unsafe() -> str | None:
    """Why forking this process could break the children, or None when it is safe."""
    if not hasattr(os, "fork"):
        return "this platform has no fork"
    if sys.platform == "darwin":
        return "macOS system libraries are not safe to use after fork"
    if threading.active_count() > 1:
        return "an imported module started threads"
    torch = sys.modules.get("torch")
    if torch is not None and getattr(getattr(torch, "cuda", None), "is_initialized", lambda: False)():
        return "CUDA is already initialised"
    return None


# -- the parent's side -------------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int


class Zygote:
    """A started zygote; :meth:`run` may be called from several threads at once."""

    def __init__(self, modules: list[str], env: dict[str, str], cwd: str) -> None:
        req_r, self._req_w = os.pipe()
        self._res_r, res_w = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "florgit.hindsight.warm", str(req_r), str(res_w), json.dumps(modules)],
            cwd=cwd, env=env, pass_fds=(req_r, res_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(req_r)
        os.close(res_w)
        self._results = os.fdopen(self._res_r, "r", encoding="utf-8")
        hello = self._results.readline()
        try:
            first = json.loads(hello) if hello else {}
        except ValueError:
            first = {}
        self.warm: bool = bool(first.get("warm"))
        self.why: str = str(first.get("why") or ("it did not start" if not hello else ""))
        imported = first.get("imported")
        self.imported: list[str] = [str(m) for m in imported] if isinstance(imported, list) else []
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[threading.Event, list[int]]] = {}
        self._next = 0
        if self.warm:
            threading.Thread(target=self._read, name="florgit-zygote-reader", daemon=True).start()
        else:
            self.close()

    def run(
        self, script: str, argv: list[str], cwd: str, env: dict[str, str], output: str,
        *, module: bool = False, path: list[str] | None = None,
    ) -> Outcome:
        """Run ``script`` (a module's name when ``module``) in a forked child; ``path`` goes
        first on its ``sys.path`` (the script's folder by default)."""
        done, code = threading.Event(), [1]
        with self._lock:
            self._next += 1
            ident = self._next
            self._waiting[ident] = (done, code)
            line = json.dumps({
                "id": ident, "script": script, "argv": argv, "cwd": cwd, "env": env, "out": output,
                "module": module, "path": path or [os.path.dirname(os.path.abspath(os.path.join(cwd, script)))],
            })  # fmt: skip
            os.write(self._req_w, (line + "\n").encode())
        done.wait()
        return Outcome(code[0])

    def _read(self) -> None:
        for line in self._results:
            try:
                answer = json.loads(line)
                done, code = self._waiting.pop(answer["id"])
            except (ValueError, KeyError):
                continue
            code[0] = int(answer.get("rc", 1))
            done.set()
        for done, code in list(self._waiting.values()):  # the zygote died: fail what waits
            code[0] = 1
            done.set()

    def close(self) -> None:
        try:
            os.close(self._req_w)  # EOF: the zygote exits once its children have
        except OSError:
            pass
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# -- the zygote's side -------------------------------------------------------------------


def _zygote(req_fd: int, res_fd: int, modules: list[str]) -> None:
    import importlib

    imported = []
    lazy = [extra for name in modules for extra in LAZY_IMPORTS.get(name.split(".")[0], ())]
    for name in [*modules, *dict.fromkeys(lazy)]:
        try:
            importlib.import_module(name)
            imported.append(name)
        except BaseException:  # noqa: BLE001 - a module that fails to import is the script's business
            continue
    why = fork_unsafe()
    _answer(res_fd, {"warm": why is None, "why": why, "imported": imported})
    if why is not None:
        return
    children: dict[int, int] = {}
    pending = b""
    open_requests = True
    while open_requests or children:
        if open_requests and select.select([req_fd], [], [], 0.02)[0]:
            chunk = os.read(req_fd, 1 << 16)
            if not chunk:
                open_requests = False
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    os.close(req_fd)
                    os.close(res_fd)
                    _child(request)  # never returns
                children[pid] = request["id"]
        elif not open_requests:
            select.select([], [], [], 0.02)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            ident = children.pop(pid, None)
            if ident is not None:
                _answer(res_fd, {"id": ident, "rc": os.waitstatus_to_exitcode(status)})


def _answer(fd: int, message: dict) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def _child(request: dict) -> None:
    code = 1
    try:
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        code = _run_script(request["script"], request["argv"], request["module"], request["path"])
    except BaseException:  # noqa: BLE001 - whatever happens, the child must end here
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _run_script(script: str, argv: list[str], module: bool, path: list[str]) -> int:
    import atexit
    import random
    import runpy

    sys.argv = [script, *argv]  # run_module puts the module's file in argv[0], as -m does
    sys.path[0:1] = path
    random.seed()  # a fresh interpreter's random module is seeded from the OS
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    code = 0
    try:
        if module:
            runpy.run_module(script, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: BLE001 - reported by the excepthook, exit 1, as the interpreter does
        sys.excepthook(*sys.exc_info())
        code = 1
    shutdown = getattr(threading, "_shutdown", None)  # joins non-daemon threads, as at exit
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    return code


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    _zygote(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))
