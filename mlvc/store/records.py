"""A stored record decoded and checked: `decode_verify` turns a record's payload (raw, zstd,
byte planes, or an XOR delta against its base) into the object's bytes and checks them against
the object's id; `check_pack_file` checks every record of a local pack file.  Every reader of
the store (restores, transfers, gc, verify) decodes through here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, Union

from .. import codec
from ..errors import CorruptObjectError
from ..hashing import digest, to_oid
from ..objects import FileManifest
from .packs import CHUNK, FILE_MANIFEST, IndexEntry, record_size_error
from .types import Key

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

COALESCE_LIMIT = 8 * 1024 * 1024  # one read spans at most this much

BaseRead = Callable[[bytes, bytes], Union[bytes, memoryview]]  # (delta's id, base id) -> the base's verified bytes


def decode_verify(typ: int, oid: bytes, c: int, payload: codec.Bytes, raw: int, where: str,
                  check_id: bool = True, base: BaseRead | None = None,
                  into: npt.NDArray[np.uint8] | None = None) -> codec.Bytes:
    """Decode a stored object and check it against its id; CorruptObjectError naming it otherwise.
    `check_id=False` (chunks only): sizes are checked, the id is left to a caller that hashes the
    whole file anyway (a restore checks the file id before the rename).
    `base` reads the base a `DELTA` record names (`PackStore.base_reader`: verified, the chain
    bounded); a delta is always checked against its id, whatever `check_id` says.
    `into`: where a chunk's byte planes are decoded (`codec.decode`), for a caller that recycles
    its buffers."""
    name = to_oid(oid)
    if (err := record_size_error(typ, oid, len(payload), raw, where)) is not None:
        raise err
    if c in (codec.PLANES, codec.DELTA) and typ != CHUNK:
        raise CorruptObjectError(name, where, "a manifest stored raw or zstd",
                                 "byte planes" if c == codec.PLANES else "a delta")
    base_bytes = None
    if c == codec.DELTA:
        try:
            base_oid = codec.delta_base(payload)
        except ValueError:
            raise CorruptObjectError(name, where, "a delta naming its base", "a truncated record") from None
        if base is None:
            raise CorruptObjectError(name, where, "a record readable on its own", "a delta (its base is elsewhere)")
        base_bytes = base(oid, base_oid)
        check_id = True  # a wrong base decodes to wrong bytes of the right size
    data: codec.Bytes
    try:
        if base_bytes is not None:
            data = codec.decode_delta(payload, raw, base_bytes, into)
        else:
            data = codec.decode(c, payload, raw, into)  # RAW: the payload itself, no copy
    except Exception:
        if base_bytes is not None and len(base_bytes) != raw:
            raise CorruptObjectError(name, where, f"a base of {raw} bytes",
                                     f"base {to_oid(codec.delta_base(payload))} of {len(base_bytes)} bytes") from None
        raise CorruptObjectError(name, where, "a decodable payload", "undecodable bytes") from None
    if len(data) != raw:
        raise CorruptObjectError(to_oid(oid), where, f"{raw} bytes", f"{len(data)} bytes")
    if typ == FILE_MANIFEST:
        data = bytes(data)
        try:
            # intact and the right object; its chunk list is checked by whoever parses it
            FileManifest.check_intact(bytes(data), oid)
        except CorruptObjectError as exc:
            raise CorruptObjectError(to_oid(oid), where, exc.expected, exc.got) from None
    else:
        if (check_id or typ != CHUNK) and digest(data) != oid:
            raise CorruptObjectError(to_oid(oid), where, to_oid(oid), to_oid(digest(data)))
        if typ != CHUNK:
            data = bytes(data)  # manifests are parsed (json, struct): bytes; chunks may stay views
    return data


def record_in_run(e: IndexEntry, data: memoryview, start: int, where: str) -> memoryview:
    """The stored bytes of record `e` in `data`, a run of its pack read from offset `start`;
    CorruptObjectError when the run ends before the record does (a truncated pack)."""
    payload = data[e.offset - start:e.offset - start + e.stored]
    if len(payload) != e.stored:
        raise CorruptObjectError(to_oid(e.oid), where, f"{e.stored} bytes", f"{len(payload)} bytes (truncated pack)")
    return payload


def check_pack_file(path: Path, entries: list[IndexEntry], where: str) -> dict[Key, CorruptObjectError]:
    """Every record of a local pack file checked against its id; {(type, id): error} of the
    damaged ones.  Read in runs of at most COALESCE_LIMIT bytes, never the whole pack at once:
    a fetch checks `jobs` downloaded packs together (mapped and read whole, a million-file pull
    from S3 held ~130 MiB of pack pages)."""
    problems: dict[Key, CorruptObjectError] = {}
    ordered = []
    for e in entries:
        if (bad := record_size_error(e.type, e.oid, e.stored, e.raw, where)) is not None:
            problems[(e.type, e.oid)] = bad  # before reading: never allocate what it declares
        else:
            ordered.append(e)
    with open(path, "rb") as f:
        for run in entries_in_runs(ordered):
            start = run[0].offset
            end = max(e.offset + e.stored for e in run)
            data = memoryview(os.pread(f.fileno(), end - start, start))
            for e in run:
                try:
                    decode_verify(e.type, e.oid, e.codec, record_in_run(e, data, start, where), e.raw, where)
                except CorruptObjectError as exc:
                    problems[(e.type, e.oid)] = exc
    return problems


class Extent(Protocol):
    """A record's place in its pack (an `IndexEntry`, or a caller's own record of one)."""

    @property
    def offset(self) -> int: ...

    @property
    def stored(self) -> int: ...


_E = TypeVar("_E", bound=Extent)


def entries_in_runs(entries: Iterable[_E], gap: int | None = None) -> Iterator[list[_E]]:
    """Records of one pack in pack order, grouped into runs read with one request each: a run
    spans at most COALESCE_LIMIT bytes from its first record's start (a longer record is a run of
    its own) and, given `gap`, skips at most `gap` bytes between its records (a partial read
    should not download much it will not use)."""
    run: list[_E] = []
    end = 0
    for e in sorted(entries, key=lambda e: e.offset):
        if run and (e.offset + e.stored - run[0].offset > COALESCE_LIMIT
                    or (gap is not None and e.offset - end > gap)):
            yield run
            run = []
        run.append(e)
        end = max(end, e.offset + e.stored) if len(run) > 1 else e.offset + e.stored
    if run:
        yield run


__all__ = ["decode_verify", "check_pack_file", "entries_in_runs", "Extent", "BaseRead", "COALESCE_LIMIT"]
