"""`transfer(src, dst, artifacts)`: copy what `dst` lacks of some artifacts from `src`.

Push is `transfer(cache, remote, ...)`, fetch is `transfer(remote, cache, ...)`;
a repair copies between any two stores the same way.

1. **Walk.**  From each artifact's root (tree or file manifest) down to the
   chunks, collect the objects `dst` lacks, with the artifacts that need each.
   A subtree `dst` already holds is skipped without reading it when `dst` can
   vouch for it: a remote by the closure rule (a visible manifest implies
   everything below it), the cache by its completeness marks.  Manifests are
   read from whichever store has them (`dst` first: usually local).
2. **Copy**, in the order chunks, file manifests, trees, each object read
   from `src` as stored (no recompression), decoded and checked against its id,
   and appended to `dst`'s packs; `dst` publishes them by the closure rule.
   A remote pack that is mostly needed is copied whole instead (one download,
   every record verified, then published as is), when `dst` does not rely on
   the closure rule or the pack holds only chunks.
3. An object that fails fails only the artifacts that need it; store-wide
   failures (unreachable, auth, disk) raise.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CorruptObjectError, MlvcError, ObjectNotFoundError
from ..hashing import from_oid, to_oid
from ..objects import FileManifest, TreeManifest
from ..progress import NULL, Progress
from .packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST, TYPE_NAMES, decode_index, record_size_error
from .packstore import COALESCE_LIMIT, PACKS, PackStore, check_pack_file, wrap_os_error

WHOLE_PACK_FRACTION = 0.5  # copy a remote pack whole when at least this share of its bytes is needed
PHASES = (CHUNK, FILE_MANIFEST, TREE_MANIFEST)
MANIFEST_BATCH = 8192  # manifests read (and decoded) at a time during a walk
MANIFEST_KEEP_BYTES = 32 * 1024 * 1024  # manifests read during the walk kept for writing, at most

Key = tuple[int, bytes]


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
    packs: int = 0  # packs published at the destination (written or copied whole)
    requests: int = 0  # data requests to remote stores (reads of packs, uploads of packs and indexes)

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


def with_artifacts(exc: MlvcError, names: list[str]) -> MlvcError:
    """The same error, its message naming the artifacts it affects."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    err = MlvcError(f"{exc} [needed by {shown}]", hint=exc.hint)
    err.exit_code = exc.exit_code
    return err


class _Owners:
    """Which artifacts need which object (owner tuples are shared, not copied, along a walk)."""

    def __init__(self) -> None:
        self.map: dict[Key, tuple[int, ...]] = {}
        self.reused: set[Key] = set()  # needed objects dst already has (not copied)

    def add(self, key: Key, who: tuple[int, ...]) -> None:
        cur = self.map.get(key)
        if cur is None:
            self.map[key] = who
        elif cur is not who and not set(who) <= set(cur):
            self.map[key] = tuple(sorted(set(cur) | set(who)))


