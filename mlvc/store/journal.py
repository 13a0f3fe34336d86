"""The push journal: what each push published, so a remote gc never deletes it behind the pusher's back.

A remote gc reads reachability from its own git refs, which may be older than what a concurrent
pusher has just published (`git push`, then `mlvc push`, while the gc's clone has not fetched
yet).  So every push, still under its shared lock and after its last index is published, writes
one small immutable record naming the roots it published (the pointer ids) and the commits they
came from::

    journal/<created ns, 20 digits>-<commit sha | "multi" | "none">-<uuid>.json
    {"format": 1, "created": <unix s>, "roots": [{"kind": "dir", "id": "xxh128:..."}], "commits": [...]}

The commit is in the name so that gc decides from one listing which records it must read.
`mlvc.ops.gc` (see `protecting`) and docs/concepts/storage-format.md say how gc uses them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass

from ..errors import CorruptJournalError
from ..hashing import from_oid
from .backend import Backend

JOURNAL = "journal/"
FORMAT = 1
RETENTION_S = 7 * 24 * 3600.0
"""How long a record protects roots whose commit the gc's git does not know (and when gc prunes it)."""

_NAME = re.compile(r"^journal/(\d{20})-([0-9a-f]{40}|multi|none)-([0-9a-f]{32})\.json$")
_KINDS = ("file", "dir")


@dataclass(frozen=True)
class JournalRoot:
    kind: str  # "file" | "dir", as in a pointer
    oid: str  # "xxh128:<32 hex>"


@dataclass(frozen=True)
class JournalName:
    """What a record's key says, without reading it."""

    key: str
    created: float  # the pusher's clock
    commit: str | None  # the one commit its roots came from; None for "multi" (read it) or "none"
    multi: bool


@dataclass(frozen=True)
class JournalRecord:
    key: str
    created: float
    roots: tuple[JournalRoot, ...]
    commits: tuple[str, ...]


def parse_name(key: str) -> JournalName | None:
    """None for keys that are not journal records (left alone)."""
    m = _NAME.match(key)
    if m is None:
        return None
    tag = m.group(2)
    return JournalName(key, int(m.group(1)) / 1e9, tag if len(tag) == 40 else None, tag == "multi")


def list_names(backend: Backend) -> list[JournalName]:
    return [n for n in map(parse_name, backend.list(JOURNAL)) if n is not None]


def write_record(backend: Backend, roots: list[JournalRoot], commits: list[str]) -> str:
    """Publish one record (atomically: readers never see half of it); returns its key."""
    commits = list(dict.fromkeys(commits))
    now = time.time()
    tag = commits[0] if len(commits) == 1 else ("multi" if commits else "none")
    key = f"{JOURNAL}{time.time_ns():020d}-{tag}-{uuid.uuid4().hex}.json"
    body = {"format": FORMAT, "created": now, "commits": commits,
            "roots": [{"kind": r.kind, "id": r.oid} for r in dict.fromkeys(roots)]}
    backend.put_bytes(key, json.dumps(body, sort_keys=True).encode())
    return key


def read_record(backend: Backend, name: JournalName) -> JournalRecord:
    """The record, checked; CorruptJournalError when it is not one we can read."""
    data = backend.get_bytes(name.key)
    try:
        body = json.loads(data)
        if body.get("format") != FORMAT:
            raise ValueError(f"format {body.get('format')!r}, expected {FORMAT}")
        roots = []
        for r in body["roots"]:
            if r["kind"] not in _KINDS:
                raise ValueError(f"root kind {r['kind']!r}")
            from_oid(r["id"])  # validated before it is ever looked up
            roots.append(JournalRoot(r["kind"], r["id"]))
        commits = tuple(str(c) for c in body.get("commits") or ())
        if any(not re.fullmatch(r"[0-9a-f]{40}", c) for c in commits):
            raise ValueError("a commit that is not a 40-hex sha")
        return JournalRecord(name.key, float(body["created"]), tuple(roots), commits)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CorruptJournalError(name.key, backend.describe(), str(exc)) from None


__all__ = ["JOURNAL", "RETENTION_S", "JournalName", "JournalRecord", "JournalRoot", "list_names", "parse_name",
           "read_record", "write_record"]
