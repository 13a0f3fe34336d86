"""`mlvc log [PATH]`: the history of artifacts, read from git's object database.

No checkout and no `git` process per commit: commits come from
`GitRepo.walk` (dulwich), and for each commit only the subtrees whose ids
differ from its first parent's are opened, so a commit costs a few tree reads
whatever the size of the repository.  Pointer blobs are parsed once per blob
id (unchanged pointers share a blob across commits).

`report()` builds the "what changed this week" view: per commit, the
artifacts that changed, the parameters that changed (params files) and the
metrics recorded (metrics files and pointer meta).  A metrics file is one named
`metrics.json`, `metrics.yaml` or `metrics.yml`, or listed under `metrics:` in
`.mlvc/config`: committed to git anywhere in the repository, or inside a tracked
artifact (at its top level, or at a listed path), read from the cache.
"""

from __future__ import annotations

import posixpath
import re
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from collections.abc import Collection, Iterator, Mapping
from typing import Any, TYPE_CHECKING

from .. import pointer as pointers
from ..errors import MlvcError, PointerError
from .params import (DEFAULT_METRICS_FILES, ID_META, MAX_PARAMS_BYTES, ParamChange, compare, flatten, metrics_files,
                     params_files, parse_values)

if TYPE_CHECKING:
    from ..git import CommitInfo, GitRepo
    from ..repo import Repo
    from ..store.types import ObjectReader

METRICS_NAMES = frozenset(DEFAULT_METRICS_FILES)  # read wherever they are (git, or inside an artifact)

_UNITS = {
    "second": 1, "sec": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600,
    "day": 86400, "d": 86400, "week": 7 * 86400, "w": 7 * 86400, "month": 30 * 86400,
    "year": 365 * 86400, "y": 365 * 86400,
}
_RELATIVE = re.compile(r"^\s*(\d+)\s*[. ]?\s*([a-z]+?)s?(?:[. ]+ago)?\s*$")


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """`7.days`, `2 weeks ago`, `3d`, `yesterday`, `2024-05-01`, an ISO date-time."""
    if text is None or text == "":
        return None
    now = now or datetime.now(timezone.utc)
    t = text.strip().lower()
    if t in ("today", "midnight"):
        local = datetime.now().astimezone()
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    if t == "yesterday":
        return now - timedelta(days=1)
    m = _RELATIVE.match(t)
    if m and m.group(2) in _UNITS:
        return now - timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MlvcError(f"cannot understand the date {text!r}",
                        hint="use e.g. 7.days, 2.weeks, yesterday, 2024-05-01 or 2024-05-01T12:00") from None
    return dt if dt.tzinfo else dt.astimezone()


