"""The push / fetch engine: moves objects between the local cache and a remote in packs.

Push
    Walk each artifact (tree -> file manifests -> chunks) and keep what the
    remote lacks.  A remote that has a manifest has everything below it (the
    *closure rule*, below), so an artifact whose root is on the remote costs no
    walk at all.  Missing objects are read from the cache as stored (no
    recompression), verified, and appended to new upload packs of ~64 MiB in
    the cache's tmp dir; each pack is uploaded (streamed, `jobs` in parallel)
    and then its index.  20,000 small files are a handful of PUTs.

    Closure rule: objects are packed in the order chunks, file manifests,
    trees, and the index of a pack that holds any manifest is uploaded only
    after the indexes of all earlier packs of the same push.  So whenever a
    manifest is visible on the remote, everything it refers to is too, for
    any number of concurrent or killed pushers.

Fetch
    Level by level (trees, then file manifests, then chunks), find the objects
    the cache lacks, locate them in the remote's indexes and download them:
    a pack mostly needed is downloaded whole to a temp file, every object in
    it verified, and the pack published into the cache as is (no copy); for
    the rest, adjacent objects are coalesced into range reads.  Every object
    is decoded and checked against its id before it reaches the cache; an
    object that fails fails only the artifacts that need it.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import codec
from ..errors import CorruptObjectError, MlvcError, ObjectNotFoundError, RemoteError
from ..hashing import digest, from_oid, to_oid
from ..objects import FileManifest, TreeManifest
from ..progress import NULL, Progress
from ..store.cache import wrap_os_error
from ..store.packs import (
    _REC,
    CHUNK,
    FILE_MANIFEST,
    FORMAT_VERSION,
    PACK_MAGIC,
    TREE_MANIFEST,
    TYPE_NAMES,
    IndexEntry,
    encode_index,
    fsync_dir,
    index_name,
    record_size_error,
)
from .index import PACKS_PREFIX

PUSH_PACK_SIZE = 64 * 1024 * 1024
WHOLE_PACK_FRACTION = 0.5  # download a whole pack when at least this share of its bytes is needed
RANGE_GAP = 256 * 1024  # coalesce range reads across gaps up to this size
RANGE_MAX = 16 * 1024 * 1024  # ... into requests of at most this size
_PHASE = {CHUNK: 0, FILE_MANIFEST: 1, TREE_MANIFEST: 2}

Key = tuple[int, bytes]


# ---------------------------------------------------------------------- shared pieces
@dataclass
class Artifact:
    name: str  # what messages call it: the artifact path (plus @commit for other revisions)
    ptr: object  # mlvc.pointer.PointerFile
    pointer_path: Path | None = None  # the workspace pointer, None for other commits

    @property
    def root(self) -> Key:
        return (TREE_MANIFEST if self.ptr.kind == "dir" else FILE_MANIFEST, from_oid(self.ptr.oid))


@dataclass
class TransferResult:
    done: list[str] = field(default_factory=list)  # artifacts complete at the destination now
    up_to_date: list[str] = field(default_factory=list)  # of those, the ones nothing had to move for
    failed: dict[str, str] = field(default_factory=dict)
    failed_codes: dict[str, int] = field(default_factory=dict)
    objects: int = 0  # objects moved
    bytes: int = 0  # bytes moved (as stored: compressed where it paid)
    packs: int = 0  # packs uploaded / downloaded whole
    requests: int = 0  # data requests (pack uploads + index uploads, or downloads + range reads)

    @property
    def fetched(self) -> list[str]:
        return self.done

    @property
    def pushed(self) -> list[str]:
        return self.done

    def fail(self, name: str, exc: MlvcError) -> None:
        if name not in self.failed:
            self.failed[name] = str(exc) + (f" ({exc.hint})" if getattr(exc, "hint", None) else "")
            self.failed_codes[name] = exc.exit_code

    def as_dict(self) -> dict:
        return asdict(self)


def type_name(typ: int) -> str:
    return TYPE_NAMES.get(typ, str(typ))


def verify_payload(typ: int, oid: bytes, c: int, payload, raw: int, where: str) -> bytes:
    """Decode a stored object and check it against its id; CorruptObjectError naming it otherwise."""
    name = to_oid(oid)
    try:
        data = codec.decode(c, bytes(payload), raw)
    except Exception:
        raise CorruptObjectError(name, where, "a decodable payload", "undecodable bytes") from None
    if len(data) != raw:
        raise CorruptObjectError(name, where, f"{raw} bytes", f"{len(data)} bytes")
    if typ == FILE_MANIFEST:
        try:
            FileManifest.decode(data, oid)
        except CorruptObjectError as exc:
            raise CorruptObjectError(name, where, exc.expected, exc.got) from None
    else:
        got = digest(data)
        if got != oid:
            raise CorruptObjectError(name, where, name, to_oid(got))
    return data


class _Owners:
    """Which artifacts need which object (owner tuples are shared, not copied, along a walk)."""

    def __init__(self) -> None:
        self.map: dict[Key, tuple[int, ...]] = {}
        self.reused: set[Key] = set()  # push: needed objects the remote already has (not uploaded)

    def add(self, key: Key, who: tuple[int, ...]) -> None:
        cur = self.map.get(key)
        if cur is None:
            self.map[key] = who
        elif cur is not who and not set(who) <= set(cur):
            self.map[key] = tuple(sorted(set(cur) | set(who)))


class _SafeProgress:
    def __init__(self, progress: Progress):
        self.progress = progress
        self.lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.progress.advance(n)


def _fail_owners(result: TransferResult, artifacts: list[Artifact], who, exc: MlvcError) -> None:
    names = [artifacts[i].name for i in who]
    for i in who:
        result.fail(artifacts[i].name, _with_artifacts(exc, names))


def _with_artifacts(exc: MlvcError, names: list[str]) -> MlvcError:
    """The same error, its message naming the artifacts it affects."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    err = MlvcError(f"{exc} [needed by {shown}]", hint=exc.hint)
    err.exit_code = exc.exit_code
    return err


