"""`mlvc add`: chunk, hash and store files and directories; write their pointers.

Order of writes (the crash-safety invariant): chunks, then file manifests,
then the tree manifest go into packs; the packs are published (fsynced);
only then is the pointer file replaced, and last the `.gitignore` line and the
hash cache.  A crash at any point leaves either the old pointer or the new one,
each naming objects that exist.  The user's files are only ever read.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from .. import pointer as pointers
from ..chunking import ChunkerParams, ReadsInto, aligned_cuts, iter_chunks
from ..codec import DELTA, Buffer, ChunkEncoder
from ..errors import FileChangedError, MlvcError, PathError, UnsafePathError
from ..hashing import digest, hasher, to_oid
from ..ignore import ensure_ignored
from ..objects import FileManifest, TreeManifest, validate_relpath
from ..progress import NULL, Progress
from ..store.packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST
from ..store.packstore import wrap_os_error
from ..workspace import FileStat, IdLookup, hash_file, same_stat, scan, stat_signature
from .add_bases import Bases, ChunkMap, DeltaChoice, FloatRegions, Tensor, TensorKey
from .common import PathArg, existing_meta, followed_link_warnings, links_root, natural_key, select
from .data_meta import carry_over, config_drift
from .modules import Meta

if TYPE_CHECKING:
    import xxhash

    from ..checkpoint import CheckpointLayout
    from ..repo import Repo
    from ..store.packstore import PackStore

# a chunk handed to the encoder thread: (bytes, id, float width, bytes to skip, the base of a delta)
_Chunk = tuple[Buffer, bytes, int, int, "tuple[bytes, int, Tensor] | None"]

_MIN_CUT_FILE = 64 * 1024  # smaller files are chunked without looking for a checkpoint layout


@dataclass
class AddResult:
    path: str  # repo-relative artifact path
    pointer: str  # repo-relative pointer path
    kind: str
    oid: str
    size: int
    files: int
    new_bytes: int  # bytes of objects this add stored for the first time (chunks and manifests)
    stored_bytes: int  # bytes they take in the cache (after compression)
    hashed_files: int  # files read (the rest came from the hash cache)
    changed: bool  # pointer differs from before
    warnings: list[str] = field(default_factory=list)  # recorded meta dropped, a config changed since
    role: str | None = None  # the role the pointer records (given, kept, or inferred)
    new_data_bytes: int = 0  # the part of new_bytes that is file content (the rest: file and tree manifests)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Reader:
    """The file as the chunker reads it: every block read also feeds the file's content id
    and the progress bar (on the chunker's read-ahead thread; both release or lock as needed)."""

    def __init__(self, f: ReadsInto, content: xxhash.xxh3_128, progress: Progress) -> None:
        self._f = f
        self._content = content
        self._progress = progress

    def readinto(self, b: memoryview, /) -> int | None:
        n = self._f.readinto(b)
        if n:
            self._content.update(b[:n])
            self._progress.advance(n)
        return n


class _ModuleIds:
    """Per-module ids of a checkpoint being stored, computed on a helper thread while it is chunked.

    The module ids hash each module's tensors in name order, not file order, so they cannot be
    fed from the chunker's single pass; this reads the tensors (from the page cache the chunker
    just filled, or fills) beside it, on the other core.  Any failure records nothing, as before;
    the caller's stat check after both passes vouches that they saw one version of the file.
    """

    def __init__(self, path: Path, layout: CheckpointLayout, before: os.stat_result) -> None:
        self._ids: dict[str, str] | None = None
        self._thread = threading.Thread(target=self._run, args=(path, layout, before),
                                        name="mlvc-modules", daemon=True)
        self._thread.start()

    def _run(self, path: Path, layout: CheckpointLayout, before: os.stat_result) -> None:
        from .modules import module_ids_of

        try:
            with open(path, "rb") as f:
                if same_stat(os.fstat(f.fileno()), before):
                    self._ids = module_ids_of(f, layout)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint records nothing, never fails the add
            self._ids = None

    def result(self) -> dict[str, str] | None:
        self._thread.join()
        return self._ids


_BESIDE_MIN = 4 * 1024 * 1024  # files at least this large are compressed on a helper thread
_BESIDE_BATCH = 16  # chunks handed to it at once (~1 MiB): one queue operation, not one per chunk
_BESIDE_QUEUE = 4  # batches waiting for it at most (~4 MiB)


class _Storer:
    """Stores a file's chunks in the order cut: on a helper thread beside the chunker (`beside`,
    for large files: compression, ~1-2 s of a core per GiB of floats, runs on the other core
    while this thread cuts and hashes), or inline (small files: no thread per file).  The
    helper gets its own copy of each chunk (the chunker reuses its buffers), in batches of
    `_BESIDE_BATCH`: a queue operation per chunk, each waking the other thread, cost ~0.3 s of
    CPU per GiB in lock hand-offs."""

    def __init__(self, store: PackStore, encoder: ChunkEncoder, beside: bool, base_file: Path | None = None,
                 choice: DeltaChoice | None = None) -> None:
        self._store, self._encoder = store, encoder
        self._choice = choice if choice is not None else DeltaChoice()
        self._delta_encoder = ChunkEncoder(store.level)  # the XORs' planes pay differently
        self._base_file = base_file
        self._base_fd: int | None = None
        self._queue: queue.Queue[list[_Chunk] | None] = queue.Queue(_BESIDE_QUEUE)
        self._batch: list[_Chunk] = []
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if beside:
            self._thread = threading.Thread(target=self._run, name="mlvc-encode", daemon=True)
            self._thread.start()

    def put(self, data: Buffer, oid: bytes, width: int, skip: int,
            base: tuple[bytes, int, Tensor] | None = None) -> None:
        """`base`: (id, offset in `base_file`, tensor) of the chunk to store this one as a delta against."""
        if self._thread is None:
            self._put(data, oid, width, skip, base)
            return
        if self._error is not None:
            raise self._error
        self._batch.append((bytes(data), oid, width, skip, base))
        if len(self._batch) >= _BESIDE_BATCH:
            self._queue.put(self._batch)
            self._batch = []

    def _put(self, data: Buffer, oid: bytes, width: int, skip: int, base: tuple[bytes, int, Tensor] | None) -> None:
        store = self._store
        if base is None:
            store.put_chunk(data, oid, self._encoder, width, skip)
            return
        if store.has(CHUNK, oid):
            return
        base_id, offset, tensor = base
        way = self._choice.way(tensor)
        delta = None
        if way != DeltaChoice.OWN:
            delta = store.delta_payload(data, base_id, lambda: self._sibling_bytes(offset, len(data)),
                                        self._delta_encoder, width, skip)
        if way != DeltaChoice.BOTH or delta is None:
            if delta is None or len(delta) >= len(data):  # no base, or a delta that does not shrink it
                store.put_chunk(data, oid, self._encoder, width, skip)
            else:
                store.put_stored(CHUNK, oid, DELTA, delta, len(data))
            return
        c, own = self._encoder.encode(data, width, skip)
        self._choice.learn(tensor, len(delta) < len(own))
        if len(delta) < len(own):
            c, own = DELTA, delta
        store.put_stored(CHUNK, oid, c, own, len(data))

    def _sibling_bytes(self, offset: int, length: int) -> bytes | None:
        """The base's bytes as the sibling file holds them (the store checks them by their id)."""
        if self._base_file is None:
            return None
        try:
            if self._base_fd is None:
                self._base_fd = os.open(self._base_file, os.O_RDONLY)
            return os.pread(self._base_fd, length, offset)
        except OSError:
            return None

    def _run(self) -> None:
        get = self._queue.get
        while (batch := get()) is not None:
            for item in batch:
                if self._error is None:
                    try:
                        self._put(*item)
                    except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                        self._error = exc

    def finish(self) -> None:
        """Wait until every chunk is stored; re-raise the helper's error."""
        self.close()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._thread is not None:
            if self._batch:
                self._queue.put(self._batch)
                self._batch = []
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._base_fd is not None:
            os.close(self._base_fd)
            self._base_fd = None


def store_file(store: PackStore, fs: FileStat, display: str, params: ChunkerParams, progress: Progress = NULL,
               module_ids: bool = False, float_planes: bool = False,
               base: ChunkMap | Callable[[], ChunkMap | None] | None = None,
               choice: DeltaChoice | None = None) -> tuple[bytes, dict[str, str] | None, ChunkMap | None]:
    """Chunk one file into the store; returns (content id, module ids, its chunk map).  Detects
    concurrent modification.

    The file's bytes are read once, by the chunker's read-ahead thread, which also hashes the
    whole content; a checkpoint's tensor layout (a few small reads) gives tensor-aware cut points
    and, with `module_ids`, the per-module ids (None when not asked, or when it is not a
    checkpoint mlvc can read).
    With `float_planes`, each float tensor is cut into fixed blocks from its start and its
    blocks may be stored as deltas against `base`'s (another version of this checkpoint: the
    previous sibling of a run, or the previous version of this path; a callable is asked only
    for a file with float tensors; `choice` learns per tensor which way its blocks are encoded,
    shared by the files of one add); the chunk map returned is what the next version builds on."""
    from .modules import checkpoint_layout, layout_cuts

    content = hasher()
    refs: list[tuple[bytes, int]] = []
    encoder = ChunkEncoder(store.level)
    cut_digest = digest
    modules = None
    storer = None
    try:
        with open(fs.path, "rb", buffering=0) as f:
            before = os.fstat(f.fileno())
            layout = checkpoint_layout(fs.path) if module_ids or fs.size >= _MIN_CUT_FILE else None
            cuts = layout_cuts(layout, fs.size)  # tensor-aware boundaries; None unless a checkpoint
            # Byte planes are opt-in (core.float_planes): they store fp32 at ~83% and bf16 at ~66%, but
            # their decode made checkout of unique fp32 weights 2.5x slower (benchmarks/README.md).
            floats = FloatRegions.of(layout) if float_planes else None
            if float_planes and floats is None and layout is None and fs.size >= _MIN_CUT_FILE:
                floats = FloatRegions.of_npy(f, fs.size)
            fixed: frozenset[int] | set[int] = frozenset()
            mine: dict[TensorKey, tuple[bytes, int, int]] = {}
            if floats is not None:  # tensor-aligned blocks: what deltas line up with
                spans, fixed = aligned_cuts(floats.spans(), params.max_size)
                cuts = sorted(set(cuts or ()) | set(spans))
                if callable(base):
                    base = base()
            else:
                base = None
            if module_ids and layout is not None:
                modules = _ModuleIds(fs.path, layout, before)
            storer = _Storer(store, encoder, beside=fs.size >= _BESIDE_MIN,
                             base_file=base.path if isinstance(base, ChunkMap) else None, choice=choice)
            put = storer.put
            total = 0
            for data in iter_chunks(_Reader(f, content, progress), params, boundaries=cuts, size_hint=fs.size,
                                    fixed=fixed):
                oid = cut_digest(data)
                if floats is None:
                    put(data, oid, 0, 0)
                else:
                    on = None
                    if total in fixed and (key := floats.key_at(total)) is not None:
                        mine[key] = (oid, len(data), total)
                        if isinstance(base, ChunkMap) and (b := base.chunks.get(key)) is not None \
                                and b[1] == len(data) and b[0] != oid:
                            on = (b[0], b[2], key[:3])
                    put(data, oid, *floats.at(total, len(data)), on)
                refs.append((oid, len(data)))
                total += len(data)
            storer.finish()
            ids = modules.result() if modules is not None else None
            after = os.stat(fs.path)
    except FileNotFoundError:
        raise FileChangedError(display) from None
    except PermissionError:
        raise PathError(display, "permission denied (cannot read it)") from None
    finally:
        if storer is not None:
            storer.close()
        if modules is not None:
            modules.result()
    if not same_stat(before, after) or total != before.st_size or before.st_size != fs.size:
        raise FileChangedError(display)
    cid = content.digest()
    manifest = FileManifest(cid, total, params, tuple(refs))
    store.put_object(FILE_MANIFEST, cid, manifest.encode())
    return cid, ids, ChunkMap(mine, fs.path) if mine else None


def _previous_pointer(repo: Repo, ptr_path: Path) -> pointers.PointerFile | None:
    if not ptr_path.exists():
        return None
    try:
        return pointers.load(ptr_path, repo.rel(ptr_path))
    except MlvcError:
        return None


def _tracked_by_git(repo: Repo, display: str) -> bool:
    from .. import gitcli as git

    return bool(git.ls_files(repo.root, "--", display))


def _check_target(repo: Repo, target: Path, display: str) -> None:
    if target.name.endswith(pointers.SUFFIX):
        raise PathError(display, "is a pointer file; add the artifact it points to instead")
    if repo.has_git and _tracked_by_git(repo, display):
        # Otherwise git would keep committing the real bytes beside the pointer.
        raise PathError(display, "is tracked by git; stop tracking it there before mlvc takes it over",
                        hint=f"git rm -r --cached {display} && mlvc add {display}")
    rel_parts = Path(repo.rel(target)).parts
    for i in range(1, len(rel_parts)):
        ancestor = repo.root.joinpath(*rel_parts[:i])
        if pointers.pointer_path_for(ancestor).exists():
            raise PathError(display, f"is inside the tracked artifact {repo.rel(ancestor)}; "
                                     f"add {repo.rel(ancestor)} instead")
    # Pointers may be named anything (`x.mlvc` with `path: data`): compare with what each names.
    own = pointers.pointer_path_for(target)
    for t in select(repo):
        if t.ptr is None or t.pointer_path == own:
            continue
        if display.startswith(t.display + "/"):
            raise PathError(display, f"is inside the tracked artifact {t.display} (pointer {t.rel_pointer}); "
                                     f"add {t.display} instead")
        if t.display == display or t.display.startswith(display + "/"):
            raise PathError(display, f"{'is' if t.display == display else 'contains'} the tracked artifact "
                                     f"{t.display} (pointer {t.rel_pointer}); remove that pointer first")


def add_one(repo: Repo, path: PathArg, *, role: str | None = None, meta: Mapping[str, object] | None = None,
            progress: Progress = NULL) -> AddResult:
    if not os.path.lexists(path):  # before "outside the repository": /nonexistent simply is not there
        raise PathError(path, "does not exist")
    target = repo.resolve_user_path(path)
    display = repo.rel(target)
    _check_target(repo, target, display)
    ptr_path = pointers.pointer_path_for(target)
    files = scan(target, display, follow_within=links_root(repo, {**existing_meta(ptr_path), **(meta or {})}))
    kind = "file" if files and files[0].rel == "" else "dir"
    for fs in files:
        if fs.rel.endswith(pointers.SUFFIX):
            raise PathError(f"{display}/{fs.rel}", "is a pointer of another artifact inside this directory; "
                                                   "add the directories separately")
        if fs.rel:
            try:
                validate_relpath(fs.rel, display, below_dir=True)
            except UnsafePathError:  # the user's file name, not a pointer: say which file and why
                raise PathError(f"{display}/{fs.rel}", "has a name mlvc cannot record (it starts with a "
                                "backslash, a path from the root on Windows); rename it") from None
    store = repo.store
    params = repo.chunker
    lookup = IdLookup(repo.hash_cache, display)
    total = files.total_size()
    progress.start(f"add {display}", total)
    before_new = dict(store.stats)
    hashed = 0
    ids = bytearray()  # the file ids, 16 bytes each in the scan's (path) order
    known_modules: dict[str, Meta | None] = {}  # module ids computed while storing, by relative path
    examined = bytearray(len(files))  # 1: module ids computed while storing (in known_modules if any)
    from .modules import sharded_files, wants_module_ids

    sharded = sharded_files(files) if kind == "dir" else set()
    float_planes = repo.config.settings.float_planes
    bases = Bases(store, _previous_pointer(repo, ptr_path), target.name) if float_planes else None
    # With deltas, a run's checkpoints are stored in natural order (step_40 before step_120), each
    # against the one before it in its directory; the ids still go into the tree in path order.
    order = sorted(range(len(files)), key=lambda k: natural_key(files[k].rel)) \
        if bases is not None and kind == "dir" else range(len(files))
    fids: list[bytes] = [b""] * len(files)
    try:
        for i in order:
            fs = files[i]
            fdisplay = f"{display}/{fs.rel}" if fs.rel else display
            fid = lookup.cached_id(fs)
            if fid is not None and store.has_any(FILE_MANIFEST, fid):
                progress.advance(fs.size)
                if bases is not None:
                    bases.stored(fs, fid, None)
            else:
                want = wants_module_ids(fs, kind, sharded)
                fid, mods, chunk_map = store_file(store, fs, fdisplay, params, progress, module_ids=want,
                                                  float_planes=float_planes,
                                                  base=bases.for_file(fs) if bases is not None else None,
                                                  choice=bases.choice if bases is not None else None)
                if bases is not None:
                    bases.stored(fs, fid, chunk_map)
                if want:
                    examined[i] = 1
                    if mods:
                        known_modules[fs.rel] = mods
                lookup.remember(fs, fid)
                hashed += 1
            fids[i] = fid
        ids += b"".join(fids)
        if kind == "file":
            oid = bytes(ids)
        else:
            # over the scan's own columns (no second copy of a million paths), stored as it is
            # encoded (never one 75 MB body)
            paths, ends, sizes, executable = files.columns()
            tree = TreeManifest.from_columns(paths, ends, sizes, ids, executable)
            oid = store.put_pieces(TREE_MANIFEST, tree.pieces())
        store.commit()
    except BaseException:
        store.abort()
        raise
    finally:
        progress.finish()

    old = None
    if ptr_path.exists():
        try:
            old = pointers.load(ptr_path, repo.rel(ptr_path))
        except MlvcError:
            old = None  # a broken pointer is simply replaced by a correct one
    new_meta, warnings = carry_over(old.meta if old else None, meta, old is not None and old.oid != to_oid(oid),
                                    display)
    warnings += filter(None, [config_drift(repo, new_meta, display)])
    if links_root(repo, new_meta) is not None:
        warnings += followed_link_warnings(repo, target, display, files)
    if old is None or old.oid != to_oid(oid) or "modules" not in new_meta:
        from .modules import checkpoint_meta  # per-module ids; recomputed only when content changed

        new_meta.pop("modules", None)
        new_meta.pop("blocks", None)
        new_meta.update(checkpoint_meta(repo, target, files, known_modules, examined))
    role = role or (old.role if old else None) or infer_role(new_meta)
    ptr = pointers.PointerFile(target.name, kind, to_oid(oid), total, len(files), params, role, new_meta)
    changed = old is None or old.to_yaml() != ptr.to_yaml()
    try:
        if changed:
            pointers.write(ptr_path, ptr, fsync=repo.config.settings.fsync)
        if repo.has_git:
            ensure_ignored(target)
            repo.keep_out_of_git([target])
    except OSError as exc:
        raise wrap_os_error(exc, f"the pointer {repo.rel(ptr_path)}") from exc
    lookup.flush()
    repo.store.complete.add([to_oid(oid)])
    if kind == "dir":
        sig = stat_signature(files)
        if sig is not None:
            repo.state.remember_signature(display, sig, to_oid(oid))
    return AddResult(display, repo.rel(ptr_path), kind, to_oid(oid), total, len(files),
                     store.stats["new_bytes"] - before_new["new_bytes"],
                     store.stats["stored_bytes"] - before_new["stored_bytes"], hashed, changed, warnings, role,
                     store.stats["new_chunk_bytes"] - before_new["new_chunk_bytes"])


DATA_SIGNALS = ("config", "config_hash", "seed")  # what produced a data set (`--config`, `--seed`)


def infer_role(meta: Mapping[str, object]) -> str | None:
    """The role of an artifact added without one: "data" when its meta says what produced it
    (a config or a sampling seed: a data set saved with torch.save holds tensors too), else None."""
    return "data" if any(k in meta for k in DATA_SIGNALS) else None


def add(repo: Repo, paths: Sequence[PathArg], *, role: str | None = None, meta: Mapping[str, object] | None = None,
        progress: Progress = NULL) -> list[AddResult]:
    """Add each path; stops at the first failure (earlier paths stay added)."""
    if not paths:
        raise PathError("(none)", "no paths given")
    repo.store.sweep_tmp()
    with repo.store.host_lock():  # shared: keeps a concurrent gc from deleting objects we reuse
        return [add_one(repo, p, role=role, meta=meta, progress=progress) for p in paths]


__all__ = ["add", "add_one", "AddResult", "store_file", "hash_file", "CHUNK"]
