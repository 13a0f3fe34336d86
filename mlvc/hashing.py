"""Object ids: xxh3-128 of the uncompressed bytes, written `xxh128:<32 hex>`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import xxhash

if TYPE_CHECKING:
    from typing_extensions import Buffer

ALGORITHM = "xxh3-128"
PREFIX = "xxh128:"
_HEX_RE = re.compile(r"^[0-9a-f]{32}$")
_OID_RE = re.compile(r"^xxh128:[0-9a-f]{32}$")


def digest(data: Buffer) -> bytes:
    """Raw 16-byte id of a bytes-like object."""
    return xxhash.xxh3_128_digest(data)


def hasher() -> xxhash.xxh3_128:
    return xxhash.xxh3_128()


def to_oid(raw: bytes) -> str:
    return PREFIX + raw.hex()


def from_oid(oid: str) -> bytes:
    """Parse and validate `xxh128:<hex>`; ids are checked before they ever become paths or keys."""
    if not isinstance(oid, str) or not _OID_RE.match(oid):
        raise ValueError(f"not an object id: {oid!r}")
    return bytes.fromhex(oid[len(PREFIX):])


def is_oid(oid: object) -> bool:
    return isinstance(oid, str) and bool(_OID_RE.match(oid))


def is_hex_name(name: str) -> bool:
    return bool(_HEX_RE.match(name))


def short(oid: str) -> str:
    return oid[len(PREFIX):len(PREFIX) + 12] if oid.startswith(PREFIX) else oid[:12]