# ---------------------------------------------------------------------- push
class _UploadPack:
    """A pack being built for upload: `push-<pid>-<uuid>.pack` in the cache tmp dir (swept if we die)."""

    def __init__(self, tmp_dir: Path):
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.path = tmp_dir / f"push-{os.getpid()}-{uuid.uuid4().hex}.pack"
        self._f = open(self.path, "xb")
        head = PACK_MAGIC + bytes([FORMAT_VERSION])
        self._f.write(head)
        self.size = len(head)
        self.entries: list[IndexEntry] = []
        self.has_manifest = False

    def append(self, typ: int, oid: bytes, c: int, payload, raw: int) -> None:
        self._f.write(_REC.pack(typ, c, oid, len(payload), raw))
        self._f.write(payload)
        self.entries.append(IndexEntry(oid, typ, c, self.size + _REC.size, len(payload), raw))
        self.size += _REC.size + len(payload)
        self.has_manifest = self.has_manifest or typ != CHUNK

    def finish(self) -> tuple[str, bytes]:
        self._f.close()
        idx = encode_index(self.entries)
        return index_name(idx), idx

    def discard(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass
        self.path.unlink(missing_ok=True)


def plan_push(store, rindex, artifacts: list[Artifact], result: TransferResult) -> _Owners:
    """The objects the remote lacks, with the artifacts that need them.  Artifacts that cannot be
    walked (a manifest missing from the cache and from the remote) are marked failed."""
    owners = _Owners()
    for ai, art in enumerate(artifacts):
        who = (ai,)
        root = art.root
        if rindex.has(*root):
            result.up_to_date.append(art.name)
            owners.reused.add(root)
            continue
        try:
            typ, oid = root
            if typ == TREE_MANIFEST:
                tree = TreeManifest.decode(store.get(TREE_MANIFEST, oid), oid)
                owners.add(root, who)
                fids = list(dict.fromkeys(e.file_id for e in tree.entries))
            else:
                fids = [oid]
            for fid in fids:
                if rindex.has(FILE_MANIFEST, fid):
                    owners.reused.add((FILE_MANIFEST, fid))
                    continue
                fm = FileManifest.decode(store.get(FILE_MANIFEST, fid), fid)
                owners.add((FILE_MANIFEST, fid), who)
                for cid, _ in fm.chunks:
                    if not rindex.has(CHUNK, cid):
                        owners.add((CHUNK, cid), who)
                    else:
                        owners.reused.add((CHUNK, cid))
        except ObjectNotFoundError as exc:
            result.fail(art.name, MlvcError(
                f"cannot push {art.name}: {exc} and the remote does not have it either",
                hint="run `mlvc pull` on this machine, or `mlvc push` on one that has it"))
        except CorruptObjectError as exc:
            result.fail(art.name, exc)
    return owners


def push_objects(store, backend, rindex, artifacts: list[Artifact], *, jobs: int = 4,
                 progress: Progress = NULL, pack_size: int = PUSH_PACK_SIZE,
                 description: str = "push", check_plan: Callable[[int], None] | None = None,
                 keep_alive: Callable[[], None] | None = None) -> TransferResult:
    """`check_plan(n)` is called with the number of objects the push relies on the remote for
    (needed but not uploaded) before anything is uploaded; `keep_alive()` before each index
    upload.  Either may raise to stop the push."""
    result = TransferResult()
    store.refresh()
    owners = plan_push(store, rindex, artifacts, result)
    if check_plan is not None:
        check_plan(len(owners.reused))
    bad: set[int] = set()  # artifacts that failed while packing

    # Order: chunks (in their local pack order, for sequential reads), then file manifests, then trees.
    located: list[tuple] = []
    for key, who in owners.map.items():
        typ, oid = key
        try:
            loc = store.location(typ, oid)
        except ObjectNotFoundError as exc:
            _fail_owners(result, artifacts, who, exc)
            bad.update(who)
            continue
        located.append((_PHASE[typ], loc[0], loc[2], key, loc, who))
    located.sort(key=lambda t: t[:3])
    total = sum(t[4][3] for t in located)
    count = len(located)

    advance = _SafeProgress(progress)
    progress.start(f"{description}: {count} objects", total)
    fds: dict[str, int] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="mlvc-push")
    slots = threading.Semaphore(max(1, jobs) + 1)  # packs built but not yet uploaded (bounds tmp disk)
    abort = threading.Event()
    futures: list[Future] = []
    events: list[threading.Event] = []
    current: _UploadPack | None = None
    stats_lock = threading.Lock()

    def upload(pack: _UploadPack, name: str, idx: bytes, wait_for: list[threading.Event],
               done: threading.Event) -> None:
        try:
            if abort.is_set():
                raise _Aborted()
            sent = backend.put_file(pack.path, f"{PACKS_PREFIX}{name}.pack", callback=advance)
            if not sent:
                advance(pack.size)  # an identical pack is already there
            for ev in wait_for:  # the closure rule: earlier packs' indexes first
                ev.wait()
            if abort.is_set():
                raise _Aborted()
            if keep_alive is not None:
                keep_alive()  # e.g. the push lock still holds: what the index promises stays
            backend.put_bytes(f"{PACKS_PREFIX}{name}.idx", idx)
            rindex.add_uploaded(name, idx, pack.entries)
            with stats_lock:
                result.packs += 1
                result.requests += 2 if sent else 1
                result.objects += len(pack.entries)
                result.bytes += pack.size if sent else 0
        except BaseException:
            abort.set()
            raise
        finally:
            pack.discard()
            done.set()
            slots.release()

    def submit(pack: _UploadPack) -> None:
        name, idx = pack.finish()
        wait_for = list(events) if pack.has_manifest else []
        done = threading.Event()
        events.append(done)
        futures.append(pool.submit(upload, pack, name, idx, wait_for, done))

    try:
        for _phase, pack_name, _off, key, loc, who in located:
            if abort.is_set():
                break
            typ, oid = key
            _, c, off, stored, raw = loc
            fd = fds.get(pack_name)
            if fd is None:
                try:
                    fd = fds[pack_name] = os.open(store.packs_dir / f"{pack_name}.pack", os.O_RDONLY)
                except FileNotFoundError:
                    exc = CorruptObjectError(to_oid(oid), "the cache", f"pack {pack_name}", "no pack file")
                    _fail_owners(result, artifacts, who, exc)
                    bad.update(who)
                    continue
            payload = os.pread(fd, stored, off)
            try:
                if len(payload) != stored:
                    raise CorruptObjectError(to_oid(oid), f"cache pack {pack_name}", f"{stored} bytes",
                                             f"{len(payload)} bytes")
                verify_payload(typ, oid, c, payload, raw, f"cache pack {pack_name}")
            except CorruptObjectError as exc:
                _fail_owners(result, artifacts, who, exc)
                bad.update(who)
                continue
            if typ != CHUNK and bad.intersection(who) and set(who) <= bad:
                continue  # a manifest of artifacts that failed: keep the closure rule
            if current is None:
                while not slots.acquire(timeout=0.2):
                    if abort.is_set():
                        break
                if abort.is_set():
                    break
                try:
                    current = _UploadPack(store.tmp_dir)
                except OSError as exc:
                    slots.release()
                    raise wrap_os_error(exc, "a pack for upload in the cache") from exc
            try:
                current.append(typ, oid, c, payload, raw)
            except OSError as exc:
                raise wrap_os_error(exc, "a pack for upload in the cache") from exc
            if current.size >= pack_size:
                pack, current = current, None
                submit(pack)
        if current is not None and not abort.is_set():
            pack, current = current, None
            if pack.entries:
                submit(pack)
            else:
                pack.discard()
                slots.release()
        wait(futures, return_when=FIRST_EXCEPTION)
        wait(futures)
        first = next((f.exception() for f in futures if f.exception() is not None
                      and not isinstance(f.exception(), _Aborted)), None)
        if first is not None:
            raise first
    except BaseException:
        abort.set()
        raise
    finally:
        if current is not None:
            current.discard()
        pool.shutdown(wait=True, cancel_futures=True)
        for fd in fds.values():
            os.close(fd)
        _sweep_own(store.tmp_dir, "push")
        progress.finish()

    for ai, art in enumerate(artifacts):
        if art.name not in result.failed and art.name not in result.done:
            if ai in bad:
                continue
            result.done.append(art.name)
    return result


