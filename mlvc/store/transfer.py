"""`transfer(src, dst, artifacts)`: copy what `dst` lacks of some artifacts from `src`.

Push is `transfer(cache, remote, ...)`, fetch is `transfer(remote, cache, ...)`;
a repair copies between any two stores the same way.

The transfer streams: what it holds depends on the batch sizes below, never on the
number of objects (a million-file tree is not turned into a map of its objects).

1. **Roots.**  Artifacts are grouped by root (commits often share one); a root `dst`
   can vouch for is skipped without reading it: a remote by the closure rule (a
   visible manifest implies everything below it), the cache by its completeness marks.
2. **Batches.**  A tree's entries are walked in order, `MANIFEST_BATCH` files at a
   time.  The file manifests of a batch that `dst` cannot vouch for are read (from
   `dst` where it has them, usually local, else from `src`); the chunks they name that
   `dst` lacks are copied (at most `CHUNK_BATCH` planned at once), then those
   manifests, and after the tree's last batch the tree itself.  `dst` publishes packs
   in the order they were written, so a manifest never becomes visible before what it
   names: the closure rule holds at every moment, and a killed transfer resumes.
3. **Copies.**  Each object is read from `src` as stored (no recompression), decoded
   and checked against its id, and appended to `dst`'s packs.  A remote pack that is
   mostly needed by a batch is copied whole instead (one download, every record
   verified, then published as is), when `dst` does not rely on the closure rule or
   the pack holds only chunks.
4. **Failures.**  An object that fails fails only the artifacts that need it; their
   later manifests are not written, so nothing at `dst` claims a subtree it lacks.
   Store-wide failures (unreachable, auth, disk) raise.
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import TypeVar

from ..errors import CorruptObjectError, MlvcError, ObjectNotFoundError, Remedy
from ..hashing import to_oid
from ..objects import FileManifest, NotCanonical, TreeEntries, TreeManifest, iter_tree_batches
from ..progress import NULL, Progress, ThreadSafeProgress
from ..codec import DELTA, MAX_DELTA_DEPTH, delta_base, encode
from .packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST, decode_index, record_size_error, type_name
from .packindex import PACKS
from .packstore import PackStore, wrap_os_error
from .readers import FirstThatHas
from .records import COALESCE_LIMIT, check_pack_file
from .types import Artifact, Key, Location, Root, TransferResult

WHOLE_PACK_FRACTION = 0.5  # copy a remote pack whole when at least this share of its bytes is needed
MANIFEST_BATCH = 8192  # file manifests read (and decoded) at a time
CHUNK_BATCH = 65536  # chunks planned at a time before they are copied (a 4 GiB file's worth)
TREE_GROUP_BYTES = 32 * 1024 * 1024  # tree manifests read together, at most (one if larger)

Owners = tuple[int, ...]  # the numbers of the artifacts that need an object
Stored = tuple[int, bytes, int]  # an object's stored form: (codec, payload, raw length)
Batch = list[tuple[Key, Owners]]  # file manifests to copy, with the artifacts that need each
Listed = list[tuple[Key, Owners, Stored]]  # trees whose files are all in batches
M = TypeVar("M", FileManifest, TreeManifest)
Planned = tuple[Key, Location, Owners]  # a chunk to copy: where it lies at src, who needs it
# in place of a stored form: dst lacks the object, and it is read from src again when written
# (a million-file tree's stored form is ~25 MB, not worth holding through the walk)
FROM_SRC = (-1, b"", 0)
STREAM_OVER = 1024 * 1024  # trees of more raw bytes than this are walked as they are decompressed


def with_artifacts(exc: MlvcError, names: list[str]) -> MlvcError:
    """The same error (type, fields, exit code), its message naming the artifacts it affects."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return exc.reworded(f"{exc} [needed by {shown}]")


def _union(a: Owners, b: Owners) -> Owners:
    """Owners of an object two walks need (the tuples are shared along a walk, rarely merged)."""
    if a is b or set(b) <= set(a):
        return a
    return tuple(sorted(set(a) | set(b)))