@dataclass
class LogEntry:
    commit: str
    short: str
    date: str  # ISO 8601 with the author's offset
    author: str
    message: str
    path: str  # artifact path
    change: str  # added / modified / removed / invalid / moved (`mlvc mv`, followed by `log PATH`)
    id: str | None = None
    size: int | None = None
    files: int | None = None
    kind: str | None = None
    role: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # the pointer's meta
    error: str | None = None
    source: dict[str, object] | None = None  # an imported artifact's source: url, path, rev, commit
    moved_from: str | None = None  # change "moved": the artifact's path before this commit

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class CommitReport:
    commit: str
    short: str
    date: str
    author: str
    message: str
    artifacts: list[LogEntry] = field(default_factory=list)
    params: list[ParamChange] = field(default_factory=list)
    metrics: dict[str, dict[str, object]] = field(default_factory=dict)  # source -> {key: value}

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class History:
    """Changed files per commit, from tree-to-tree comparisons (trees read through `GitRepo`)."""

    def __init__(self, git: GitRepo, watch_files: Collection[str], prefixes: list[str] | None,
                 watch_names: Collection[str] = frozenset()) -> None:
        self.git = git
        self._shallow = git.shallow_commits()
        self._trees: dict[bytes, dict[bytes, tuple[int, bytes]]] = {}
        self._blobs: dict[bytes, pointers.PointerFile | PointerError] = {}
        self._watch = {w.encode() for w in watch_files}
        self._watch_names = {n.encode() for n in watch_names}
        self._prefixes = [p.encode() for p in prefixes] if prefixes is not None else None

    def tree(self, sha: bytes | None) -> dict[bytes, tuple[int, bytes]]:
        if sha is None:
            return {}
        got = self._trees.get(sha)
        if got is None:
            if len(self._trees) > 20000:
                self._trees.clear()
            got = self._trees[sha] = self.git.tree_items(sha)
        return got

    def commit_trees(self, sha: str) -> tuple[bytes | None, bytes | None]:
        return self.git.commit_trees(sha, self._shallow)

    def _interesting_file(self, path: bytes) -> bool:
        if path.startswith(b".mlvc/"):
            return False
        if self._prefixes is not None:
            if not any(path == p or path.startswith(p.rstrip(b"/") + b"/") or path == p + b".mlvc"
                       for p in self._prefixes):
                return False
            return path.endswith(b".mlvc")
        return path.endswith(b".mlvc") or path in self._watch or path.rpartition(b"/")[2] in self._watch_names

    def _could_contain(self, dirpath: bytes) -> bool:
        if self._prefixes is None:
            return dirpath != b".mlvc/"
        return any(p.startswith(dirpath) or p.startswith(dirpath.rstrip(b"/") + b".mlvc")
                   or dirpath.startswith(p.rstrip(b"/") + b"/") for p in self._prefixes)

    def changed(self, new: bytes | None, old: bytes | None, prefix: bytes = b"",
                out: list[tuple[str, bytes | None, bytes | None]] | None = None
                ) -> list[tuple[str, bytes | None, bytes | None]]:
        """(path, old blob, new blob) of interesting regular files that differ."""
        out = [] if out is None else out
        if new == old:
            return out
        a, b = self.tree(old), self.tree(new)
        for name in set(a) | set(b):
            ea, eb = a.get(name), b.get(name)
            if ea == eb:
                continue
            path = prefix + name
            da = ea[1] if ea is not None and stat.S_ISDIR(ea[0]) else None
            db = eb[1] if eb is not None and stat.S_ISDIR(eb[0]) else None
            if (da is not None or db is not None) and self._could_contain(path + b"/"):
                self.changed(db, da, path + b"/", out)
            fa = ea[1] if ea is not None and stat.S_ISREG(ea[0]) else None
            fb = eb[1] if eb is not None and stat.S_ISREG(eb[0]) else None
            if fa != fb and self._interesting_file(path):
                out.append((path.decode("utf-8", "surrogateescape"), fa, fb))
        return out

    def blob(self, sha: bytes) -> bytes:
        return self.git.blob_bytes(sha)

    def pointer(self, sha: bytes, where: str) -> pointers.PointerFile | PointerError:
        got = self._blobs.get(sha)
        if got is None:
            try:
                got = pointers.PointerFile.parse(self.blob(sha), where)
            except PointerError as exc:
                got = exc
            except KeyError:
                got = PointerError(where, "blob missing from the git object database")
            self._blobs[sha] = got
        return got


def _git(repo: Repo) -> GitRepo:
    from ..git import GitRepo

    if not repo.has_git:
        raise MlvcError("`mlvc log` reads git history; this repository was set up with --no-scm")
    return GitRepo(repo.root)


def _prefix_of(repo: Repo, path: str | None) -> list[str] | None:
    if not path:
        return None
    rel = repo.rel(repo.resolve_user_path(path))
    if rel.endswith(pointers.SUFFIX):
        rel = rel[: -len(pointers.SUFFIX)]
    return [rel]


