"""Sharing runs through any git remote: push and pull florgit's refs with the git CLI.

Pushing never forces: it fetches the remote's flor refs into tracking refs
(``refs/flor/remotes/<remote>/...``), union-merges them into the local refs (run paths
never collide; notes lines are unioned), pushes, and retries when someone pushed in
between. Checkpoints travel only when asked, so sharing logs stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

from florgit import validation
from florgit.errors import StoreError
from florgit.git import GitRepo
from florgit.git.command import GitCommandError, ensure_config, remove_config, run_git
from florgit.store import layout, quarantine
from florgit.store.curation import CURATION_REF

PUSH_ATTEMPTS = 8


@dataclass(frozen=True)
class SharedRef:
    local: str
    name: str  # tracking ref suffix
    union_lines: bool = False  # blobs changed on both sides keep every line of both


LOGS = (
    SharedRef(layout.SHADOW_REF, "shadow"),
    SharedRef(layout.NOTES_REF, "notes", union_lines=True),
    SharedRef(CURATION_REF, "curation", union_lines=True),  # tags and notes on runs
)
CHECKPOINTS = (SharedRef(layout.CHECKPOINTS_REF, "checkpoints"),)


def tracking_ref(remote: str, ref: SharedRef) -> str:
    return f"refs/flor/remotes/{remote}/{ref.name}"


def shared_refs(checkpoints: bool) -> tuple[SharedRef, ...]:
    return LOGS + (CHECKPOINTS if checkpoints else ())


def configure(repo: GitRepo, remote: str | None = None) -> list[str]:
    """What users would otherwise forget; returns the settings that changed."""
    cwd = _cwd(repo)
    changed = []
    for key, value, multi in (
        ("notes.rewriteRef", layout.NOTES_REF, True),
        ("notes.flor.mergeStrategy", "cat_sort_uniq", False),
    ):
        if ensure_config(cwd, key, value, multi=multi):
            changed.append(f"{key}={value}")
    if remote:
        key = f"remote.{remote}.fetch"
        for ref in LOGS:
            # An exact refspec makes every plain `git fetch` fail while the remote has no
            # such ref ("couldn't find remote ref"); a glob matches nothing and goes on.
            # Older florgit wrote exact ones: they are replaced.
            if remove_config(cwd, key, f"+{ref.local}:{tracking_ref(remote, ref)}"):
                changed.append(f"removed {key}=+{ref.local}:{tracking_ref(remote, ref)}")
            if ensure_config(cwd, key, fetch_spec(remote, ref), multi=True):
                changed.append(f"{key}={fetch_spec(remote, ref)}")
    return changed


def unconfigure(repo: GitRepo) -> list[str]:
    """Remove what :func:`configure` added (for ``git flor uninstall``); returns what went."""
    cwd = _cwd(repo)
    removed = []
    settings = [("notes.rewriteRef", layout.NOTES_REF), ("notes.flor.mergeStrategy", "cat_sort_uniq")]
    for remote in run_git(cwd, "remote").stdout.split():
        settings += [(f"remote.{remote}.fetch", fetch_spec(remote, ref)) for ref in LOGS]
    for key, value in settings:
        if remove_config(cwd, key, value):
            removed.append(f"{key}={value}")
    return removed


def fetch_spec(remote: str, ref: SharedRef) -> str:
    """The refspec plain `git fetch` uses for ``ref``: a glob, so a remote without it is fine."""
    return f"+{ref.local}*:{tracking_ref(remote, ref)}*"


def fetch(repo: GitRepo, remote: str, checkpoints: bool = False, progress: bool = False) -> list[SharedRef]:
    """Fetch the remote's flor refs into tracking refs; returns those the remote has."""
    check_remote(remote)
    cwd = _cwd(repo)
    wanted = shared_refs(checkpoints)
    listed = run_git(cwd, "ls-remote", remote, *(r.local for r in wanted)).stdout
    present = {line.split("\t")[1] for line in listed.splitlines() if "\t" in line}
    have = [r for r in wanted if r.local in present]
    if have:
        specs = [f"+{r.local}:{tracking_ref(remote, r)}" for r in have]
        run_git(cwd, "fetch", "--progress" if progress else "--quiet", "--no-tags", remote, *specs, show_stderr=progress)
    return have


FETCH_BATCH = 512  # object ids per `git fetch` command line