class _Transfer:
    def __init__(self, src: PackStore, dst: PackStore, artifacts: list[Artifact], jobs: int,
                 progress: Progress, result: TransferResult):
        self.src, self.dst = src, dst
        self.artifacts = artifacts
        self.jobs = max(1, jobs)
        self.progress = progress
        self.result = result
        self.owners = _Owners()
        self.failed: set[int] = set()  # artifact numbers
        self.manifests: dict[Key, tuple[int, bytes, int]] = {}  # stored form of manifests read from src
        self._kept_bytes = 0  # of those stored forms
        self.lock = threading.Lock()
        self.src_remote = not src.backend.capabilities.local_files
        self.whole_downloads = 0

    # ------------------------------------------------------------------ failures
    def fail(self, who, exc: MlvcError) -> None:
        names = [self.artifacts[i].name for i in who]
        with self.lock:
            for i in who:
                self.failed.add(i)
                self.result.fail(self.artifacts[i].name, with_artifacts(exc, names))

    # ------------------------------------------------------------------ walk
    walk_all = False  # repair: dst's closure may be broken (quarantined packs); look below everything

    def vouched(self, key: Key) -> bool:
        """Does dst hold `key` and everything below it, without looking below?"""
        if key[0] == CHUNK:
            return self.dst.has(*key)
        if self.walk_all:
            return False
        if self.dst.closure_trusted:
            return self.dst.has(*key)
        return to_oid(key[1]) in self.dst.complete

    def read_manifests(self, wanted: dict[Key, tuple[int, ...]]) -> Iterator[tuple[Key, bytes]]:
        """(key, body) of manifests, from dst where it has them, else from src, a batch at a
        time: a million file manifests are never all in memory at once."""
        keys = list(wanted)
        for i in range(0, len(keys), MANIFEST_BATCH):
            yield from self._read_manifest_batch(keys[i:i + MANIFEST_BATCH], wanted).items()

    def _read_manifest_batch(self, keys: list[Key], wanted: dict[Key, tuple[int, ...]]) -> dict[Key, bytes]:
        bodies: dict[Key, bytes] = {}
        from_src = []
        for key in keys:
            if self.dst.has(*key):
                try:
                    bodies[key] = self.dst.get(*key)
                    continue
                except CorruptObjectError:
                    pass  # a damaged copy at the destination: read the source's
            from_src.append(key)
        order = sorted(from_src, key=self._src_position)
        for key, c, payload, raw, data, error in self.src.iter_stored(order):
            if error is not None:
                if isinstance(error, ObjectNotFoundError):
                    error = ObjectNotFoundError(
                        f"{to_oid(key[1])} ({type_name(key[0])})", where=self.src.name,
                        hint=f"{self.dst.name} does not have it either: run `mlvc push` on a machine that has it")
                self.fail(wanted[key], error)
                continue
            bodies[key] = bytes(data)
            if not self.dst.has(*key) and self._kept_bytes < MANIFEST_KEEP_BYTES:
                # kept to write without reading it again; past the budget it is copied from src
                # in its phase like a chunk (by location), so memory stays bounded
                self.manifests[key] = (c, bytes(payload), raw)
                self._kept_bytes += len(payload)
        return bodies

    def _src_position(self, key: Key) -> tuple:
        try:
            pack, _c, off, _s, _r = self.src.location(*key)
        except ObjectNotFoundError:
            return ("", 0)
        return (pack, off)

    def walk(self) -> None:
        owners = self.owners
        trees: dict[Key, tuple[int, ...]] = {}
        files: dict[Key, tuple[int, ...]] = {}
        for ai, art in enumerate(self.artifacts):
            key = art.root
            if self.vouched(key):
                self.result.up_to_date.append(art.name)
                owners.reused.add(key)
                continue
            (trees if key[0] == TREE_MANIFEST else files)[key] = (ai,)
        for key, body in self.read_manifests(trees):
            who = trees[key]
            try:
                tree = TreeManifest.decode(body, key[1])
            except MlvcError as exc:
                self.fail(who, exc)
                continue
            if not self.dst.has(*key):
                owners.add(key, who)
            for e in tree.entries:
                fkey = (FILE_MANIFEST, e.file_id)
                if self.vouched(fkey):
                    owners.reused.add(fkey)
                    continue
                cur = files.get(fkey)
                files[fkey] = who if cur is None or cur is who else tuple(sorted(set(cur) | set(who)))
        for key, body in self.read_manifests(files):
            who = files[key]
            try:
                fm = FileManifest.decode(body, key[1])
            except MlvcError as exc:
                self.fail(who, exc)
                continue
            if not self.dst.has(*key):
                owners.add(key, who)
            for cid, _ in fm.chunks:
                ckey = (CHUNK, cid)
                if self.dst.has(CHUNK, cid):
                    owners.reused.add(ckey)
                else:
                    owners.add(ckey, who)

    # ------------------------------------------------------------------ copy
    def copy(self) -> None:
        by_pack: dict[str, list[tuple[Key, tuple, tuple[int, ...]]]] = {}
        for key, who in self.owners.map.items():
            if key in self.manifests:
                continue
            try:
                loc = self.src.location(*key)
            except ObjectNotFoundError:
                self.fail(who, ObjectNotFoundError(
                    f"{to_oid(key[1])} ({type_name(key[0])})", where=self.src.name,
                    hint="push it from a machine that has it (`mlvc push`)"))
                continue
            bad = record_size_error(key[0], key[1], loc[3], loc[4], f"pack {loc[0]} ({self.src.name})")
            if bad is not None:  # never download (or allocate) what no writer produces
                self.fail(who, bad)
                continue
            by_pack.setdefault(loc[0], []).append((key, loc, who))
        whole, runs = [], {typ: [] for typ in PHASES}
        for pack, items in by_pack.items():
            need = sum(loc[3] for _k, loc, _w in items)
            if self._copy_whole(pack, need):
                whole.append((pack, items))
                continue
            for item in items:
                runs[item[0][0]].append(item)
        total = sum(self.src.pack_bytes(p) for p, _ in whole)
        total += sum(loc[3] for items in runs.values() for _k, loc, _w in items)
        total += sum(len(m[1]) for m in self.manifests.values())
        count = sum(len(i) for i in runs.values()) + sum(len(i) for _p, i in whole) + len(self.manifests)
        self.progress.start(f"{self.description}: {count} objects", total)
        try:
            if whole:
                self._parallel([lambda p=p, i=i: self._whole(p, i) for p, i in whole])
            for typ in PHASES:
                items = sorted(runs[typ], key=lambda t: (t[1][0], t[1][2]))
                self._parallel([lambda g=g: self._copy_run(g) for g in self._groups(items)])
                for key, (c, payload, raw) in list(self.manifests.items()):
                    if key[0] == typ and not set(self.owners.map.get(key, ())) <= self.failed:
                        self._put(key, c, payload, raw)
                        self.progress.advance(len(payload))
        finally:
            self.progress.finish()

    description = "transfer"

    def _copy_whole(self, pack: str, need: int) -> bool:
        if not self.src_remote:
            return False  # a local pack costs nothing to read in parts; copying whole would copy garbage too
        size = self.src.pack_bytes(pack)
        if not size or need < WHOLE_PACK_FRACTION * size:
            return False
        if not self.dst.closure_trusted:
            return True
        return all(e.type == CHUNK for e in decode_index(self.src.index_bytes(pack), pack))

    def _groups(self, items):
        """Split per-pack sorted items into groups of at most COALESCE_LIMIT bytes (one worker each)."""
        group: list = []
        size = 0
        pack = None
        for item in items:
            if group and (item[1][0] != pack or size >= COALESCE_LIMIT):
                yield group
                group, size = [], 0
            group.append(item)
            pack = item[1][0]
            size += item[1][3]
        if group:
            yield group

    def _parallel(self, tasks) -> None:
        if self.src_remote and len(tasks) > 1:
            with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mlvc-transfer") as pool:
                futures = [pool.submit(t) for t in tasks]
                try:
                    for f in futures:
                        f.result()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        else:
            for t in tasks:
                t()

    def _put(self, key: Key, c: int, payload, raw: int) -> None:
        try:
            if self.dst.put_stored(key[0], key[1], c, payload, raw):
                with self.lock:
                    self.result.objects += 1
                    self.result.bytes += len(payload)
        except OSError as exc:
            raise wrap_os_error(exc, self.dst.name) from exc

    def _copy_run(self, group) -> None:
        whos = {key: who for key, _loc, who in group}
        for key, c, payload, raw, _data, error in self.src.iter_stored([k for k, _l, _w in group]):
            who = whos[key]
            if error is not None:
                self.fail(who, error)
                continue
            if key[0] != CHUNK and set(who) <= self.failed:
                continue  # a manifest of artifacts that failed: never publish it without its subtree
            self._put(key, c, payload, raw)
            self.progress.advance(len(payload))

    def _whole(self, pack: str, items) -> None:
        src, dst = self.src, self.dst
        where = f"pack {pack} ({src.name})"
        dst.scratch.mkdir(parents=True, exist_ok=True)
        tmp = dst.scratch / f"fetch-{os.getpid()}-{uuid.uuid4().hex}.pack"
        try:
            try:
                src.backend.get_file(f"{PACKS}{pack}.pack", tmp, callback=self.progress.advance)
            except ObjectNotFoundError:
                err = ObjectNotFoundError(f"pack {pack} (its index is there, the pack file is not)",
                                          where=src.name,
                                          hint="push the affected artifacts again from a machine that has them")
                for _key, _loc, who in items:
                    self.fail(who, err)
                return
            with self.lock:
                self.result.requests += 1
                self.whole_downloads += 1
            idx = src.index_bytes(pack)
            problems = check_pack_file(tmp, decode_index(idx, pack), where)
            if problems:  # keep the good objects this transfer needs, fail the others
                with open(tmp, "rb") as f:
                    for key, loc, who in items:
                        if key in problems:
                            self.fail(who, problems[key])
                        elif not (key[0] != CHUNK and set(who) <= self.failed):
                            self._put(key, loc[1], os.pread(f.fileno(), loc[3], loc[2]), loc[4])
                return
            try:
                dst.adopt_pack(tmp, pack, idx)
            except OSError as exc:
                raise wrap_os_error(exc, dst.name) from exc
            with self.lock:
                self.result.objects += len(items)
                self.result.bytes += src.pack_bytes(pack)
                self.result.packs += 1
        finally:
            tmp.unlink(missing_ok=True)