class _Transfer:
    description = "transfer"
    walk_all = False  # repair: dst's closure may be broken (quarantined packs); look below everything

    def __init__(self, src: PackStore, dst: PackStore, artifacts: list[Artifact], jobs: int,
                 progress: Progress, result: TransferResult,
                 check_plan: Callable[[int, int], None] | None = None,
                 count_only: bool = False):
        self.src, self.dst = src, dst
        self.artifacts = artifacts
        self.jobs = max(1, jobs)
        self.progress = progress
        self.result = result
        self.check_plan = check_plan
        self.reused = 0  # needed objects dst already had (the transfer relies on them staying)
        self.failed: set[int] = set()  # artifact numbers
        self.lock = threading.Lock()
        self.src_remote = not src.backend.capabilities.local_files
        # manifests are read from dst's copy where it has one (usually local), else from src; a
        # destination that vouches by holding (a remote) lacks every unvouched key: not asked
        self.reads = FirstThatHas([dst, src], primary=src, rescan=False)
        self.manifest_reads = self.reads if self.walk_all or not dst.closure_trusted else FirstThatHas(
            [src], primary=src)
        # count_only: plan without copying; `missing` collects what would be copied
        self.missing: set[Key] | None = set() if count_only else None
        self.planned_bases: dict[bytes, bytes] = {}  # the copy's deltas, each with the base sent or relied on

    # ------------------------------------------------------------------ failures
    def fail(self, who: Owners, exc: MlvcError) -> None:
        names = [self.artifacts[i].name for i in who]
        with self.lock:
            for i in who:
                self.failed.add(i)
                self.result.fail(self.artifacts[i].name, with_artifacts(exc, names))

    def all_failed(self, who: Owners) -> bool:
        return set(who) <= self.failed

    # ------------------------------------------------------------------ walk
    def vouched(self, key: Key) -> bool:
        """Does dst hold `key` and everything below it, without looking below?"""
        if key[0] == CHUNK:
            return self.dst.has(*key)
        if self.walk_all:
            return False
        # a root is marked complete only once it is there: a store that lacks the key is not
        # asked about marks (a fetch walking a million new files asks its index, not SQLite)
        return self.dst.has(*key) and (self.dst.closure_trusted or to_oid(key[1]) in self.dst.complete)

    def run(self) -> None:
        roots: dict[Key, list[int]] = {}
        for ai, art in enumerate(self.artifacts):
            roots.setdefault(art.root, []).append(ai)
        trees: list[tuple[Key, Owners]] = []
        files: list[tuple[Key, Owners]] = []
        for key, who in roots.items():
            if self.vouched(key):
                self.result.up_to_date.extend(self.artifacts[i].name for i in who)
                self.reused += 1
                continue
            (trees if key[0] == TREE_MANIFEST else files).append((key, tuple(who)))
        total = sum(self.artifacts[who[0]].ptr.size for _key, who in trees + files)
        self.progress.start(self.description, total)
        try:
            self._files(files)
            self._trees(trees)
            self._check_plan()  # also when nothing had to move: the push relies on what is there
        finally:
            self.progress.finish()

    def _check_plan(self) -> None:
        if self.check_plan is not None:
            self.check_plan(self.reused, self.result.objects)

    def _trees(self, trees: list[tuple[Key, Owners]]) -> None:
        """Walk the trees' entries in shared batches (many small trees cost a few reads, not a
        few each); a tree is written once every batch holding its files was."""
        wanted = dict(trees)
        batch: list[tuple[Key, Owners]] = []
        listed: list[tuple[Key, Owners, Stored]] = []  # trees whose files are all in batches
        small: list[tuple[Key, int]] = []
        for key in wanted:
            raw = self._raw_size(key)
            if raw > STREAM_OVER:
                batch, listed = self._walk_streamed(key, wanted[key], batch, listed)
            else:
                small.append((key, raw))
        for group in self._tree_groups(small):
            # read as a list and popped: no reader frame keeps a tree's bytes alive while its
            # entries are walked
            read = list(self._read_manifests(group, wanted))
            read.reverse()
            while read:
                key, body, stored = read.pop()
                who = wanted[key]
                tree = self._decoded(TreeManifest, key, body, who)
                del body
                if tree is None:
                    continue
                batch, listed = self._walk_entries(tree.entries, who, batch, listed)
                if stored is not None:
                    listed.append((key, who, stored))
        self._files(batch, then=listed)

    def _decoded(self, manifest_type: type[M], key: Key, body: bytes, who: Owners) -> M | None:
        """The manifest `body` decoded (checked against its id), or None with `who` failed."""
        try:
            return manifest_type.decode(body, key[1])
        except MlvcError as exc:
            self.fail(who, exc)
            return None

    def _raw_size(self, key: Key) -> int:
        try:
            return self.reads.location(*key).raw
        except ObjectNotFoundError:
            return 0  # read (and failed) with the small ones

    @staticmethod
    def _tree_groups(keys: list[tuple[Key, int]]) -> Iterator[list[Key]]:
        """Tree keys in groups of at most TREE_GROUP_BYTES of raw manifest."""
        group: list[Key] = []
        size = 0
        for key, raw in keys:
            if group and size + raw > TREE_GROUP_BYTES:
                yield group
                group, size = [], 0
            group.append(key)
            size += raw
        if group:
            yield group

    def _walk_streamed(self, key: Key, who: Owners, batch: Batch, listed: Listed) -> tuple[Batch, Listed]:
        """Walk a large tree as it is decompressed and parsed (never its whole document, nor
        all its entries: a million files are ~75 MB of JSON), from dst if it has a copy, else
        from src; it is written (read again from src) once its last batch was."""
        for store in self.reads.candidates(*key):
            try:
                where = f"{to_oid(key[1])} ({store.name})"
                if store is self.dst:
                    # checked before its entries are walked: a damaged copy here must not put
                    # ids it misreads into a batch before the source's copy is walked instead
                    for _piece in store.iter_decoded(*key):
                        pass
                try:
                    for entries in iter_tree_batches(store.iter_decoded(*key), where, MANIFEST_BATCH):
                        batch, listed = self._walk_entries(entries, who, batch, listed)
                        if self.all_failed(who):
                            return batch, listed
                except NotCanonical:  # not written by mlvc's encoder: decoded whole
                    tree = self._decoded(TreeManifest, key, store.get(*key), who)
                    if tree is None:
                        return batch, listed
                    batch, listed = self._walk_entries(tree.entries, who, batch, listed)
            except CorruptObjectError as exc:
                if store is self.dst:
                    continue  # a damaged copy at the destination: walk the source's
                self.fail(who, exc)
                return batch, listed
            except ObjectNotFoundError:
                self.fail(who, ObjectNotFoundError(
                    f"{to_oid(key[1])} (tree)", where=self.src.name,
                    hint=f"{self.dst.name} does not have it either", remedy=Remedy.PUSH_FROM_ELSEWHERE))
                return batch, listed
            except MlvcError as exc:
                self.fail(who, exc)
                return batch, listed
            if not self.dst.has(*key):
                listed.append((key, who, FROM_SRC))
            return batch, listed
        return batch, listed

    def _walk_entries(self, entries: TreeEntries, who: Owners, batch: Batch, listed: Listed) -> tuple[Batch, Listed]:
        """Add a tree's files to the shared batch (copying full batches): the batch and the trees
        waiting for it, to go on with."""
        for file_id, size in entries.ids_and_sizes():
            fkey = (FILE_MANIFEST, file_id)
            if self.vouched(fkey):
                self.reused += 1
                self.progress.advance(size)
                continue
            batch.append((fkey, who))
            if len(batch) >= MANIFEST_BATCH:
                self._files(batch, then=listed)
                batch, listed = [], []
                if self.all_failed(who):
                    break  # its tree is not written: no need to look further
        return batch, listed

    def _files(self, items: list[tuple[Key, Owners]], then: Sequence[tuple[Key, Owners, Stored]] = ()) -> None:
        """Copy what dst lacks of these file manifests: their chunks first, then them, then the
        manifests `then` (trees of these files)."""
        wanted: dict[Key, Owners] = {}
        for key, who in items:
            cur = wanted.get(key)
            wanted[key] = who if cur is None else _union(cur, who)
        need: dict[Key, Owners] = {}  # chunks to copy
        held: list[tuple[Key, Owners, Stored]] = []  # manifests to write once their chunks are in
        for key, body, stored in self._read_manifests(list(wanted), wanted):
            who = wanted[key]
            fm = self._decoded(FileManifest, key, body, who)
            if fm is None:
                continue
            for cid, length in fm.chunks:
                ckey = (CHUNK, cid)
                cur = need.get(ckey)
                if cur is not None:
                    need[ckey] = _union(cur, who)
                elif self.dst.has(CHUNK, cid):
                    self.reused += 1
                    self.progress.advance(length)
                else:
                    need[ckey] = who
            if stored is not None:
                held.append((key, who, stored))
            if len(need) >= CHUNK_BATCH:
                self._flush(need, held)
                need, held = {}, []
        self._flush(need, held + list(then))

    def _read_manifests(self, keys: list[Key], wanted: dict[Key, Owners]) -> Iterator[tuple[Key, bytes, Stored | None]]:
        """(key, body, stored form if dst lacks it) of manifests, from dst where it has them,
        else from src, `MANIFEST_BATCH` at a time; a failed one is recorded and left out."""
        for i in range(0, len(keys), MANIFEST_BATCH):
            for store, (key, c, payload, raw, data, error) in self.manifest_reads.iter_stored(
                    keys[i:i + MANIFEST_BATCH]):
                if error is not None:
                    if isinstance(error, ObjectNotFoundError):
                        error = ObjectNotFoundError(
                            f"{to_oid(key[1])} ({type_name(key[0])})", where=self.src.name,
                            hint=f"{self.dst.name} does not have it either", remedy=Remedy.PUSH_FROM_ELSEWHERE)
                    self.fail(wanted[key], error)
                    continue
                assert data is not None  # decoded: iter_stored gives data with every error-free item
                # dst's copy, or a damaged one there (kept: src's is read instead): not written
                at_dst = store is self.dst or (self.manifest_reads is self.reads and self.dst.has(*key))
                yield key, bytes(data), None if at_dst else (c, bytes(payload), raw)

    # ------------------------------------------------------------------ copy
    def _flush(self, need: dict[Key, Owners], held: list[tuple[Key, Owners, Stored]]) -> None:
        """Copy the chunks `need` names, then write the manifests `held` whose artifacts did not fail."""
        if self.missing is not None:
            for level in self._with_bases(need)[0]:  # the bases dst lacks count too
                self.missing.update(level)
            self.missing.update(key for key, _who, _stored in held)
            return
        if not need and not held:
            return
        self._check_plan()
        if need:
            self._copy_chunks(need)
        for key, who, stored in held:
            if self.all_failed(who):
                continue
            if stored is FROM_SRC:
                try:
                    stored = self.src.stored_form(*key)
                except MlvcError as exc:
                    self.fail(who, exc)
                    continue
            self._put(key, *stored)

    def _copy_chunks(self, need: dict[Key, Owners]) -> None:
        """Copy chunks, with the bases of those `src` stores as deltas that `dst` lacks: a level
        at a time, bases before the deltas on them (`dst` publishes a pack holding a delta only
        after the packs before it), so `dst` never holds a delta without its base."""
        levels, base_of, relied_on = self._with_bases(need)
        self.planned_bases = base_of
        if relied_on:
            # bases dst holds already: the deltas copied on them rely on their staying, like any
            # object dst had, so the plan is checked again before the first of them is copied
            # (a gc running beside a push may delete what it listed)
            self.reused += len(relied_on)
            self._check_plan()
        for level in levels:
            lacking = {key: who for key, who in level.items()
                       if key[1] in base_of and not self.dst.has(CHUNK, base_of[key[1]])}
            for key, who in lacking.items():  # its base could not be copied: neither is it
                del level[key]
                self.fail(who, ObjectNotFoundError(f"{to_oid(base_of[key[1]])} (the base of delta {to_oid(key[1])})",
                                                   where=self.src.name,
                                                   remedy=Remedy.PUSH_FROM_ELSEWHERE))
            self._copy_level(level)

    def _with_bases(self, need: dict[Key, Owners]) -> tuple[list[dict[Key, Owners]], dict[bytes, bytes], set[bytes]]:
        """`need` and the bases its deltas need at `dst`, split into levels: each chunk after the
        level of its base; and the bases `dst` already holds."""
        relied_on: set[bytes] = set()

        def at_dst(base: bytes) -> bool:
            if self.dst.has(CHUNK, base):
                relied_on.add(base)
                return True
            return False

        base_of = self.src.delta_closure([key[1] for key in need], held=at_dst)
        if not base_of:
            return [need], base_of, relied_on
        everything = dict(need)
        for base in base_of.values():
            if base not in relied_on:
                everything.setdefault((CHUNK, base), ())
        levels = {key[1]: 0 for key in everything}
        for _round in range(MAX_DELTA_DEPTH + 1):  # a chain is at most that long (a cycle stops too)
            for oid, base in base_of.items():
                if base in levels and oid in levels:
                    levels[oid] = max(levels[oid], levels[base] + 1)
        for oid in sorted(base_of, key=lambda oid: -levels.get(oid, 0)):  # deltas before their bases
            bkey, dkey = (CHUNK, base_of[oid]), (CHUNK, oid)
            if bkey in everything and dkey in everything:  # a base needs what its deltas need
                everything[bkey] = _union(everything[bkey], everything[dkey]) if everything[bkey] else everything[dkey]
        out: list[dict[Key, Owners]] = []
        for key, who in everything.items():
            n = min(levels[key[1]], MAX_DELTA_DEPTH + 1)
            while len(out) <= n:
                out.append({})
            out[n][key] = who
        return out, base_of, relied_on

    def _copy_level(self, need: dict[Key, Owners]) -> None:
        by_pack: dict[str, list[Planned]] = {}
        for key, who in need.items():
            try:
                loc = self.src.location(*key)
            except ObjectNotFoundError:
                self.fail(who, ObjectNotFoundError(
                    f"{to_oid(key[1])} ({type_name(key[0])})", where=self.src.name,
                    hint=f"{self.dst.name} does not have it either", remedy=Remedy.PUSH_FROM_ELSEWHERE))
                continue
            bad = record_size_error(key[0], key[1], loc.stored, loc.raw, f"pack {loc.pack} ({self.src.name})")
            if bad is not None:  # never download (or allocate) what no writer produces
                self.fail(who, bad)
                continue
            by_pack.setdefault(loc.pack, []).append((key, loc, who))
        whole: list[tuple[str, list[Planned]]] = []
        runs: list[Planned] = []
        for pack, items in by_pack.items():
            if self._copy_whole(pack, sum(loc.stored for _k, loc, _w in items)):
                whole.append((pack, items))
            else:
                runs.extend(items)
        del by_pack
        if whole:
            self._parallel([functools.partial(self._whole, p, i) for p, i in whole])
        runs.sort(key=lambda t: (t[1].pack, t[1].offset))
        self._parallel([functools.partial(self._copy_run, g) for g in self._groups(runs)])

    def _copy_whole(self, pack: str, need: int) -> bool:
        if not self.src_remote:
            return False  # a local pack costs nothing to read in parts; copying whole would copy garbage too
        size = self.src.pack_bytes(pack)
        if not size or need < WHOLE_PACK_FRACTION * size:
            return False
        try:
            entries = decode_index(self.src.index_bytes(pack), pack)
        except ObjectNotFoundError:
            return False  # removed by a gc meanwhile: its objects are read where they are now
        if any(e.codec == DELTA for e in entries):
            return False  # it may hold deltas on bases dst lacks: copied record by record, bases first
        if not self.dst.closure_trusted:
            return True
        return all(e.type == CHUNK for e in entries)

    def _groups(self, items: list[Planned]) -> Iterator[list[Planned]]:
        """Split per-pack sorted items into groups of at most COALESCE_LIMIT bytes (one worker each)."""
        group: list[Planned] = []
        size = 0
        pack = None
        for item in items:
            loc = item[1]
            if group and (loc.pack != pack or size >= COALESCE_LIMIT):
                yield group
                group, size = [], 0
            group.append(item)
            pack = loc.pack
            size += loc.stored
        if group:
            yield group

    def _parallel(self, tasks: Sequence[Callable[[], None]]) -> None:
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

    def _put(self, key: Key, c: int, payload: bytes | memoryview, raw: int, lacking: bool = False) -> None:
        """Append an object to dst; `lacking`: dst was asked when it was planned and lacked it
        (each chunk is planned once), so it is not asked again."""
        try:
            if self.dst.put_stored(key[0], key[1], c, payload, raw, force=lacking):
                with self.lock:
                    self.result.objects += 1
                    self.result.bytes += len(payload)
        except OSError as exc:
            raise wrap_os_error(exc, self.dst.name) from exc

    def _copy_run(self, group: list[Planned]) -> None:
        whos = {key: who for key, _loc, who in group}
        for key, c, payload, raw, data, error in self.src.iter_stored([k for k, _l, _w in group]):
            if error is not None:
                self.fail(whos[key], error)
                continue
            if c == DELTA and self.planned_bases.get(key[1]) != delta_base(payload) and data is not None:
                # stored as a delta since the plan (a repack beside us): its base may be neither at dst
                # nor sent, so its checked plaintext goes instead (dst never holds a delta without its base)
                c, whole = encode(data, self.dst.level)
                payload = bytes(whole)
            self._put(key, c, payload, raw, lacking=True)
            self.progress.advance(raw)

    def _whole(self, pack: str, items: list[Planned]) -> None:
        src, dst = self.src, self.dst
        where = f"pack {pack} ({src.name})"
        dst.scratch.mkdir(parents=True, exist_ok=True)
        tmp = dst.scratch / f"fetch-{os.getpid()}-{uuid.uuid4().hex}.pack"
        try:
            try:
                src.backend.get_file(f"{PACKS}{pack}.pack", tmp, callback=self.progress.advance)
                idx = src.index_bytes(pack)
            except ObjectNotFoundError:
                if pack not in src.listed_packs() and pack not in src.indexes_without_pack:
                    self._copy_run(items)  # a gc removed it (index first), its live objects published elsewhere
                    return
                err = ObjectNotFoundError(f"pack {pack} (its index is there, the pack file is not)",
                                          where=src.name,
                                          hint="push the affected artifacts again from a machine that has them")
                for _key, _loc, who in items:
                    self.fail(who, err)
                return
            with self.lock:
                self.result.requests += 1
            problems = check_pack_file(tmp, decode_index(idx, pack), where)
            if problems:  # keep the good objects this transfer needs, fail the others
                with open(tmp, "rb") as f:
                    for key, loc, who in items:
                        if key in problems:
                            self.fail(who, problems[key])
                        else:
                            self._put(key, loc.codec, os.pread(f.fileno(), loc.stored, loc.offset), loc.raw)
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


