"""`mlvc checkout [PATH...]`: make the workspace match the pointers.

Per artifact, everything is planned before anything is touched: which files
to write, which to remove, and whether any of them holds content mlvc has
never stored (a conflict unless `--force`).  New files are written to temp
files under `.mlvc/tmp/` and verified against their ids; only when every file
of the artifact is ready are they renamed into place.  A corrupt or missing
object therefore leaves that artifact's workspace untouched, and a killed
checkout leaves nothing in the workspace.  Every directory on the way is
opened without following symlinks (`mlvc.safepath`), so no pointer can make
checkout write outside the repository.
"""

from __future__ import annotations

import os
import shutil
import stat as statmod
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (ConflictError, CorruptObjectError, DiskError, MlvcError, ObjectNotFoundError, PathError,
                      describe)
from ..hashing import hasher, to_oid
from ..objects import TreeEntries, TreeEntry
from ..progress import NULL, Progress
from ..repo import MLVC_DIR
from ..safepath import ContainedTree, new_file, parts_below, refuse_links_above, remove_stale_beside, umask
from ..store.filebases import MAX_FILES, MIN_FILE_BYTES, FileBases
from ..store.packs import CHUNK, FILE_MANIFEST, BackgroundWriter, write_all
from ..store.packstore import wrap_os_error
from ..workspace import FileStat, IdLookup, ScannedFiles, scan, scan_within, stat_signature
if TYPE_CHECKING:
    from ..repo import Repo
    from ..store.packstore import PackStore

from .common import PathArg, Tracked, file_manifest, links_root, load_entries, natural_key, overlapping, paired, select

HASH_ROWS_BATCH = 50_000  # restored files recorded in the hash cache this many at a time
ONE_CHUNK_BATCH = 2048  # one-chunk files whose records are looked up and read together


@dataclass
class CheckoutResult:
    restored: list[str] = field(default_factory=list)  # artifacts whose workspace changed
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, MlvcError] = field(default_factory=dict)  # artifact -> what stopped it
    missing: dict[str, str] = field(default_factory=dict)  # of the failed: objects missing (message, no hint)
    written_files: int = 0
    written_bytes: int = 0
    removed_files: int = 0
    # after switching commits: artifacts the new commit does not track, left on disk out of git
    kept: list[str] = field(default_factory=list)

    @property
    def failed_codes(self) -> dict[str, int]:
        """{artifact: the exit code of what stopped it}."""
        return {name: exc.exit_code for name, exc in self.failed.items()}

    def as_dict(self, describe: Callable[[MlvcError], str] = describe) -> dict[str, object]:
        """The result as plain data (`--json`): each failure as one line (`describe`: how; the
        CLI adds its commands to the hint) and its exit code in `failed_codes`."""
        out: dict[str, object] = {}
        for f in fields(self):
            if f.name == "failed":
                out["failed"] = {name: describe(exc) for name, exc in self.failed.items()}
                out["failed_codes"] = self.failed_codes
            else:
                out[f.name] = getattr(self, f.name)
        return out


def write_verified(store: PackStore, fid: bytes, fd: int, executable: bool, progress: Progress = NULL,
                   bases: FileBases | None = None) -> None:
    """Write the file `fid` to the open file `fd` (open for reading too), checked against its id,
    with its mode.  `bases`: where the plaintexts of deltas' bases may lie (read first); a large
    file written here joins them, for the next files of the restore."""
    # Ids are the xxh3-128 of the bytes, for files and chunks alike: a chunk whose id is the
    # file's id holds the whole file.  Small files (one chunk) are restored from it without
    # reading their manifest: most of the per-file cost of a restore of many small files.
    # The file's bytes are checked against `fid` below either way.
    refs = ((fid, 0),) if store.has(CHUNK, fid) else file_manifest(store, fid).chunks
    h = hasher()
    # Raw chunks arrive as views of the cache's memory-mapped packs: they go to the file in
    # `writev` batches straight from the page cache (no copy through Python), from a helper
    # thread, while this one hashes the next ones.  One hash per byte: the file id is checked
    # before the file is placed; only when it fails are the chunks checked one by one, to name
    # the damaged one.
    out = BackgroundWriter(fd)
    try:
        for data in store.iter_chunks(refs, check_ids=False, files=bases):
            h.update(data)
            out.write(data)
            progress.advance(len(data))
        out.close()
    except BaseException:
        out.close(discard=True)
        raise
    if h.digest() != fid:
        for _data in store.iter_chunks(refs):  # raises naming the damaged chunk
            pass
        raise CorruptObjectError(to_oid(fid), "the cache", to_oid(fid), to_oid(h.digest()))
    os.fchmod(fd, 0o755 if executable else 0o644)
    if bases is not None and len(refs) > 1 and sum(n for _c, n in refs) >= MIN_FILE_BYTES:
        bases.add_fd(fd, refs)