class _ThreadSafeProgress:
    """Progress advanced from several worker threads."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self._lock = threading.Lock()

    def start(self, what: str, total: int) -> None:
        self._progress.start(what, total)

    def advance(self, n: int) -> None:
        with self._lock:
            self._progress.advance(n)

    def finish(self) -> None:
        self._progress.finish()


def transfer(src: PackStore, dst: PackStore, artifacts: list[Artifact], *, jobs: int = 4,
             progress: Progress = NULL, description: str = "transfer", check_plan=None,
             before_index=None, walk_all: bool = False) -> TransferResult:
    """Copy into `dst` every object of `artifacts` it lacks, from `src`, verified.

    `check_plan(n)` is called with the number of needed objects `dst` already has (the
    transfer relies on them staying) before anything is copied; `before_index()` before
    each index `dst` publishes.  Either may raise to stop the transfer.  `walk_all`: trust
    nothing `dst` holds below a manifest (after a repair removed packs)."""
    result = TransferResult()
    src.refresh()
    dst.refresh()
    t = _Transfer(src, dst, artifacts, jobs, _ThreadSafeProgress(progress), result)
    t.description = description
    t.walk_all = walk_all
    published_before, reads_before = dst.published, src.reads
    dst.before_index = before_index
    try:
        t.walk()
        if check_plan is not None:
            check_plan(len(t.owners.reused))
        t.copy()
        dst.commit()
    except BaseException:
        try:
            dst.commit()  # keep what was verified and copied: the next run resumes from there
        except Exception:  # noqa: BLE001 - the original error is the one to report
            dst.abort()
        raise
    finally:
        dst.before_index = None
    written = dst.published - published_before - result.packs
    result.packs += written
    if src.counts_requests:
        result.requests += src.reads - reads_before
    if dst.counts_requests:
        result.requests += 2 * written  # each pack, then its index
    for ai, art in enumerate(artifacts):
        if art.name not in result.failed and ai not in t.failed:
            result.done.append(art.name)
    dst.complete.add(art.ptr.oid for ai, art in enumerate(artifacts) if art.name in result.done)
    return result


def missing_at(src: PackStore, dst: PackStore, artifact: Artifact) -> tuple[int, bool]:
    """How many objects of `artifact` `dst` lacks (walked as `transfer` would), and whether
    the walk failed (a manifest in neither store)."""
    result = TransferResult()
    src.refresh()
    dst.refresh()
    t = _Transfer(src, dst, [artifact], 1, NULL, result)
    t.walk()
    return len(t.owners.map), bool(result.failed)


__all__ = ["Artifact", "TransferResult", "transfer", "missing_at", "with_artifacts"]