def transfer(src: PackStore, dst: PackStore, artifacts: list[Artifact], *, jobs: int = 4,
             progress: Progress = NULL, description: str = "transfer",
             check_plan: Callable[[int, int], None] | None = None,
             before_index: Callable[[], None] | None = None, walk_all: bool = False) -> TransferResult:
    """Copy into `dst` every object of `artifacts` it lacks, from `src`, verified.

    `check_plan(reused, copied)` is called before each batch is copied and at the end, with
    the number of needed objects `dst` already had (the transfer relies on them staying)
    and the number copied so far; `before_index()` before each index `dst` publishes.
    Either may raise to stop the transfer (what was copied is kept: a re-run resumes).
    `walk_all`: trust nothing `dst` holds below a manifest (after a repair removed packs)."""
    result = TransferResult()
    src.refresh()
    dst.refresh()
    t = _Transfer(src, dst, artifacts, jobs, ThreadSafeProgress(progress), result, check_plan)
    t.description = description
    t.walk_all = walk_all
    published_before, reads_before = dst.published, src.reads
    with dst.guard_indexes(before_index) if before_index is not None else nullcontext():
        try:
            t.run()
            dst.commit()
        except BaseException:
            try:
                dst.commit()  # keep what was verified and copied: the next run resumes from there
            except Exception:  # noqa: BLE001 - the original error is the one to report
                dst.abort()
            raise
    written = dst.published - published_before - result.packs
    result.packs += written
    if src.counts_requests:
        result.requests += src.reads - reads_before
    if dst.counts_requests:
        result.requests += 2 * written  # each pack, then its index
    for ai, art in enumerate(artifacts):
        if art.name not in result.failed and ai not in t.failed:
            result.done.append(art.name)
    dst.complete.add(art.ptr.oid for art in artifacts if art.name in result.done)
    return result


def missing_at(src: PackStore, dst: PackStore, artifact: Artifact) -> tuple[int, bool]:
    """How many objects of `artifact` `dst` lacks (walked as `transfer` would), and whether
    the walk failed (a manifest in neither store)."""
    result = TransferResult()
    src.refresh()
    dst.refresh()
    t = _Transfer(src, dst, [artifact], 1, NULL, result, count_only=True)
    t.run()
    assert t.missing is not None  # count_only
    return len(t.missing), bool(result.failed)


__all__ = ["Artifact", "Root", "TransferResult", "transfer", "missing_at", "with_artifacts"]