class _Aborted(Exception):
    """An upload skipped because another one failed first."""


def _sweep_own(tmp_dir: Path, prefix: str) -> None:
    """Remove this process's leftover temp packs (those of dead processes go in `sweep_tmp`)."""
    try:
        names = os.listdir(tmp_dir)
    except OSError:
        return
    mine = f"{prefix}-{os.getpid()}-"
    for name in names:
        if name.startswith(mine):
            try:
                os.unlink(tmp_dir / name)
            except OSError:
                pass


# ---------------------------------------------------------------------- fetch
def _store_verified(store, typ: int, oid: bytes, c: int, payload, raw: int, data: bytes | None) -> bool:
    """Put a verified object into the cache as stored (no recompression)."""
    return store.put_stored(typ, oid, c, bytes(payload), raw)


def _publish_pack(store, tmp_pack: Path, name: str, idx: bytes) -> None:
    """Make a downloaded, fully verified pack part of the cache: pack first, then its index."""
    packs_dir = store.packs_dir
    final_idx = packs_dir / f"{name}.idx"
    if final_idx.exists():
        return
    tmp_idx = tmp_pack.with_suffix(".idx")
    with open(tmp_idx, "xb") as f:
        f.write(idx)
        if store.fsync:
            f.flush()
            os.fsync(f.fileno())
    try:
        os.replace(tmp_pack, packs_dir / f"{name}.pack")
        os.replace(tmp_idx, final_idx)
    finally:
        tmp_idx.unlink(missing_ok=True)
    if store.fsync:
        fsync_dir(packs_dir)


