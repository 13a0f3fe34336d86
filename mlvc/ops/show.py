"""`mlvc show`: an artifact's pointer and contents (file list with sizes and ids)."""

from __future__ import annotations

from ..errors import MlvcError, ObjectNotFoundError
from ..hashing import to_oid
from .common import load_entries, select


def show(repo, target: str) -> dict:
    (t,) = select(repo, [target])
    if t.ptr is None:
        raise t.error
    p = t.ptr
    info = {"path": t.display, "pointer": t.rel_pointer, "kind": p.kind, "id": p.oid, "size": p.size,
            "files": p.files, "role": p.role, "meta": p.meta, "chunker": p.chunker.as_dict()}
    try:
        entries = load_entries(repo.store, p)
        info["entries"] = [{"path": e.path or t.display, "size": e.size, "id": to_oid(e.file_id),
                            "executable": e.executable} for e in entries]
    except ObjectNotFoundError:
        info["entries"] = None
        info["note"] = "manifest not in the cache (run `mlvc pull`)"
    try:
        from .provenance import provenance_of

        prov = provenance_of(repo, t)
        if prov:
            info["provenance"] = prov
    except ImportError:
        pass
    except MlvcError as exc:
        info["provenance_error"] = str(exc)
    return info
