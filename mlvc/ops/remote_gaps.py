"""What the last fetch found missing on the remote: artifacts whose objects are in neither the
cache nor the remote they were fetched from.  `status` reads it, so that it does not suggest
`mlvc pull` where a pull cannot help (the objects must be pushed from the machine that has them).

Kept in `.mlvc/state/missing-on-remote.json` as {artifact id: remote name}: written by
every fetch (its failures added, its successes removed), atomically; a lost or damaged file
only means a less precise hint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..atomic import write_text

if TYPE_CHECKING:
    from ..repo import Repo

FILE = "missing-on-remote.json"
MAX_ENTRIES = 10_000  # a hint, not a database: the oldest entries go first


def lookup(repo: Repo) -> dict[str, str]:
    """{artifact id: the remote that lacked its objects}."""
    try:
        data = json.loads((repo.state_dir / FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def record(repo: Repo, remote: str, absent: Iterable[str], present: Iterable[str]) -> None:
    """After a fetch from `remote`: the artifact ids whose objects it lacked, and those it completed."""
    absent, present = list(absent), set(present)
    known = lookup(repo)
    if not absent and not (present & known.keys()):
        return
    for oid in present:
        known.pop(oid, None)
    for oid in absent:
        known.pop(oid, None)
        known[oid] = remote
    while len(known) > MAX_ENTRIES:
        known.pop(next(iter(known)))
    path = repo.state_dir / FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(known))
    except OSError:
        pass  # only a hint is lost