class _Fetcher:
    def __init__(self, store, backend, rindex, artifacts, jobs, progress, result):
        self.store = store
        self.backend = backend
        self.rindex = rindex
        self.artifacts = artifacts
        self.jobs = max(1, jobs)
        self.progress = progress
        self.advance = _SafeProgress(progress)
        self.result = result
        self.failed_keys: set[Key] = set()
        self.lock = threading.Lock()

    def fail(self, key: Key, who, exc: MlvcError) -> None:
        self.failed_keys.add(key)
        _fail_owners(self.result, self.artifacts, who, exc)

    def download(self, wanted: dict[Key, tuple[int, ...]], level: str) -> None:
        store = self.store
        store.refresh()
        by_pack: dict[str, list[tuple[Key, tuple, tuple]]] = {}
        for key, who in wanted.items():
            if key in self.failed_keys or store.has(*key):
                continue
            loc = self.rindex.location(*key)
            if loc is None:
                self.fail(key, who, ObjectNotFoundError(
                    f"{to_oid(key[1])} ({type_name(key[0])})", where=f"remote {self.backend.describe()}",
                    hint="push it from a machine that has it (`mlvc push`)"))
                continue
            bad = record_size_error(key[0], key[1], loc[3], loc[4], f"remote pack {loc[0]}")
            if bad is not None:  # never download (or allocate) what no writer produces
                self.fail(key, who, bad)
                continue
            by_pack.setdefault(loc[0], []).append((key, loc, who))
        if not by_pack:
            return
        tasks = []
        total = 0
        for pack, items in by_pack.items():
            need = sum(loc[3] for _, loc, _ in items)
            size = self.rindex.pack_sizes.get(pack, 0)
            if size and need >= WHOLE_PACK_FRACTION * size:
                tasks.append((self._whole, pack, items))
                total += size
                continue
            items.sort(key=lambda t: t[1][2])
            run: list = []
            start = end = 0
            for item in items:
                off, stored = item[1][2], item[1][3]
                if run and off - end <= RANGE_GAP + _REC.size and off + stored - start <= RANGE_MAX:
                    run.append(item)
                    end = max(end, off + stored)
                    continue
                if run:
                    tasks.append((self._ranges, pack, (start, end, run)))
                    total += end - start
                run, start, end = [item], off, off + stored
            tasks.append((self._ranges, pack, (start, end, run)))
            total += end - start
        n_objects = sum(len(v) for v in by_pack.values())
        self.progress.start(f"fetch {level}: {n_objects} objects", total)
        try:
            with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mlvc-fetch") as pool:
                futures = [pool.submit(fn, pack, arg) for fn, pack, arg in tasks]
                try:
                    for f in futures:
                        for key, who, exc in f.result():
                            self.fail(key, who, exc)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        finally:
            self.progress.finish()
        # Publish what arrived: durable for a resumed run, and readable for the next level
        # (objects of a pack still being written cannot be read back).
        store.commit()

    def _count(self, objects: int, nbytes: int, whole: bool) -> None:
        with self.lock:
            self.result.objects += objects
            self.result.bytes += nbytes
            self.result.requests += 1
            self.result.packs += 1 if whole else 0

    def _missing_pack(self, pack: str, items, exc: ObjectNotFoundError):
        err = ObjectNotFoundError(f"pack {pack} (its index is there, the pack file is not)",
                                  where=f"remote {self.backend.describe()}",
                                  hint="push the affected artifacts again from a machine that has them")
        return [(key, who, err) for key, _loc, who in items]

    def _ranges(self, pack: str, arg) -> list:
        start, end, items = arg
        where = f"remote pack {pack}"
        try:
            data = self.backend.get_range(f"{PACKS_PREFIX}{pack}.pack", start, end - start)
        except ObjectNotFoundError as exc:
            return self._missing_pack(pack, items, exc)
        self.advance(len(data))
        out = []
        stored_n = 0
        mv = memoryview(data)
        for key, loc, who in items:
            typ, oid = key
            _, c, off, stored, raw = loc
            payload = mv[off - start: off - start + stored]
            try:
                if len(payload) != stored:
                    raise CorruptObjectError(to_oid(oid), where, f"{stored} bytes",
                                             f"{len(payload)} bytes (truncated pack)")
                obj = verify_payload(typ, oid, c, payload, raw, where)
                self._put(typ, oid, c, payload, raw, obj)
                stored_n += 1
            except CorruptObjectError as exc:
                out.append((key, who, exc))
        self._count(stored_n, len(data), False)
        return out

    def _put(self, typ, oid, c, payload, raw, data) -> None:
        try:
            _store_verified(self.store, typ, oid, c, payload, raw, data)
        except OSError as exc:
            raise wrap_os_error(exc, "the cache") from exc

    def _whole(self, pack: str, items) -> list:
        store = self.store
        where = f"remote pack {pack}"
        store.ensure_dirs()
        tmp = store.tmp_dir / f"fetch-{os.getpid()}-{uuid.uuid4().hex}.pack"
        try:
            try:
                self.backend.get_file(f"{PACKS_PREFIX}{pack}.pack", tmp, callback=self.advance)
            except ObjectNotFoundError as exc:
                return self._missing_pack(pack, items, exc)
            problems: dict[Key, CorruptObjectError] = {}
            entries = self.rindex.entries_of(pack)
            with open(tmp, "rb") as f:
                fd = f.fileno()
                for e in entries:
                    try:
                        if (bad := record_size_error(e.type, e.oid, e.stored, e.raw, where)) is not None:
                            raise bad
                        payload = os.pread(fd, e.stored, e.offset)
                        if len(payload) != e.stored:
                            raise CorruptObjectError(to_oid(e.oid), where, f"{e.stored} bytes",
                                                     f"{len(payload)} bytes (truncated pack)")
                        verify_payload(e.type, e.oid, e.codec, payload, e.raw, where)
                    except CorruptObjectError as exc:
                        problems[(e.type, e.oid)] = exc
                size = os.path.getsize(tmp)
                if not problems:
                    try:
                        _publish_pack(store, tmp, pack, self.rindex.index_bytes(pack))
                    except OSError as exc:
                        raise wrap_os_error(exc, "the cache") from exc
                    self._count(len(items), size, True)
                    return []
                out = []
                for key, loc, who in items:
                    if key in problems:
                        out.append((key, who, problems[key]))
                        continue
                    _, c, off, stored, raw = loc
                    payload = os.pread(fd, stored, off)
                    self._put(key[0], key[1], c, payload, raw, None)
                self._count(len(items) - len(out), size, True)
                return out
        finally:
            tmp.unlink(missing_ok=True)


