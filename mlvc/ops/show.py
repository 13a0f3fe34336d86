"""`mlvc show`: an artifact's pointer and contents (file list with sizes and ids)."""

from __future__ import annotations

from ..errors import MlvcError, ObjectNotFoundError, PathError
from ..hashing import to_oid
from .common import containing, load_entries


def show(repo, target: str) -> dict:
    """An artifact, or one file inside a tracked directory (`show checkpoints/model.pt`)."""
    t, inner = containing(repo, target)
    if t.ptr is None:
        raise t.error
    p = t.ptr
    info = {"path": t.display, "pointer": t.rel_pointer, "kind": p.kind, "id": p.oid, "size": p.size,
            "files": p.files, "role": p.role, "meta": p.meta, "chunker": p.chunker.as_dict()}
    try:
        entries = load_entries(repo.store, p)
        if inner:
            entries = [e for e in entries if e.path == inner]
            if not entries:
                raise PathError(target, f"is not a file of the tracked artifact {t.display}")
            e = entries[0]
            info.update({"path": f"{t.display}/{inner}", "artifact": t.display, "kind": "file",
                         "id": to_oid(e.file_id), "size": e.size, "files": 1,
                         "modules": (p.meta.get("modules") or {}).get(inner) if isinstance(
                             p.meta.get("modules"), dict) else None})
        info["entries"] = [{"path": e.path or t.display, "size": e.size, "id": to_oid(e.file_id),
                            "executable": e.executable} for e in entries]
    except ObjectNotFoundError:
        info["entries"] = None
        info["note"] = "manifest not in the cache (run `mlvc pull`)"
    try:
        from .provenance import provenance_of

        prov = provenance_of(repo, t, only=inner or None)
        if prov:
            info["provenance"] = prov
    except ImportError:
        pass
    except MlvcError as exc:
        info["provenance_error"] = str(exc)
    return info
