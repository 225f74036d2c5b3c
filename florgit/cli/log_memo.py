"""``git flor log``'s table as text, kept as a memo (store.memo) keyed by the runs it
shows (store.memo_keys): listing 10,000 unchanged runs then reads one file and
imports no polars. The memo is written by a plain ``git flor log`` whose listing left no
run out; filters, sorts and other formats (``--where``, ``--json``, ...) take the full path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from florgit.cli.runtable import Column, Listing
from florgit.store import memo, memo_keys

if TYPE_CHECKING:
    from florgit.git import GitRepo

NAME = "log"
VERSION = 1  # bump when what the table shows changes


def _key_extra() -> tuple:
    from florgit import __version__

    return NAME, VERSION, __version__


def key(repo: GitRepo) -> str:
    return memo_keys.listing_key(repo, *_key_extra())


def look_up() -> tuple[Listing | None, GitRepo | None, str | None]:
    """The remembered table of this repository's runs, found without pygit2 where it can
    be (store.memo_keys.look_up); on a miss, the opened repository and the key to keep
    the table under."""
    return memo_keys.look_up(None, load, *_key_extra())


def load(common_dir: str, memo_key: str) -> Listing | None:
    """The remembered table, when it is whole and well-formed (else None)."""
    payload = memo.read(common_dir, NAME, memo_key)
    if payload is None:
        return None
    try:
        data = json.loads(payload)
        run_ids, dates, statuses, values = data["run_id"], data["date"], data["status"], data["values"]
        columns = [Column(header, cells, numeric) for header, numeric, cells in values]
    except (ValueError, KeyError, TypeError):
        return None
    n = len(run_ids)
    texts = [run_ids, dates, statuses, *(c.cells for c in columns)]
    if not all(isinstance(t, list) and len(t) == n and all(isinstance(x, str) for x in t) for t in texts):
        return None
    if not all(isinstance(c.header, str) and isinstance(c.numeric, bool) for c in columns):
        return None
    return Listing(run_ids, dates, statuses, columns)


def save(repo: GitRepo, memo_key: str, listing: Listing) -> None:
    data = {
        "run_id": listing.run_ids,
        "date": listing.dates,
        "status": listing.statuses,
        "values": [[c.header, c.numeric, c.cells] for c in listing.values],
    }
    memo.write(repo.common_dir, NAME, memo_key, json.dumps(data, ensure_ascii=False).encode())