def _artifact_entry(info: CommitInfo, hist: History, rel: str, old: bytes | None, new: bytes | None) -> LogEntry:
    base = (info.sha, info.short, info.date.isoformat(), info.author, info.message)  # commit .. message
    fallback = rel[: -len(pointers.SUFFIX)]
    if new is None:
        assert old is not None  # changed() names only paths that differ
        change, blob = "removed", old
    else:
        change, blob = ("added" if old is None else "modified"), new
    ptr = hist.pointer(blob, f"{rel} at {info.short}")
    if isinstance(ptr, MlvcError):
        return LogEntry(*base, path=fallback, change="invalid" if new is not None else change, error=str(ptr))
    parent = posixpath.dirname(rel)
    path = posixpath.join(parent, ptr.path) if parent else ptr.path
    return LogEntry(*base, path=path, change=change, id=ptr.oid, size=ptr.size, files=ptr.files,
                    kind=ptr.kind, role=ptr.role, meta=dict(ptr.meta or {}),
                    source=ptr.source.as_dict() if ptr.source is not None else None)


def _walk(repo: Repo, git: GitRepo, path: str | None, since: datetime | None, rev: str, watch: set[str],
          watch_names: Collection[str] = frozenset()) -> tuple[History, Iterator[CommitInfo]]:
    return _walk_under(git, _prefix_of(repo, path), since, rev, watch, watch_names)


def _walk_under(git: GitRepo, prefixes: list[str] | None, since: datetime | None, rev: str, watch: set[str],
                watch_names: Collection[str] = frozenset()) -> tuple[History, Iterator[CommitInfo]]:
    hist = History(git, watch, prefixes, watch_names)
    if not git.has_commits() and rev == "HEAD":
        return hist, iter(())
    git.resolve(rev)  # unknown revision -> RevisionError before walking
    watch_paths = None
    if prefixes is not None:
        watch_paths = [prefixes[0], prefixes[0] + pointers.SUFFIX]
    return hist, git.walk(rev, paths=watch_paths, since=since)


def log(repo: Repo, path: str | None = None, since: str | datetime | None = None, max_count: int | None = None,
        rev: str = "HEAD", follow: bool = True) -> list[LogEntry]:
    """Artifact changes, newest commit first (one entry per changed artifact per commit).

    With `path` naming one artifact and `follow`, a commit that moved it there (`mlvc mv`: its
    pointer added with the id and kind of one the commit removed) is a "moved" entry, and the
    older commits are those of the artifact under its old path, as `git log --follow` does."""
    since_dt = parse_since(since) if isinstance(since, str) else since
    git = _git(repo)
    try:
        prefixes = _prefix_of(repo, path)
        out: list[LogEntry] = []
        shown = 0
        while True:
            hist, commits = _walk_under(git, prefixes, since_dt, rev, set())
            moved = None
            for info in commits:
                new, old = hist.commit_trees(info.sha)
                changes = hist.changed(new, old)
                if not changes:
                    continue
                for rel, a, b in sorted(changes):
                    entry = _artifact_entry(info, hist, rel, a, b)
                    if follow and prefixes and a is None and entry.id and rel == prefixes[0] + pointers.SUFFIX:
                        entry.moved_from = _moved_from(git, new, old, entry)
                        if entry.moved_from is not None:
                            entry.change, moved = "moved", (info.sha, entry.moved_from)
                    out.append(entry)
                shown += 1
                if (max_count is not None and shown >= max_count) or moved:
                    break
            if moved is None or (max_count is not None and shown >= max_count):
                return out
            parents = git.commit_info(moved[0]).parents
            if not parents:
                return out
            rev, prefixes = parents[0], [moved[1]]  # older commits: the artifact under its old path
    finally:
        git.close()


