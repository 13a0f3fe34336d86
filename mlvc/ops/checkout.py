"""`mlvc checkout [PATH...]`: make the workspace match the pointers.

Per artifact, everything is planned before anything is touched: which files
to write, which to remove, and whether any of them holds content mlvc has
never stored (a conflict unless `--force`).  New files are written to temp
files beside their destination and verified against their ids; only when
every file of the artifact is ready are they renamed into place.  A corrupt
or missing object therefore leaves that artifact's workspace untouched.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ObjectNotFoundError, ConflictError, CorruptObjectError, MlvcError
from ..hashing import hasher, to_oid
from ..objects import TreeEntry
from ..progress import NULL, Progress
from ..store.packs import FILE_MANIFEST
from ..store.packstore import wrap_os_error
from ..store.packs import write_all
from ..workspace import IdLookup, scan
from .common import Tracked, file_manifest, load_entries, select


@dataclass
class CheckoutResult:
    restored: list[str] = field(default_factory=list)  # artifacts whose workspace changed
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    failed_codes: dict[str, int] = field(default_factory=dict)  # artifact -> exit code of its error
    missing: dict[str, str] = field(default_factory=dict)  # of the failed: objects missing (message, no hint)
    written_files: int = 0
    written_bytes: int = 0
    removed_files: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


WRITE_BATCH_BYTES = 8 << 20


def write_file(store, fid: bytes, dest: Path, executable: bool, progress: Progress = NULL) -> Path:
    """Write the file `fid` to a temp file beside `dest`, verified; return the temp path."""
    manifest = file_manifest(store, fid)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name[:100]}.mlvc-tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    h = hasher()
    try:
        with open(tmp, "xb", buffering=0) as f:
            # Raw chunks arrive as views of the cache's memory-mapped packs: they go to the file
            # in `writev` batches straight from the page cache, with no copy through Python.
            batch: list = []
            size = 0
            for data in store.iter_chunks(manifest.chunks):
                h.update(data)
                batch.append(data)
                size += len(data)
                if size >= WRITE_BATCH_BYTES or len(batch) >= 512:
                    write_all(f.fileno(), batch)
                    progress.advance(size)
                    batch, size = [], 0
            write_all(f.fileno(), batch)
            progress.advance(size)
        if h.digest() != fid:
            raise CorruptObjectError(to_oid(fid), "the cache", to_oid(fid), to_oid(h.digest()))
        os.chmod(tmp, 0o755 if executable else 0o644)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, MlvcError):
            raise wrap_os_error(exc, str(dest)) from exc
        raise
    return tmp


def materialize(store, entries: list[TreeEntry], dest: Path, progress: Progress = NULL) -> None:
    """Write an artifact's files under `dest` (export; no conflict checks, no removals)."""
    for e in entries:
        target = dest / e.path if e.path else dest
        tmp = write_file(store, e.file_id, target, e.executable, progress)
        os.replace(tmp, target)


def _prune_empty_dirs(root: Path, start: Path) -> None:
    d = start
    while d != root and root in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def checkout_one(repo, t: Tracked, force: bool, progress: Progress, result: CheckoutResult) -> None:
    store = repo.store
    ptr = t.ptr
    entries = load_entries(store, ptr)
    target = t.target
    kind_mismatch = False
    current: dict[str, tuple] = {}
    if target.is_symlink() or target.exists():
        is_dir = target.is_dir() and not target.is_symlink()
        kind_mismatch = is_dir != (ptr.kind == "dir")
        if kind_mismatch or target.is_symlink():
            if not force:
                raise ConflictError(f"{t.display}: the workspace holds a "
                                    f"{'directory' if is_dir else 'file or link'} where the pointer "
                                    f"names a {ptr.kind}", hint=f"use `mlvc checkout --force {t.display}`")
        else:
            lookup = IdLookup(repo.hash_cache, t.display)
            expected_size = {e.path: e.size for e in entries}
            for fs in scan(target, t.display):
                # A size mismatch is a change; hash only to learn whether mlvc knows the content.
                fid = lookup.id_of(fs, f"{t.display}/{fs.rel}".rstrip("/"))
                current[fs.rel] = (fid, fs, expected_size.get(fs.rel))
            lookup.flush()

    to_write = [e for e in entries if e.path not in current or current[e.path][0] != e.file_id
                or current[e.path][1].executable != e.executable]
    expected_paths = {e.path for e in entries}
    to_remove = [rel for rel in current if rel not in expected_paths]
    if not force:
        expected_ids = {e.path: e.file_id for e in entries}
        unsaved = [rel for rel in [e.path for e in to_write if e.path in current] + to_remove
                   if current[rel][0] != expected_ids.get(rel)
                   and not store.has_any(FILE_MANIFEST, current[rel][0])]
        if unsaved:
            names = ", ".join(f"{t.display}/{r}".rstrip("/") for r in unsaved[:3])
            more = f" and {len(unsaved) - 3} more" if len(unsaved) > 3 else ""
            raise ConflictError(f"{names}{more}: modified in the workspace and never added; "
                                "checkout would lose it",
                                hint=f"run `mlvc add {t.display}` to keep it, or `mlvc checkout --force`")
    if not to_write and not to_remove and not kind_mismatch:
        result.unchanged.append(t.display)
        return

    replace_whole = kind_mismatch or target.is_symlink()
    # When the workspace holds the wrong kind of thing, a directory is staged beside it.
    staging = target.with_name(f".{target.name}.mlvc-new") if replace_whole and ptr.kind == "dir" else None
    progress.start(f"checkout {t.display}", sum(e.size for e in to_write))
    ready: list[tuple[Path, Path, TreeEntry]] = []
    try:
        for e in to_write:
            dest = (staging or target) / e.path if e.path else target
            ready.append((write_file(store, e.file_id, dest, e.executable, progress), dest, e))
    except BaseException:
        for tmp, _, _ in ready:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        progress.finish()

    if replace_whole:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    rows = []
    for tmp, dest, e in ready:
        os.replace(tmp, dest)
        st = os.stat(dest)
        rows.append((f"{t.display}/{e.path}".rstrip("/"), st.st_size, st.st_mtime_ns, st.st_ino, e.file_id))
        result.written_files += 1
        result.written_bytes += e.size
    if staging is not None:
        os.replace(staging, target)
    for rel in to_remove:
        p = target / rel
        p.unlink(missing_ok=True)
        _prune_empty_dirs(target, p.parent)
        result.removed_files += 1
    repo.hash_cache.store(rows, written_by_us=True)
    result.restored.append(t.display)


def checkout(repo, paths=None, *, force: bool = False, progress: Progress = NULL) -> CheckoutResult:
    """Restore every selected artifact; failures are collected per artifact, not raised."""
    result = CheckoutResult()
    for t in select(repo, paths):
        if t.ptr is None:
            result.failed[t.display] = str(t.error)
            result.failed_codes[t.display] = t.error.exit_code
            continue
        try:
            checkout_one(repo, t, force, progress, result)
        except MlvcError as exc:
            result.failed[t.display] = str(exc) + (f" ({exc.hint})" if exc.hint else "")
            result.failed_codes[t.display] = exc.exit_code
            if isinstance(exc, ObjectNotFoundError):
                result.missing[t.display] = str(exc)
        except OSError as exc:
            err = wrap_os_error(exc, t.display)
            result.failed[t.display] = str(err)
            result.failed_codes[t.display] = err.exit_code
    return result