def with_one_chunk_bytes(store: PackStore, entries: Iterable[TreeEntry]
                         ) -> Iterator[tuple[TreeEntry, bytes | memoryview | None]]:
    """Each entry with its bytes, checked against its id, when the file is one chunk (the chunk's
    id is then the file's: most small files); None for the others (`write_verified` writes them).

    The chunks of `ONE_CHUNK_BATCH` entries are read together: files added in path order lie
    side by side in a pack (a small file's manifest between them), so a batch is a few reads
    instead of one lookup, read and decode call chain per file; their zstd frames are decoded a
    batch at a time on a helper thread while this one writes (`PackStore.iter_small_chunks`)."""
    batch: list[TreeEntry] = []
    for e in entries:
        batch.append(e)
        if len(batch) >= ONE_CHUNK_BATCH:
            yield from _one_chunk_batch(store, batch)
            batch = []
    if batch:
        yield from _one_chunk_batch(store, batch)


def _one_chunk_batch(store: PackStore, batch: list[TreeEntry]) -> Iterator[tuple[TreeEntry, bytes | memoryview | None]]:
    whole = [store.has(CHUNK, e.file_id) for e in batch]
    stored = store.iter_small_chunks([e.file_id for e, one in zip(batch, whole, strict=True) if one])
    for e, one in zip(batch, whole, strict=True):
        if not one:
            yield e, None
            continue
        data, error = next(stored)
        if error is not None:
            raise error
        yield e, data


def restore_order(entries: Iterable[TreeEntry]) -> Iterator[TreeEntry]:
    """The entries to restore in the order to write them: in path order (the order `add` stored
    them in: a pack's neighbours, read together), but the files of `MIN_FILE_BYTES` and more
    (checkpoints) after the others and in natural order (step_40 before step_120), the order
    `add` stores a run's checkpoints in, each against the one before: restored so, each
    checkpoint's deltas find their bases in the file written just before (`FileBases`)."""
    large = []
    for e in entries:
        if e.size >= MIN_FILE_BYTES:
            large.append(e)
        else:
            yield e
    large.sort(key=lambda e: natural_key(e.path))
    yield from large


def write_temp(store: PackStore, fid: bytes, tree: ContainedTree, parts: tuple[str, ...], executable: bool,
               progress: Progress = NULL, bases: FileBases | None = None) -> int:
    """Write the file `fid` to a temp file for the destination `parts` of `tree`, verified.

    Returns the temp file's number for `tree.place`; nothing is written outside `tree`."""
    serial, fd = tree.temp_file(parts)
    try:
        try:
            write_verified(store, fid, fd, executable, progress, bases)
        finally:
            os.close(fd)
    except BaseException as exc:
        tree.discard(serial, parts)
        if isinstance(exc, OSError) and not isinstance(exc, MlvcError):
            raise wrap_os_error(exc, "/".join(parts)) from exc
        raise
    return serial


def restore_staged(repo: Repo, t: Tracked, entries: Sequence[TreeEntry], tree: ContainedTree, base: tuple[str, ...],
                   staging: str,
                   progress: Progress, result: CheckoutResult, bases: FileBases | None = None) -> None:
    """Restore a directory artifact that is absent from the workspace: every file is written in
    its place inside the staging directory (directories made as the path-ordered entries reach
    them, as `tar x` does), then the directory is renamed onto the artifact's path at once."""
    rows = []
    display = t.display
    # files are made with their mode when the umask leaves it whole (no fchmod per file)
    mask = umask()
    exact = mask is not None and not mask & 0o755
    store = repo.store
    written = written_bytes = 0
    try:
        folder, dir_fd = None, -1
        for e, data in with_one_chunk_bytes(store, restore_order(entries) if bases is not None else entries):
            path = e.path
            parent, _, name = path.rpartition("/")
            if parent != folder:  # entries come in path order: a directory's files together
                folder = parent
                dir_fd = tree.staged_dir(staging, tuple(parent.split("/")) if parent else ())
            mode = 0o755 if e.executable else 0o644
            if data is None:
                fd = new_file(dir_fd, name)
                try:
                    write_verified(store, e.file_id, fd, e.executable, progress, bases)
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
            else:  # one chunk, checked against the file's id: one write from its buffer
                fd = new_file(dir_fd, name, mode)
                try:
                    n = os.write(fd, data)
                    if n < len(data):  # a short write: the disk is nearly full
                        write_all(fd, [memoryview(data)[n:]])
                    if not exact:
                        os.fchmod(fd, mode)
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
                progress.advance(len(data))
            # a rename of the directory keeps each file's inode and times: the row holds after it
            rows.append((f"{display}/{path}", st.st_size, st.st_mtime_ns, st.st_ino, e.file_id))
            written += 1
            written_bytes += e.size
            if len(rows) >= HASH_ROWS_BATCH:
                repo.hash_cache.store(rows, written_by_us=True)
                rows = []
        tree.place_staging(staging, base)
    except BaseException as exc:
        tree.discard_staging(staging)
        if isinstance(exc, OSError) and not isinstance(exc, MlvcError):
            raise wrap_os_error(exc, display) from exc
        raise
    result.written_files += written
    result.written_bytes += written_bytes
    repo.hash_cache.store(rows, written_by_us=True)
    result.restored.append(t.shown)


