"""Where florgit keeps things: ref names, paths inside trees, run ids, spool folders."""

from __future__ import annotations

import os
import secrets
import time

from florgit.codec import schemas

SHADOW_REF = "refs/heads/flor.shadow"
NOTES_REF = "refs/notes/flor"
# Checkpoints hang off their own ref so sharing logs never moves checkpoint bytes.
CHECKPOINTS_REF = "refs/flor/checkpoints"
CURATION_REF = "refs/flor/curation"  # tags, notes and shared removals of runs (store.curation)
REMOVED_REF = "refs/flor/removed"  # this clone's removals (store.tombstones)
CHECKPOINT_BLOBS = "blobs"  # content-addressed chunks: blobs/<2 hex>/<38 hex>
CHECKPOINT_INDEX = os.path.join("flor", "checkpoint-index")  # raw sha1 -> chunks, for dedup
# While a run goes, its code snapshot's tree hangs here so `git gc` cannot prune it. The ref
# names the tree itself: a commit of it would be left unreachable when the run ends, and a
# sweep's thousands of those keep `git gc --auto` warning (too many unreachable loose
# objects) after every commit of the user's for two weeks.
PENDING_PREFIX = "refs/flor/pending/"

RUNS_DIR = "runs"
# What a run listing derives from: a memo of one is keyed by these trees' ids.
LISTING_SOURCES = ((SHADOW_REF, RUNS_DIR), (CURATION_REF, ""), (REMOVED_REF, ""))
META_FILE = "meta.json"
CODE_DIR = "code"
# Ranks 1.. of a multi-process run store their own meta.json and tables in ranks/<rank>/.
RANKS_DIR = "ranks"
# A run's tables: Arrow IPC streams, the same files in the spool and in the run's tree.
RECORDS = "records.arrows"
LOOPS = "loops.arrows"
STARTS = "starts.arrows"
ENDS = "ends.arrows"
TABLES = (LOOPS, STARTS, ENDS, RECORDS)
TABLE_COLUMNS = {LOOPS: schemas.LOOPS, STARTS: schemas.STARTS, ENDS: schemas.ENDS, RECORDS: schemas.RECORDS}

SPOOL_DIR = os.path.join("flor", "spool")
SPOOL_LOCK = "lock"
SPOOL_META = "meta.json"
# Where rank 0 of a multi-process launch publishes the run id the other ranks join.
LAUNCHES_DIR = os.path.join("flor", "launches")


def new_run_id(now: float | None = None) -> str:
    """``YYYYMMDD-HHMMSS.mmm-<8 hex>``: readable, sorts by start time, and unique without
    coordination (32 random bits on top of the millisecond)."""
    now = time.time() if now is None else now
    millis = int(now * 1000) % 1000
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}.{millis:03d}-{secrets.token_hex(4)}"


def run_path(run_id: str) -> str:
    """``runs/<day>/<xx>/<run>``: grouped by day, then fanned out over 256 folders by the
    first two hex digits of the run's random part, so storing a run rewrites a few small
    trees (a day's folder holds at most 256 entries), however many runs a day has."""
    return f"{RUNS_DIR}/{run_id[:8]}/{run_id[-8:-6]}/{run_id}"


def legacy_run_path(run_id: str) -> str:
    """``runs/<day>/<run>``, where florgit before the fan-out stored runs; still read."""
    return f"{RUNS_DIR}/{run_id[:8]}/{run_id}"


def run_paths(run_id: str) -> tuple[str, str]:
    """Where a run can be: today's path first, then the legacy one."""
    return run_path(run_id), legacy_run_path(run_id)


def spool_root(git_dir: str) -> str:
    return os.path.join(git_dir, SPOOL_DIR)


def spool_name(run_id: str, rank: int = 0) -> str:
    """A run's spool folder: its id, and ``~<rank>`` for ranks other than 0 of a launch."""
    return run_id if rank == 0 else f"{run_id}~{rank}"


def pending_ref(run_id: str) -> str:
    return PENDING_PREFIX + run_id
