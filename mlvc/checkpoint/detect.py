"""Which format a checkpoint is (from its first bytes and its name), and its layout read by
that format's reader."""

from __future__ import annotations

import struct
import zipfile

from .layout import (
    HEAD_SIZE,
    SAFETENSORS,
    TORCH_ZIP,
    CheckpointFormat,
    CheckpointFormatError,
    CheckpointLayout,
    Readable,
)
from .safetensors_ import MAX_SAFETENSORS_HEADER, read_safetensors
from .torch_zip import (
    TORCH_RECORDS,
    TORCH_SUFFIXES,
    ZIP_LOCAL_HEADER,
    ZIP_LOCAL_MAGIC,
    read_torch_zip,
)


def detect_format(head: bytes, name: str = "") -> CheckpointFormat | None:
    """Recognise a checkpoint from its first bytes (ideally HEAD_SIZE of them) and its file name."""
    if head.startswith(ZIP_LOCAL_MAGIC):
        return TORCH_ZIP if _looks_like_torch_zip(head, name) else None
    if _looks_like_safetensors(head):
        return SAFETENSORS
    return None


def _looks_like_torch_zip(head: bytes, name: str) -> bool:
    # torch.save's first zip entry is always one of its own records.
    entry = _first_zip_entry_name(head)
    if entry is not None and entry.rsplit("/", 1)[-1] in TORCH_RECORDS:
        return True
    return str(name).lower().endswith(TORCH_SUFFIXES)


def _first_zip_entry_name(head: bytes) -> str | None:
    if len(head) < ZIP_LOCAL_HEADER.size:
        return None
    _, name_len, _ = ZIP_LOCAL_HEADER.unpack_from(head)
    raw = head[ZIP_LOCAL_HEADER.size:ZIP_LOCAL_HEADER.size + name_len]
    return raw.decode("utf-8", "replace") if len(raw) == name_len else None


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack_from("<Q", head)
    return 2 <= header_len <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{"


def read_layout(fileobj: Readable) -> CheckpointLayout:
    """Tensor layout of a seekable binary checkpoint file (torch zip or safetensors)."""
    fileobj.seek(0)
    head = fileobj.read(HEAD_SIZE)
    fmt = detect_format(head, str(getattr(fileobj, "name", "")))
    if fmt == TORCH_ZIP:
        return read_torch_zip(fileobj)
    if fmt == SAFETENSORS:
        return read_safetensors(fileobj)
    raise CheckpointFormatError("not a torch.save zip or safetensors checkpoint")


def layout_ranges(fileobj: Readable) -> list[tuple[int, int]]:
    """(offset, length) of the scattered regions `read_layout` will read beyond the file's head and
    end: the zip local headers of a torch checkpoint (a safetensors header is at the head).

    Reading the zip's central directory costs a read at the end of the file; a reader that
    fetches over a network can prefetch these ranges in one batch instead of one by one.
    """
    fileobj.seek(0)
    head = fileobj.read(HEAD_SIZE)
    if detect_format(head, str(getattr(fileobj, "name", ""))) != TORCH_ZIP:
        return []
    try:
        with zipfile.ZipFile(fileobj) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as err:
        raise CheckpointFormatError(f"damaged torch checkpoint: {err}") from err
    return [(i.header_offset, ZIP_LOCAL_HEADER.size + len(i.orig_filename.encode()) + 256) for i in infos]