def entry_parts(base: tuple[str, ...], e: TreeEntry) -> tuple[str, ...]:
    return base + tuple(e.path.split("/")) if e.path else base


def materialize(store: PackStore, entries: Sequence[TreeEntry], tree: ContainedTree, base: tuple[str, ...], kind: str,
                progress: Progress = NULL) -> None:
    """Write an artifact's files at `base` in `tree` (export; no conflict checks, no removals),
    the large ones last, in natural order, each reading deltas' bases from those written before."""
    if kind == "dir":
        tree.dir_fd(base, create=True)
    with FileBases() as bases:
        for e in restore_order(entries):
            parts = entry_parts(base, e)
            serial = write_temp(store, e.file_id, tree, parts, e.executable, progress, bases)
            try:
                tree.place(serial, parts)
            except BaseException:
                tree.discard(serial, parts)
                raise


def _prune_empty_dirs(root: Path, start: Path) -> None:
    d = start
    while d != root and root in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def _check_room(store: PackStore, tree: ContainedTree, base: tuple[str, ...], entries: Sequence[TreeEntry],
                to_write: Sequence[int],
                need_bytes: int, display: str) -> None:
    """DiskError before anything is written when the files cannot fit (bytes or inodes): a tree of
    10 M entries or a 1 TB file fails at once instead of filling the disk first.  A file that
    could never fit has its manifest read first: one that lies about its size is corrupt (exit 6),
    which no amount of free space would fix."""
    free_bytes, free_inodes = tree.room(base)
    files = len(to_write)
    if need_bytes > free_bytes or (free_inodes and files > free_inodes):
        for j in to_write:
            if entries[j].size > free_bytes:
                file_manifest(store, entries[j].file_id)  # the readers' own checks
        raise DiskError(f"restoring it needs {need_bytes} bytes in {files} files, and the "
                        f"disk has {free_bytes} bytes and {free_inodes} inodes free; nothing was written",
                        hint="free some space and run the command again")


def _sweep_beside_file(target: Path) -> None:
    """Remove temp files a killed older checkout left beside a file artifact."""
    prefix = f".{target.name[:100]}.mlvc-tmp-"
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix)]
    except OSError:
        return
    remove_stale_beside(target.parent / n for n in names)


