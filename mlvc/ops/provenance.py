"""The birth certificate embedded in a checkpoint, read without torch and without running pickle.

`mlvc.torch.save` stores `{"mlvc": {...}}` beside the weights; in a torch zip it
is a plain dict inside data.pkl (read by `checkpoint.read_layout`'s allowlisting
unpickler, which refuses any code reference), in a safetensors file a JSON
string in the header metadata.  The workspace file is read when present,
otherwise the committed version from the cache (only the chunks holding the
zip directory and data.pkl are fetched).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .. import checkpoint as ckpt
from ..errors import MlvcError, ObjectNotFoundError
from .common import Tracked, file_manifest, load_entries
from .params import flatten  # nested dicts -> dotted keys (params.lr)
from .modules import is_checkpoint_name

if TYPE_CHECKING:
    from ..checkpoint import Readable
    from ..repo import Repo

KEY = "mlvc"


def _parse(raw: object) -> dict[str, object] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return None
    return raw if isinstance(raw, dict) else None


def read_provenance(fileobj: Readable, name: str = "") -> dict[str, object] | None:
    """The embedded `mlvc` record of an open checkpoint, or None (not a checkpoint / no record)."""
    fileobj.seek(0)
    head = fileobj.read(ckpt.HEAD_SIZE)
    if ckpt.detect_format(head, name) is None:
        return None
    layout = ckpt.read_layout(fileobj)
    return _parse(layout.extras.get(KEY))


def _from_cache(repo: Repo, file_id: bytes, name: str) -> dict[str, object] | None:
    from .chunked_reader import ChunkedFile

    fm = file_manifest(repo.store, file_id)
    with ChunkedFile(repo.store, fm.chunks, name=name) as f:
        return read_provenance(f, name)


def _read_one(repo: Repo, tracked: Tracked, rel: str, file_id: bytes) -> tuple[dict[str, object] | None, str]:
    path = tracked.target if rel == "" else tracked.target / rel
    name = path.name
    if path.is_file():
        with open(path, "rb") as f:
            return read_provenance(f, name), "workspace"
    try:
        return _from_cache(repo, file_id, name), "cache"
    except ObjectNotFoundError:
        return None, "missing"


def provenance_of(repo: Repo, tracked: Tracked, only: str | None = None) -> dict[str, object] | None:
    """Flat provenance of a checkpoint artifact (a file, or a dir of checkpoint files), or None.

    For a directory the newest record (by saved_at) is flattened at the top,
    with `file` naming it, and every file's record sits under `files.<name>.*`.
    `only` narrows a directory artifact to one of its files (relative path).
    """
    ptr = tracked.ptr
    if ptr is None:
        return None
    try:
        entries = load_entries(repo.store, ptr)
    except ObjectNotFoundError:
        if ptr.kind != "file":
            return None
        from ..hashing import from_oid
        from ..objects import TreeEntry

        entries = [TreeEntry("", ptr.size, from_oid(ptr.oid), False)]
    chosen = iter(entries)
    if ptr.kind == "dir":  # lazily: a million-file tree is never a list of a million entries
        chosen = (e for e in entries if (e.path == only if only else is_checkpoint_name(e.path)))
    found: dict[str, tuple[dict[str, object], str]] = {}
    for e in chosen:
        try:
            prov, source = _read_one(repo, tracked, e.path, e.file_id)
        except ckpt.CheckpointFormatError:
            if ptr.kind == "file":
                return None
            continue
        except MlvcError:
            raise  # unsafe pickle, corrupt cache object: show reports it as provenance_error
        if prov is not None:
            found[e.path] = (prov, source)
    if not found:
        return None
    if ptr.kind == "file" or only:
        prov, source = next(iter(found.values()))
        return {**flatten(prov), "source": source}
    newest = max(found, key=lambda k: (str(found[k][0].get("saved_at", "")), k))
    out = {**flatten(found[newest][0]), "file": newest, "source": found[newest][1]}
    for rel, (prov, _) in sorted(found.items()):
        out.update(flatten(prov, f"files.{rel}."))
    return out
