"""The local cache: a content-addressed object store made of pack files.

`ChunkStore` writes new objects into a private temporary pack (several
processes may add at once, each with its own packs), publishes packs in the
order described in `mlvc.store.packs`, and reads objects back verifying each
one against its id.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .. import codec
from ..errors import CorruptObjectError, DiskError, ObjectNotFoundError
from ..hashing import digest, to_oid
from .packs import (
    CHUNK,
    FILE_MANIFEST,
    RAW,
    TREE_MANIFEST,
    TYPE_NAMES,
    IndexEntry,
    PackWriter,
    _REC,
    decode_index,
    iter_pack_records,
    record_size_error,
)

DEFAULT_PACK_SIZE = 32 * 1024 * 1024
STALE_TMP_S = 24 * 3600  # temp files of a live pid are kept unless older than this
_COALESCE_LIMIT = 8 * 1024 * 1024


def wrap_os_error(exc: OSError, what: str) -> DiskError:
    if exc.errno == errno.ENOSPC:
        return DiskError(f"disk full while writing {what}; nothing was recorded, the cache is intact",
                         hint="free some space and run the command again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DiskError(f"permission denied while writing {what}: {exc.filename or ''}".rstrip(": "))
    return DiskError(f"cannot write {what}: {exc.strerror or exc}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class VerifyReport:
    packs: int = 0
    objects: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class ChunkStore:
    """Objects keyed by (type, 16-byte id), stored in packs under `root/packs`."""

    def __init__(self, root: Path, *, fsync: bool = True, level: int = 3,
                 pack_size: int = DEFAULT_PACK_SIZE):
        self.root = Path(root)
        self.packs_dir = self.root / "packs"
        self.tmp_dir = self.root / "tmp"
        self.fsync = fsync
        self.level = level
        self.pack_size = pack_size
        self._pack_names: list[str] = []
        self._known_idx: set[str] = set()
        # type -> {oid: (pack number, codec, offset, stored, raw)}
        self._index: dict[int, dict[bytes, tuple]] = {CHUNK: {}, FILE_MANIFEST: {}, TREE_MANIFEST: {}}
        self._fds: dict[int, int] = {}
        self._loaded = False
        self._lock = threading.Lock()
        self._writer: PackWriter | None = None
        self._pending: dict[tuple[int, bytes], tuple[PackWriter, IndexEntry]] = {}
        self._publisher: ThreadPoolExecutor | None = None
        self._publishing: list[Future] = []
        self.stats = {"new_objects": 0, "new_bytes": 0, "stored_bytes": 0}

    # ---------------------------------------------------------------- index
    def ensure_dirs(self) -> None:
        self.packs_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def refresh(self) -> int:
        """Load indexes of packs published since the last call (by us or other processes)."""
        self._loaded = True
        try:
            names = [n[:-4] for n in os.listdir(self.packs_dir) if n.endswith(".idx")]
        except FileNotFoundError:
            return 0
        added = 0
        for name in sorted(set(names) - self._known_idx):
            path = self.packs_dir / f"{name}.idx"
            try:
                entries = decode_index(path.read_bytes(), f"pack index {name}")
            except FileNotFoundError:  # removed by a concurrent gc
                continue
            self._add_pack(name, entries)
            added += 1
        return added

    def _add_pack(self, name: str, entries: list[IndexEntry]) -> None:
        self._known_idx.add(name)
        no = len(self._pack_names)
        self._pack_names.append(name)
        index = self._index
        for e in entries:
            index[e.type][e.oid] = (no, e.codec, e.offset, e.stored, e.raw)

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.refresh()

    def has(self, typ: int, oid: bytes) -> bool:
        self._ensure_loaded()
        return oid in self._index[typ] or (typ, oid) in self._pending

    def has_any(self, typ: int, oid: bytes) -> bool:
        """Like `has`, but rescans for packs other processes published meanwhile."""
        return self.has(typ, oid) or (self.refresh() > 0 and self.has(typ, oid))

    def count(self) -> int:
        self._ensure_loaded()
        return sum(len(d) for d in self._index.values())

    def iter_ids(self, typ: int):
        self._ensure_loaded()
        return iter(self._index[typ])

    def pack_names(self) -> list[str]:
        self._ensure_loaded()
        return list(self._pack_names)

    def location(self, typ: int, oid: bytes) -> tuple[str, int, int, int, int]:
        """(pack name, codec, offset, stored, raw) of a published object."""
        self._ensure_loaded()
        loc = self._index[typ].get(oid)
        if loc is None:
            raise ObjectNotFoundError(to_oid(oid))
        no, c, off, stored, raw = loc
        return self._pack_names[no], c, off, stored, raw

    # ---------------------------------------------------------------- read
    def _fd(self, no: int) -> int:
        fd = self._fds.get(no)
        if fd is None:
            path = self.packs_dir / f"{self._pack_names[no]}.pack"
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise CorruptObjectError(self._pack_names[no], "the cache",
                                         "a pack file", "only its index") from None
            self._fds[no] = fd
        return fd

    def _lookup(self, typ: int, oid: bytes) -> tuple:
        self._ensure_loaded()
        loc = self._index[typ].get(oid)
        if loc is None and (typ, oid) not in self._pending and self.refresh():
            loc = self._index[typ].get(oid)
        if loc is None:
            pending = self._pending.get((typ, oid))
            if pending is not None:
                return pending
            raise ObjectNotFoundError(to_oid(oid), hint=None if typ == CHUNK else
                                      "run `mlvc pull` to fetch it from a remote")
        return loc

    def _decode_verify(self, typ: int, oid: bytes, c: int, payload: bytes, raw: int, where: str) -> bytes:
        if (err := record_size_error(typ, oid, len(payload), raw, where)) is not None:
            raise err
        try:
            data = codec.decode(c, payload, raw)
        except Exception:
            raise CorruptObjectError(to_oid(oid), where, "a decodable payload", "garbage") from None
        if len(data) != raw:
            raise CorruptObjectError(to_oid(oid), where, f"{raw} bytes", f"{len(data)} bytes")
        if typ != FILE_MANIFEST:  # file manifests carry their own checksum (checked when decoded)
            got = digest(data)
            if got != oid:
                raise CorruptObjectError(to_oid(oid), where, to_oid(oid), to_oid(got))
        return data

    def get(self, typ: int, oid: bytes) -> bytes:
        """Return an object's raw bytes, verified against its id."""
        loc = self._lookup(typ, oid)
        if isinstance(loc[0], PackWriter):
            writer, e = loc
            return self._decode_verify(typ, oid, e.codec, writer.read_back(e), e.raw, "a pack being written")
        no, c, off, stored, raw = loc
        if (err := record_size_error(typ, oid, stored, raw, f"pack {self._pack_names[no]}")) is not None:
            raise err  # before reading: a declared 4 GiB must not be allocated
        payload = os.pread(self._fd(no), stored, off)
        if len(payload) != stored:
            raise CorruptObjectError(to_oid(oid), f"pack {self._pack_names[no]}", f"{stored} bytes",
                                     f"{len(payload)} bytes (truncated pack)")
        return self._decode_verify(typ, oid, c, payload, raw, f"pack {self._pack_names[no]}")

    def iter_chunks(self, chunk_ids):
        """Yield verified chunk bytes for a sequence of (oid, length), coalescing adjacent reads."""
        ids = list(chunk_ids)
        i = 0
        while i < len(ids):
            oid, _ = ids[i]
            loc = self._lookup(CHUNK, oid)
            if isinstance(loc[0], PackWriter):
                yield self.get(CHUNK, oid)
                i += 1
                continue
            no, c, off, stored, raw = loc
            if (err := record_size_error(CHUNK, oid, stored, raw, f"pack {self._pack_names[no]}")) is not None:
                raise err  # before reading: a declared 4 GiB must not be allocated
            # Extend the run while the next chunk's record directly follows in the same pack.
            run = [(oid, loc)]
            end = off + stored
            j = i + 1
            while j < len(ids) and end - off < _COALESCE_LIMIT:
                nloc = self._index[CHUNK].get(ids[j][0])
                if (nloc is None or nloc[0] != no or nloc[2] != end + _REC.size
                        or record_size_error(CHUNK, ids[j][0], nloc[3], nloc[4], "") is not None):
                    break
                run.append((ids[j][0], nloc))
                end = nloc[2] + nloc[3]
                j += 1
            buf = os.pread(self._fd(no), end - off, off)
            if len(buf) != end - off:
                raise CorruptObjectError(to_oid(oid), f"pack {self._pack_names[no]}",
                                         f"{end - off} bytes", f"{len(buf)} bytes (truncated pack)")
            mv = memoryview(buf)
            for roid, (_, rc, roff, rstored, rraw) in run:
                rel = roff - off
                yield self._decode_verify(CHUNK, roid, rc, mv[rel:rel + rstored], rraw,
                                          f"pack {self._pack_names[no]}")
            i = j

    # ---------------------------------------------------------------- write
    def _current_writer(self) -> PackWriter:
        if self._writer is None:
            self.ensure_dirs()
            try:
                self._writer = PackWriter(self.tmp_dir, fsync=self.fsync)
            except OSError as exc:
                raise wrap_os_error(exc, "a new pack in the cache") from exc
        return self._writer

    def _append(self, typ: int, oid: bytes, c: int, payload, raw: int) -> None:
        with self._lock:
            writer = self._current_writer()
            try:
                entry = writer.append(oid, typ, c, payload, raw)
            except OSError as exc:
                raise wrap_os_error(exc, "the cache") from exc
            self._pending[(typ, oid)] = (writer, entry)
            self.stats["new_objects"] += 1
            self.stats["new_bytes"] += raw
            self.stats["stored_bytes"] += len(payload)
            full = writer.size >= self.pack_size
            if full:
                self._writer = None
        if full:
            self._start_publish(writer)  # outside the lock: it may wait for a publish, which takes it

    def put_chunk(self, data, oid: bytes | None = None, encoder=None) -> tuple[bytes, bool]:
        """Store a chunk unless present.  Returns (oid, newly stored).

        `data` may be a view the caller keeps alive and unchanged (it is written later,
        by the pack writer's thread); `encoder` is a per-file `codec.ChunkEncoder`.
        """
        if oid is None:
            oid = digest(data)
        if self.has(CHUNK, oid):
            return oid, False
        c, payload = encoder.encode(data) if encoder is not None else codec.encode(data, self.level)
        self._append(CHUNK, oid, c, payload, len(data))
        return oid, True

    def put_stored(self, typ: int, oid: bytes, codec_id: int, payload, raw_len: int) -> bool:
        """Store an object already in its stored form (a verified copy from a remote): no recompression."""
        if self.has(typ, oid):
            return False
        self._append(typ, oid, codec_id, payload, raw_len)
        return True

    def put_object(self, typ: int, oid: bytes, body: bytes) -> bool:
        if self.has(typ, oid):
            return False
        c, payload = codec.encode(body, self.level)
        self._append(typ, oid, c, payload, len(body))
        return True

    def _start_publish(self, writer: PackWriter) -> None:
        # fsync of a full pack overlaps with chunking of the next one.  At most two packs wait
        # to be published: an unpublished pack still holds its last batch of chunk buffers,
        # so an unbounded queue (chunking outruns fsync) would grow memory with the file size.
        if self._publisher is None:
            self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlvc-publish")
        self._publishing.append(self._publisher.submit(self._publish, writer))
        while len(self._publishing) > 2:
            self._publishing.pop(0).result()

    def _publish(self, writer: PackWriter) -> None:
        try:
            result = writer.publish(self.packs_dir)
        except OSError as exc:
            writer.discard()
            raise wrap_os_error(exc, "the cache") from exc
        with self._lock:
            if result is not None:
                name, entries = result
                if name not in self._known_idx:
                    self._add_pack(name, entries)
            for key in [k for k, (w, _) in self._pending.items() if w is writer]:
                del self._pending[key]

    def commit(self) -> None:
        """Publish everything written so far; on return it is durable and visible to others."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._start_publish(writer)
        futures, self._publishing = self._publishing, []
        first_error = None
        for f in futures:
            try:
                f.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below after all finished
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def abort(self) -> None:
        """Drop the unpublished pack (used when an operation fails half-way)."""
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.discard()
                for key in [k for k, (w, _) in self._pending.items() if w is writer]:
                    del self._pending[key]
        for f in self._publishing:
            try:
                f.result()
            except BaseException:  # noqa: BLE001 - already failing; keep the first error
                pass
        self._publishing = []

    def close(self) -> None:
        self.abort()
        if self._publisher is not None:
            self._publisher.shutdown(wait=True)
            self._publisher = None
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> "ChunkStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- maintenance
    @contextmanager
    def lock(self, exclusive: bool = False):
        """Writers (add, fetch) hold this shared; gc holds it exclusive while it deletes.

        An add may reuse an object that no pointer references yet; without the lock a
        concurrent gc could delete it between the dedup check and the pointer write.
        """
        self.ensure_dirs()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def sweep_tmp(self, now: float | None = None) -> int:
        """Remove temp files left by processes that died (kill -9, power loss)."""
        now = time.time() if now is None else now
        removed = 0
        try:
            names = os.listdir(self.tmp_dir)
        except FileNotFoundError:
            return 0
        for name in names:
            parts = name.split("-")
            path = self.tmp_dir / name
            try:
                pid = int(parts[1])
            except (IndexError, ValueError):
                pid = -1
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if pid == os.getpid():
                continue
            if pid <= 0 or not _pid_alive(pid) or age > STALE_TMP_S:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
        return removed

    def verify(self, progress=None) -> VerifyReport:
        """Read every object of every published pack and check it against its id."""
        report = VerifyReport()
        self.refresh()
        for name in sorted(self._known_idx):
            report.packs += 1
            idx_path = self.packs_dir / f"{name}.idx"
            pack_path = self.packs_dir / f"{name}.pack"
            try:
                entries = decode_index(idx_path.read_bytes(), f"pack index {name}")
            except (CorruptObjectError, OSError) as exc:
                report.problems.append(f"index {name}: {exc}")
                continue
            if not pack_path.exists():
                report.problems.append(f"pack {name}: index present but pack file missing")
                continue
            fd = os.open(pack_path, os.O_RDONLY)
            try:
                for e in entries:
                    report.objects += 1
                    try:
                        if (err := record_size_error(e.type, e.oid, e.stored, e.raw, f"pack {name}")) is not None:
                            raise err
                        payload = os.pread(fd, e.stored, e.offset)
                        if len(payload) != e.stored:
                            raise CorruptObjectError(to_oid(e.oid), f"pack {name}", f"{e.stored} bytes",
                                                     f"{len(payload)} bytes")
                        data = self._decode_verify(e.type, e.oid, e.codec, payload, e.raw, f"pack {name}")
                        if e.type == FILE_MANIFEST:
                            from ..objects import FileManifest

                            FileManifest.decode(data, e.oid)
                    except CorruptObjectError as exc:
                        report.problems.append(f"{TYPE_NAMES.get(e.type, e.type)} {exc}")
                    if progress:
                        progress(e.raw)
            finally:
                os.close(fd)
        return report

    def reindex_orphans(self) -> int:
        """Rebuild indexes of published packs whose index is missing (repair)."""
        from .packs import encode_index, index_name

        rebuilt = 0
        for pack in self.packs_dir.glob("*.pack"):
            if (self.packs_dir / f"{pack.stem}.idx").exists():
                continue
            entries = list(iter_pack_records(pack))
            if not entries:
                continue
            idx = encode_index(entries)
            name = index_name(idx)
            target = self.packs_dir / f"{name}.pack"
            if target != pack:
                os.replace(pack, target)
            tmp = self.tmp_dir / f"reindex-{os.getpid()}-{name}.idx"
            tmp.write_bytes(idx)
            os.replace(tmp, self.packs_dir / f"{name}.idx")
            rebuilt += 1
        return rebuilt


__all__ = ["ChunkStore", "VerifyReport", "CHUNK", "FILE_MANIFEST", "TREE_MANIFEST", "RAW", "wrap_os_error"]