def checkout_one(repo: Repo, t: Tracked, force: bool, progress: Progress, result: CheckoutResult,
                 tree: ContainedTree, bases: FileBases | None = None) -> None:
    store = repo.store
    ptr = t.pointer
    target = t.target
    base = parts_below(repo.root, target)
    # Before anything is read: a symlinked directory on the way would make every read and write
    # below land outside the repository.
    refuse_links_above(repo.root, target / t.inner if t.inner else target, t.shown)
    tree.check(base[:-1])
    kind_mismatch = False
    st = tree.lstat(base)
    is_link = st is not None and statmod.S_ISLNK(st.st_mode)
    is_dir = st is not None and statmod.S_ISDIR(st.st_mode)
    files: ScannedFiles | list[FileStat] = []
    if st is not None:
        kind_mismatch = is_dir != (ptr.kind == "dir")
        if (kind_mismatch or is_link) and not force:
            raise ConflictError(f"{t.display}: the workspace holds a "
                                f"{'directory' if is_dir else 'file or link'} where the pointer "
                                f"names a {ptr.kind}", hint=f"use `mlvc checkout --force {t.display}`")
        if not (kind_mismatch or is_link):
            leftovers: list[Path] = []
            follow = links_root(repo, ptr.meta)
            files = (scan_within(target, t.display, t.inner, leftovers, follow) if t.inner
                     else scan(target, t.display, leftovers, follow))
            remove_stale_beside(leftovers)
            # the directory as `status` or `add` last saw it, when that was the pointer's tree:
            # nothing to do, without reading the tree or looking up a million files
            sig = stat_signature(files) if not t.inner and files and files[0].rel else None
            if sig is not None and repo.state.tree_for_signature(t.display, sig) == ptr.oid:
                result.unchanged.append(t.shown)
                return
    if ptr.kind == "file":
        _sweep_beside_file(target)
    entries = t.within(load_entries(store, ptr))
    if t.inner and not entries:
        raise PathError(t.shown, f"is not a file of the tracked artifact {t.display}",
                        hint=f"`mlvc show {t.display}` lists its files")

    # One pass over the tree's entries and the workspace's files, both in path order: which
    # entries to write (their indices), which files to remove, and which of those hold content
    # mlvc never stored.  A million-file artifact costs two integer arrays here, no dicts.
    to_write = array("Q")
    to_remove: list[str] = []
    unsaved: list[str] = []
    need_bytes = 0
    # the workspace's versions of large files about to be replaced: read for deltas' bases
    # (`bases`) when the file written over them is (entry index -> (path, the version's id))
    replaced: dict[int, tuple[str, bytes]] = {}
    present: dict[int, str] = {}  # ... and large files the workspace holds as they are (index -> path)
    lookup = IdLookup(repo.hash_cache, t.display)
    if not files:  # nothing in the workspace (a fresh checkout): every entry, without a pass over them
        to_write = array("Q", range(len(entries)))
        need_bytes = entries.total_size() if isinstance(entries, TreeEntries) else sum(e.size for e in entries)
    for e, j, fs, _i in paired(entries, files) if files else ():
        if fs is not None:
            # a size mismatch is a change; hashed only to learn whether mlvc knows the content
            fid = lookup.id_of(fs, f"{t.display}/{fs.rel}".rstrip("/"))
            if e is not None and fid == e.file_id:
                if fs.executable != e.executable:
                    to_write.append(j)
                    need_bytes += e.size
                elif bases is not None and e.size >= MIN_FILE_BYTES:
                    present[j] = fs.fspath  # a run's older checkpoints: the bases of new ones
                continue
            if not force and not store.has_any(FILE_MANIFEST, fid):
                unsaved.append(fs.rel)
            if e is None:
                to_remove.append(fs.rel)
                continue
            if bases is not None and min(e.size, fs.size) >= MIN_FILE_BYTES:
                replaced[j] = (fs.fspath, fid)
        assert e is not None  # paired() never yields two Nones
        to_write.append(j)
        need_bytes += e.size
    lookup.flush()
    if unsaved:
        names = ", ".join(f"{t.display}/{r}".rstrip("/") for r in unsaved[:3])
        more = f" and {len(unsaved) - 3} more" if len(unsaved) > 3 else ""
        raise ConflictError(f"{names}{more}: modified in the workspace and never added; "
                            "checkout would lose it",
                            hint=f"run `mlvc add {t.display}` to keep it, or `mlvc checkout --force`")
    create_dir = ptr.kind == "dir" and (st is None or kind_mismatch or is_link)
    if not to_write and not to_remove and not kind_mismatch and not create_dir:
        result.unchanged.append(t.shown)
        return

    replace_whole = kind_mismatch or is_link
    _check_room(store, tree, base, entries, to_write, need_bytes, t.display)
    progress.start(f"checkout {t.shown}", need_bytes)
    if st is None and ptr.kind == "dir" and not t.inner:
        staging = tree.staging_dir(base)
        if staging is not None:
            try:
                restore_staged(repo, t, entries, tree, base, staging, progress, result, bases)
            finally:
                progress.finish()
            return
    if bases is not None:  # in `restore_order`
        large = [j for j in to_write if entries[j].size >= MIN_FILE_BYTES]
        if large:
            large.sort(key=lambda j: natural_key(entries[j].path))
            to_write = array("Q", (j for j in to_write if entries[j].size < MIN_FILE_BYTES))
            to_write.extend(large)
    # the unchanged large files, offered in natural order as the written ones pass them (a run's
    # step_000120.pt just before the new step_000160.pt that is stored against it)
    waiting = sorted(present, key=lambda j: natural_key(entries[j].path)) if present and to_write else []
    ready = array("q")  # temp file numbers, parallel to to_write; placed ones are zeroed
    try:
        # Every temp file is written and verified before the workspace is touched.
        for j in to_write:
            e = entries[j]
            if waiting and e.size >= MIN_FILE_BYTES:
                key = natural_key(e.path)
                passed = 0
                while passed < len(waiting) and natural_key(entries[waiting[passed]].path) < key:
                    passed += 1
                # only the nearest ones (FileBases keeps MAX_FILES): a checkout that changes one file
                # of ten thousand unchanged large ones does not read ten thousand manifests
                for k in waiting[max(0, passed - MAX_FILES):passed]:
                    _offer_replaced(store, bases, present[k], entries[k].file_id, derive=False)
                del waiting[:passed]
            if j in replaced:
                _offer_replaced(store, bases, *replaced[j])
            ready.append(write_temp(store, e.file_id, tree, entry_parts(base, e), e.executable, progress, bases))
        progress.finish()

        if replace_whole:
            if is_dir:
                shutil.rmtree(target)
                tree.forget(base)
            else:
                target.unlink(missing_ok=True)
        # Files the manifest no longer lists go first, so a file may take the place of a directory
        # that only held them (and a directory the place of a file).
        for rel in to_remove:
            p = target / rel
            p.unlink(missing_ok=True)
            _prune_empty_dirs(target, p.parent)
            result.removed_files += 1
        if to_remove:
            tree.forget(base)
        if create_dir:
            tree.dir_fd(base, create=True)  # also restores an empty directory artifact
        rows = []
        for k, j in enumerate(to_write):
            e = entries[j]
            placed = tree.place(ready[k], entry_parts(base, e))
            ready[k] = 0
            rows.append((f"{t.display}/{e.path}".rstrip("/"), placed.st_size, placed.st_mtime_ns,
                         placed.st_ino, e.file_id))
            result.written_files += 1
            result.written_bytes += e.size
            if len(rows) >= HASH_ROWS_BATCH:
                repo.hash_cache.store(rows, written_by_us=True)
                rows = []
    finally:
        progress.finish()
        for k, serial in enumerate(ready):
            if serial:
                tree.discard(serial, entry_parts(base, entries[to_write[k]]))
    repo.hash_cache.store(rows, written_by_us=True)
    result.restored.append(t.shown)