def _moved_from(git: GitRepo, new: bytes | None, old: bytes | None, entry: LogEntry) -> str | None:
    """The path of the artifact whose pointer the commit (trees `old` -> `new`) removed, or changed to
    another id, while adding `entry`'s with its old id and kind: what `mlvc mv` does (then perhaps an
    `mlvc add` of new data under the old name).  None when there is no such one."""
    hist = History(git, set(), None)
    for rel, a, b in sorted(hist.changed(new, old)):
        if a is None or not rel.endswith(pointers.SUFFIX):
            continue
        if b is not None:
            now = hist.pointer(b, rel)
            if not isinstance(now, pointers.PointerFile) or now.oid == entry.id:
                continue  # still there with the same data: a copy, not a move
        ptr = hist.pointer(a, rel)
        if isinstance(ptr, pointers.PointerFile) and ptr.oid == entry.id and ptr.kind == entry.kind:
            parent = posixpath.dirname(rel)
            return posixpath.join(parent, ptr.path) if parent else ptr.path
    return None


def report(repo: Repo, path: str | None = None, since: str | datetime | None = None, max_count: int | None = None,
           rev: str = "HEAD", contents: bool = True) -> list[CommitReport]:
    """Per commit (newest first): artifacts changed, params changed, metrics recorded (with
    `contents`, also those of metrics files inside artifacts, read from the cache)."""
    since_dt = parse_since(since) if isinstance(since, str) else since
    pfiles, mfiles = params_files(repo), metrics_files(repo)
    git = _git(repo)
    try:
        hist, commits = _walk(repo, git, path, since_dt, rev, set(pfiles) | set(mfiles), METRICS_NAMES)
        out: list[CommitReport] = []
        for info in commits:
            new, old = hist.commit_trees(info.sha)
            changes = hist.changed(new, old)
            if not changes:
                continue
            rep = CommitReport(info.sha, info.short, info.date.isoformat(), info.author, info.message)
            for rel, a, b in sorted(changes):
                if rel.endswith(pointers.SUFFIX):
                    entry = _artifact_entry(info, hist, rel, a, b)
                    rep.artifacts.append(entry)
                    metric_like: dict[str, object] = {k: v for k, v in flatten(entry.meta).items()
                                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
                    if metric_like and entry.change != "removed":
                        rep.metrics[entry.path] = metric_like
                    if contents and entry.change in ("added", "modified") and entry.id:
                        old_ptr = hist.pointer(a, rel) if a is not None else None
                        rep.metrics.update(_artifact_metrics(repo.store, entry, old_ptr, mfiles))
                elif rel in pfiles:
                    pa = parse_values(hist.blob(a), rel) if a else {}
                    pb = parse_values(hist.blob(b), rel) if b else {}
                    rep.params.extend(compare({(rel, k): v for k, v in (pa or {}).items()},
                                              {(rel, k): v for k, v in (pb or {}).items()}))
                elif (rel in mfiles or posixpath.basename(rel) in METRICS_NAMES) and b is not None:
                    values = parse_values(hist.blob(b), rel)
                    if values:
                        rep.metrics[rel] = values
            out.append(rep)
            if max_count is not None and len(out) >= max_count:
                break
        return out
    finally:
        git.close()


def _artifact_metrics(store: ObjectReader, entry: LogEntry, old: pointers.PointerFile | PointerError | None,
                      listed: list[str]) -> dict[str, dict[str, object]]:
    """{"<artifact>/<file>": values} of the metrics files inside an artifact version that differ
    from the previous version's: a file artifact that is one, or, in a directory artifact, those
    at its top level and those at paths `listed`.  Read from the cache; what it lacks is skipped."""
    from ..hashing import from_oid
    from .chunked_reader import ChunkedFile

    art = entry.path
    if entry.id is None:  # an unreadable pointer names nothing to read
        return {}
    try:
        if entry.kind == "file":
            if art not in listed and posixpath.basename(art) not in METRICS_NAMES:
                return {}
            if isinstance(old, pointers.PointerFile) and old.oid == entry.id:
                return {}
            wanted = [(from_oid(entry.id), entry.size or 0, art)]
        else:
            tree = store.tree(from_oid(entry.id)).entries
            before = (store.tree(from_oid(old.oid)).entries
                      if isinstance(old, pointers.PointerFile) and old.kind == "dir" else None)
            inner = sorted(set(METRICS_NAMES) | {p[len(art) + 1:] for p in listed if p.startswith(art + "/")})
            wanted = []
            for name in inner:
                e = tree.find(name)
                prior = before.find(name) if before is not None else None
                if e is not None and (prior is None or prior.file_id != e.file_id):
                    wanted.append((e.file_id, e.size, f"{art}/{name}"))
        out: dict[str, dict[str, object]] = {}
        for fid, size, source in wanted:
            if size > MAX_PARAMS_BYTES:
                continue
            with ChunkedFile.for_file(store, fid, posixpath.basename(source)) as f:
                values = parse_values(f.read(), source)
            numeric: dict[str, object] = {k: v for k, v in (values or {}).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if numeric:
                out[source] = numeric
        return out
    except MlvcError:  # not in the cache (a clone that pulled nothing): the pointer is all there is
        return {}


# ------------------------------------------------------------------ rendering


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    from ..units import human_size

    return human_size(n)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return repr(v)  # what the user wrote: 2.0 stays 2.0, 0.001 stays 0.001
    return str(v)


def _meta_text(meta: Mapping[str, object]) -> str:
    """Pointer meta on one line: `key=value` leaves (nested keys dotted), module and block ids
    counted (`--json` has them)."""
    parts = [f"{k}={_fmt(v)}" for k, v in flatten({k: v for k, v in meta.items()
                                                   if k not in ID_META}).items()]
    for key in ID_META:
        ids = meta.get(key)
        n = len(flatten(ids)) if isinstance(ids, dict) else 0
        if n:
            parts.append(f"[{n} {key[:-1]} id{'s' if n != 1 else ''}]")
    return " ".join(parts)


def render_text(entries: list[LogEntry]) -> str:
    lines: list[str] = []
    last = None
    for e in entries:
        if e.commit != last:
            if last is not None:
                lines.append("")
            lines.append(f"commit {e.commit}")
            lines.append(f"Author: {e.author}")
            lines.append(f"Date:   {e.date}")
            lines.append(f"    {e.message}")
            last = e.commit
        if e.error:
            lines.append(f"  {e.change:8} {e.path}: {e.error}")
            continue
        if e.moved_from:
            lines.append(f"  {e.change:8} {e.moved_from} -> {e.path}  {e.id}")
            continue
        meta = _meta_text(e.meta)
        lines.append(f"  {e.change:8} {e.path}  {e.id}  {_size(e.size)}  {e.role or '-'}"
                     + (f"  {meta}" if meta else ""))
    return "\n".join(lines)


def render_markdown(reports: list[CommitReport], since: str | None = None) -> str:
    title = f"# What changed since {since}" if since else "# What changed"
    lines = [title, "", f"{len(reports)} commit{'s' if len(reports) != 1 else ''} with artifact, parameter "
             "or metric changes.", ""]
    for r in reports:
        lines.append(f"## `{r.short}` {r.message}")
        lines.append("")
        lines.append(f"{r.author}, {r.date}")
        lines.append("")
        if r.artifacts:
            lines.append("| artifact | change | size | role | id |")
            lines.append("|---|---|---|---|---|")
            for e in r.artifacts:
                ident = f"`{e.id[7:19]}`" if e.id else (e.error or "-")
                lines.append(f"| `{e.path}` | {e.change} | {_size(e.size)} | {e.role or '-'} | {ident} |")
            lines.append("")
        if r.params:
            lines.append("**Parameters**")
            lines.append("")
            for p in r.params:
                old = "-" if p.old is None else _fmt(p.old)
                new = "-" if p.new is None else _fmt(p.new)
                lines.append(f"- `{p.key}` ({p.source}): {old} → {new}")
            lines.append("")
        if r.metrics:
            lines.append("**Metrics**")
            lines.append("")
            for source, values in r.metrics.items():
                shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
                lines.append(f"- {source}: {shown}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