def fetch_objects(store, backend, rindex, artifacts: list[Artifact], *, jobs: int = 4,
                  progress: Progress = NULL) -> TransferResult:
    """Bring every object the artifacts need into the cache, verified.  Remote-wide failures
    (unreachable, auth) raise; per-object failures fail only the artifacts that need them."""
    result = TransferResult()
    try:
        store.sweep_tmp()
    except OSError:
        pass
    f = _Fetcher(store, backend, rindex, artifacts, jobs, progress, result)
    try:
        # level 1: roots (trees of directories, file manifests of single files)
        roots = _Owners()
        for ai, art in enumerate(artifacts):
            roots.add(art.root, (ai,))
        f.download({k: w for k, w in roots.map.items() if k[0] == TREE_MANIFEST}, "trees")
        files = _Owners()
        for key, who in roots.map.items():
            if key[0] == FILE_MANIFEST:
                files.add(key, who)
                continue
            if key in f.failed_keys:
                continue
            try:
                tree = TreeManifest.decode(store.get(*key), key[1])
            except MlvcError as exc:
                f.fail(key, who, exc)
                continue
            for e in tree.entries:
                files.add((FILE_MANIFEST, e.file_id), who)
        # level 2: file manifests
        f.download(files.map, "file manifests")
        chunks = _Owners()
        for key, who in files.map.items():
            if key in f.failed_keys:
                continue
            try:
                fm = FileManifest.decode(store.get(*key), key[1])
            except MlvcError as exc:
                f.fail(key, who, exc)
                continue
            for cid, _ in fm.chunks:
                chunks.add((CHUNK, cid), who)
        # level 3: chunks
        f.download(chunks.map, "chunks")
        store.commit()
    except BaseException:
        try:
            store.commit()  # keep what was verified and fetched: the next run resumes from there
        except Exception:  # noqa: BLE001 - the original error is the one to report
            store.abort()
        raise
    for art in artifacts:
        if art.name not in result.failed:
            result.done.append(art.name)
    return result


__all__ = ["Artifact", "TransferResult", "push_objects", "fetch_objects", "plan_push", "verify_payload",
           "RemoteError"]
