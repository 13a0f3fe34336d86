"""`mlvc get`: copy a file or directory of a revision (usually another repository's, see
`mlvc.sources`) out as plain, untracked files.

Only the objects the selected files need are fetched: their file manifests in one batch, then
their chunks in batches of at most `BATCH_BYTES` (held in memory, not kept in a cache: each
byte is written once, where it goes), each object verified against its id.  Files are written
under a temp name beside the output and renamed into place only when every byte is there (a
directory as a whole), so a failed get leaves nothing behind and nothing is written outside
the output path (the source's mirror, in the user's cache, excepted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import TempNames, fsync_dir, sweep
from ..errors import ConflictError, DiskError, MlvcError, PathError
from ..hashing import from_oid
from ..store.packs import CHUNK, FILE_MANIFEST
from .object_source import ObjectSource, SourceStats
from .read import ARTIFACT, GIT, FileEntry, RevisionView, repo_path

Chunks = Sequence[tuple[bytes, int]]  # a file's (chunk id, length) list

if TYPE_CHECKING:
    from ..progress import Progress
    from ..repo import Repo

BATCH_BYTES = 64 * 1024 * 1024  # chunk bytes fetched per batch (held in memory until written)
COPY_BLOCK = 4 * 1024 * 1024


@dataclass
class GetResult:
    """What `get` wrote: `out` (absolute), files and bytes, and what the remote reads cost."""

    path: str  # the path in the repository
    out: Path
    kind: str  # "file" | "dir"
    files: int
    bytes: int
    source: str | None  # the repository's URL (None: a local one)
    rev: str | None  # the commit read
    fetched: SourceStats = field(default_factory=SourceStats)


def _selection(view: RevisionView, rel: str) -> tuple[str, list[FileEntry]]:
    """("file" | "dir", the files to write) for the path `rel` of the view."""
    if rel and not view.is_dir(rel):
        return "file", [view.entry(rel)]  # PathError when there is none
    prefix = rel + "/" if rel else ""
    listing = view.listing()
    artifacts = {e.artifact for e in listing.values() if e.artifact}
    files = []
    for p, e in listing.items():
        if not p.startswith(prefix) or p.split("/", 1)[0] in (".git", ".mlvc"):
            continue
        if e.source == GIT and p.endswith(".mlvc") and p[: -len(".mlvc")] in artifacts:
            continue  # an artifact's pointer: its files are written instead
        files.append(e)
    return "dir", files


def fetch_files(source: ObjectSource, file_ids: Iterable[bytes]) -> None:
    """Every object the files `file_ids` need, into `source`'s cache: their manifests in one
    batch, then their chunks in batches of at most BATCH_BYTES (each published before the next)."""
    ids = list(dict.fromkeys(file_ids))
    source.fetch_missing((FILE_MANIFEST, fid) for fid in ids)
    batch: dict[bytes, None] = {}
    size = 0
    for fid in ids:
        for cid, n in source.file_chunks(fid):
            if cid not in batch:
                batch[cid] = None
                size += n
                if size >= BATCH_BYTES:
                    source.fetch_missing((CHUNK, c) for c in batch)
                    source.flush()
                    batch, size = {}, 0
    if batch:
        source.fetch_missing((CHUNK, c) for c in batch)
    source.flush()


class _Writer:
    """Writes the selected files under the temp output from objects held in memory (fetched without
    the cache, as a download should: each byte is written once), in batches of at most
    BATCH_BYTES of chunks; a file larger than a batch streams through several."""

    def __init__(self, view: RevisionView, root: Path, cut: int):
        self.view, self.source, self.root, self.cut = view, view.source, root, cut
        self.pending: list[tuple[FileEntry, Chunks]] = []
        self.pending_bytes = 0
        self.total = 0

    def target(self, e: FileEntry) -> Path:
        return self.root / e.path[self.cut:] if self.cut >= 0 else self.root

    def add(self, e: FileEntry) -> None:
        if e.source != ARTIFACT:
            with self.view.open_raw(e) as src:
                self._write(e, [src.read()])
            return
        chunks = self.source.file_chunks(from_oid(e.ref))
        size = sum(n for _, n in chunks)
        if size >= BATCH_BYTES:
            self.flush()
            self._write(e, self._stream(chunks))
            return
        self.pending.append((e, chunks))
        self.pending_bytes += size
        if self.pending_bytes >= BATCH_BYTES:
            self.flush()

    def _stream(self, chunks: Chunks) -> Iterator[bytes | memoryview]:
        group, size = [], 0
        for c in chunks:
            group.append(c)
            size += c[1]
            if size >= BATCH_BYTES:
                yield from self._fetched(group)
                group, size = [], 0
        if group:
            yield from self._fetched(group)

    def _fetched(self, chunks: Chunks) -> Iterator[bytes | memoryview]:
        keys = [(CHUNK, cid) for cid, _ in chunks]
        self.source.fetch_missing(keys)
        yield from self.source.iter_chunks(chunks)
        self.source.release(keys)

    def flush(self) -> None:
        if not self.pending:
            return
        keys = [(CHUNK, cid) for _, chunks in self.pending for cid, _ in chunks]
        self.source.fetch_missing(keys)
        for e, chunks in self.pending:
            self._write(e, self.source.iter_chunks(chunks))
        self.source.release(keys)
        self.pending, self.pending_bytes = [], 0

    def _write(self, e: FileEntry, blocks: Iterable[bytes | memoryview]) -> None:
        target = self.target(e)
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with open(target, "xb") as dst:
            for block in blocks:
                dst.write(block)
                written += len(block)
            dst.flush()
            os.fsync(dst.fileno())
        expected = self.view.size(e)
        if written != expected:
            raise MlvcError(f"{e.path}: read {written} bytes, expected {expected}")
        if e.executable:
            os.chmod(target, os.stat(target).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.total += written


def get(repo: Repo, path: str, out: str | os.PathLike[str] | None = None, *, force: bool = False,
        progress: Progress | None = None) -> GetResult:
    """Copy `path` of `repo` (at its pinned commit, or the workspace's pointers) to `out`
    (default: the path's last component in the current directory; an `out` that is an existing
    directory gets it inside, under that name, as cp does).  An existing output is refused
    (ConflictError) unless `force`, which replaces it only once the copy is complete."""
    rel = repo_path(path)
    name = rel.rsplit("/", 1)[-1] if rel else Path(repo.origin or repo.root).name.removesuffix(".git")
    dest = Path(os.path.abspath(out if out is not None else name))
    if out is not None and dest.is_dir():
        dest = dest / name
    if os.path.lexists(dest) and not force:
        raise ConflictError(f"{dest}: already exists", hint="choose another -o, or pass --force to replace it")
    if not dest.parent.is_dir():
        raise PathError(dest.parent, "no such directory")
    _sweep(dest)
    with RevisionView(repo, None, cache=False) as view:
        kind, files = _selection(view, rel)
        tmp = dest.with_name(f"{TMP_PREFIX.format(name=dest.name)}{os.getpid()}")
        try:
            view.source.fetch_missing((FILE_MANIFEST, from_oid(e.ref)) for e in files if e.source == ARTIFACT)
            if kind == "dir":
                tmp.mkdir()
            writer = _Writer(view, tmp, -1 if kind == "file" else (len(rel) + 1 if rel else 0))
            for e in files:
                writer.add(e)
            writer.flush()
            total = writer.total
            _publish(tmp, dest, force)
        except OSError as exc:
            _remove(tmp)
            raise DiskError(f"{dest}: {exc.strerror or exc}") from exc
        except BaseException:
            _remove(tmp)
            raise
        stats = view.source.stats
    return GetResult(rel or ".", dest, kind, len(files), total, repo.origin, repo.pinned_rev, stats)


TMP_PREFIX = ".{name}.mlvc-get-"  # + the writing process's id


def _sweep(dest: Path) -> None:
    """Remove the temp outputs of gets of `dest` whose process died (kill -9, power loss)."""
    prefix = re.escape(TMP_PREFIX.format(name=dest.name))
    sweep(dest.parent, TempNames(rf"{prefix}(?P<pid>\d+)"))


def _publish(tmp: Path, dest: Path, force: bool) -> None:
    """Rename the complete copy into place (replacing `dest` only with `force`)."""
    if force and os.path.lexists(dest):
        if dest.is_dir() and not dest.is_symlink():
            old = dest.with_name(f".{dest.name}.mlvc-old-{os.getpid()}")
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    elif tmp.is_dir():
        os.rename(tmp, dest)  # fails onto anything but an empty directory made meanwhile
    else:
        try:
            os.link(tmp, dest)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise ConflictError(f"{dest}: appeared while copying; nothing was replaced") from None
        os.unlink(tmp)
    fsync_dir(str(dest.parent))


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


__all__ = ["get", "GetResult", "fetch_files"]