def _offer_replaced(store: PackStore, bases: FileBases | None, path: str, fid: bytes, derive: bool = True) -> None:
    """Offer the workspace's version `fid` of a file (at `path`, about to be replaced) as a
    source of plaintexts, when the store knows its chunks (its bytes are hashed when read): of
    its own chunks, and (`derive`) of the bases of those stored as deltas (`FileBases.add_derived`)."""
    if bases is None or not store.has(FILE_MANIFEST, fid):
        return
    try:
        chunks = file_manifest(store, fid).chunks
    except MlvcError:
        return  # unreadable here: the bases are decoded from the store as always
    bases.add_path(path, chunks)
    if derive:  # its chunks stored as deltas give their bases too (the version before it: HEAD~1)
        bases.add_derived((c for c, _n in chunks), store.delta_bases, store.stored_delta)


def checkout(repo: Repo, paths: Sequence[PathArg] | None = None, *, force: bool = False,
             progress: Progress = NULL) -> CheckoutResult:
    """Restore every selected artifact; failures are collected per artifact, not raised."""
    result = CheckoutResult()
    selected = select(repo, paths, within=True)
    clashes = overlapping(select(repo) if paths else selected)
    with ContainedTree(repo.root, tmp=(MLVC_DIR, "tmp")) as tree, FileBases() as bases:
        tree.sweep_tmp()
        for t in selected:
            if t.ptr is not None and t.rel_pointer in clashes:
                t = Tracked(t.pointer_path, t.rel_pointer, None, clashes[t.rel_pointer], t.inner)
            _checkout_reporting(repo, t, force, progress, result, tree, bases)
    # what is now on disk stays out of git even at a commit without its pointer (mlvc.ignore)
    held = {t.display: t.target for t in selected if t.ptr is not None and t.shown not in result.failed}
    try:
        repo.keep_out_of_git(held.values())
    except OSError as exc:
        raise wrap_os_error(exc, "the ignore file .git/info/exclude") from exc
    return result


def _checkout_reporting(repo: Repo, t: Tracked, force: bool, progress: Progress, result: CheckoutResult,
                        tree: ContainedTree, bases: FileBases | None = None) -> None:
    """checkout_one, with its failure recorded in `result` instead of raised."""
    if t.ptr is None:
        result.failed[t.shown] = t.parse_error
        return
    try:
        checkout_one(repo, t, force, progress, result, tree, bases)
    except MlvcError as exc:
        result.failed[t.shown] = exc
        if isinstance(exc, ObjectNotFoundError):
            result.missing[t.shown] = str(exc)
    except OSError as exc:
        err = wrap_os_error(exc, t.shown)
        result.failed[t.shown] = err.worded(str(err))