def fetch_objects(repo: GitRepo, remote: str, oids: list[str], progress: bool = False) -> None:
    """Fetch these objects (and what they reach) by id, without touching any ref: how a
    replay gets just the checkpoints it needs. The remote must let clients ask for objects
    by id (git's protocol v2 does for what its refs reach)."""
    check_remote(remote)
    for oid in oids:
        validation.oid(oid)  # data-derived arguments: 40 hex digits, never an option
    cwd = _cwd(repo)
    for start in range(0, len(oids), FETCH_BATCH):
        batch = oids[start : start + FETCH_BATCH]
        flags = ["--progress" if progress else "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc"]
        run_git(cwd, "-c", "protocol.version=2", "fetch", *flags, remote, *batch, show_stderr=progress)


def remotes_with_run(repo: GitRepo, run_id: str) -> list[str]:
    """Remotes whose last fetched runs include ``run_id`` (from the tracking refs)."""
    prefix, suffix = "refs/flor/remotes/", "/" + LOGS[0].name
    names = [r[len(prefix) : -len(suffix)] for r in repo.refs_under(prefix) if r.endswith(suffix)]
    return [n for n in names if any(repo.tree_at(tracking_ref(n, LOGS[0]), p) for p in layout.run_paths(run_id))]


def merge_tracking(repo: GitRepo, remote: str, refs: list[SharedRef] | tuple[SharedRef, ...]) -> dict[str, str]:
    """Union-merge each fetched tracking ref into its local ref. Runs that fail the
    checks are quarantined, not merged: they are reported as ``quarantined <run>: why``."""
    done = {}
    for ref in refs:
        tracking = tracking_ref(remote, ref)
        other = repo.ref_tip(tracking)
        if other is None:
            continue
        bad = quarantine.incoming_problems(repo, tracking) if ref.local == layout.SHADOW_REF else {}
        done[ref.local] = repo.merge_ref(ref.local, other, union_notes=ref.union_lines, exclude=frozenset(bad))
        if ref.local == layout.SHADOW_REF:
            quarantine.hold(repo, remote, bad)
            for path, why in bad.items():
                done[f"quarantined {path.rsplit('/', 1)[-1]}"] = why
    return done


def pull(repo: GitRepo, remote: str = "origin", checkpoints: bool = False, progress: bool = False) -> dict[str, str]:
    """Fetch and merge; the result also names each run a teammate removed or restored."""
    from florgit.store import tombstones, trust

    check_remote(remote)
    configure(repo, remote)
    before = tombstones.removed_by(repo)
    done = merge_tracking(repo, remote, fetch(repo, remote, checkpoints, progress))
    after = tombstones.removed_by(repo)
    own = trust.own_runs(repo) if set(after) - set(before) else frozenset()
    for run_id in sorted(set(after) - set(before)):
        mine = f"; it was recorded here, and `git flor rm --undo {run_id}` brings it back" if run_id in own else ""
        done[f"removed run {run_id}"] = f"by {after[run_id] or 'someone'}{mine}"
    for run_id in sorted(set(before) - set(after)):
        done[f"restored run {run_id}"] = "a teammate brought it back"
    return done


def push(repo: GitRepo, remote: str = "origin", checkpoints: bool = False, progress: bool = False) -> dict[str, str]:
    """Share the flor refs with ``remote``; never forced, retried when others push too."""
    check_remote(remote)
    configure(repo, remote)
    cwd = _cwd(repo)
    last_error = ""
    for _ in range(PUSH_ATTEMPTS):
        merge_tracking(repo, remote, fetch(repo, remote, checkpoints, progress))
        local = [r for r in shared_refs(checkpoints) if repo.ref_tip(r.local) is not None]
        if not local:
            return {}
        specs = [f"{r.local}:{r.local}" for r in local]
        flags = ["--progress"] if progress else []
        proc = run_git(cwd, "push", "--porcelain", "--no-verify", *flags, remote, *specs, check=False, show_stderr=progress)
        if proc.returncode == 0:
            return _push_results(proc.stdout)
        last_error = proc.stderr.strip() or proc.stdout.strip()
        if "rejected" not in proc.stdout and "rejected" not in last_error:
            raise GitCommandError(["push", remote, *specs], proc.returncode, last_error)
    raise StoreError(f"could not push flor refs to {remote!r}: others kept pushing ({last_error}); run `git flor push` again")


def _push_results(porcelain: str) -> dict[str, str]:
    out = {}
    for line in porcelain.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and ":" in parts[1]:
            flag = parts[0].strip()
            out[parts[1].split(":")[1]] = {"=": "up to date", "*": "new", " ": "updated", "": "updated"}.get(flag, parts[2])
    return out


def check_remote(remote: str) -> None:
    """A remote name or URL goes to git as an argument: never let it read as an option."""
    if not remote or remote.startswith("-") or any(c in remote for c in "\0\n"):
        raise StoreError(f"{remote!r} is not a remote name or URL; list remotes with `git remote -v`")


def _cwd(repo: GitRepo) -> str:
    return repo.workdir or repo.git_dir
