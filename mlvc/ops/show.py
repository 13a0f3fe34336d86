"""`mlvc show`: an artifact's pointer and contents (file list with sizes and ids)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from ..errors import MlvcError, ObjectNotFoundError, PathError
from ..hashing import to_oid
from ..objects import TreeEntries, TreeEntry
from .common import containing, load_entries
from .modules import file_modules

if TYPE_CHECKING:
    from ..repo import Repo


class ShownEntry(TypedDict):
    """One file of a shown artifact, as `mlvc show --json` writes it."""

    path: str
    size: int
    id: str
    executable: bool


@dataclass(frozen=True)
class ShownEntries:
    """The files of a shown artifact as {path, size, id, executable}, made one at a time as they
    are iterated: a million-file tree stays packed (tens of MB) instead of a list of a million
    dicts (`mlvc show --json` streams them)."""

    entries: Sequence[TreeEntry]
    artifact: str  # the path of an entry of a file artifact (its own path is "")

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[ShownEntry]:
        for e in self.entries:
            yield {"path": e.path or self.artifact, "size": e.size, "id": to_oid(e.file_id),
                   "executable": e.executable}


def show(repo: Repo, target: str) -> dict[str, object]:
    """An artifact, or one file inside a tracked directory (`show checkpoints/model.pt`).

    A checkpoint that is not (yet) tracked is shown from the file itself: its size and the birth
    certificate `mlvc.torch.save` embedded, with `tracked: False`.
    """
    try:
        t, inner = containing(repo, target)
    except PathError as exc:
        untracked = _untracked_checkpoint(repo, target)
        if untracked is None:
            if not os.path.lexists(repo.resolve_user_path(target)):  # `mlvc add` of it could not help
                raise PathError(target, "does not exist and is not tracked by mlvc",
                                hint="run `mlvc ls` to list the tracked artifacts") from None
            raise exc from None
        return untracked
    if t.ptr is None:
        raise t.parse_error
    p = t.ptr
    info = {"path": t.display, "tracked": True, "pointer": t.rel_pointer, "kind": p.kind, "id": p.oid, "size": p.size,
            "files": p.files, "role": p.role, "meta": p.meta, "chunker": p.chunker.as_dict()}
    if p.source is not None:
        info["source"] = p.source.as_dict()
    try:
        entries = tree = load_entries(repo.store, p)
        if inner:
            if not isinstance(tree, TreeEntries):  # `select(within=True)` gives `inner` only inside a directory
                raise PathError(target, f"is not inside a directory artifact ({t.display} is a file)")
            entries = [e for e in entries if e.path == inner]
            if not entries:
                raise PathError(target, f"is not a file of the tracked artifact {t.display}")
            e = entries[0]
            modules = p.meta.get("modules")
            info.update({"path": f"{t.display}/{inner}", "artifact": t.display, "kind": "file",
                         "id": to_oid(e.file_id), "size": e.size, "files": 1,
                         "meta": {k: v for k, v in p.meta.items() if k not in ("modules", "blocks")},
                         "modules": file_modules(repo.store, tree, modules, inner)
                         if isinstance(modules, dict) else None})
            blocks = p.meta.get("blocks")
            if isinstance(blocks, dict):
                info["blocks"] = file_modules(repo.store, tree, blocks, inner, blocks=True)
        info["entries"] = ShownEntries(entries, t.display)
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


def _untracked_checkpoint(repo: Repo, target: str) -> dict[str, object] | None:
    """{path, tracked: False, size, format, provenance} of a workspace checkpoint no pointer names,
    or None when `target` is not a file or carries no birth certificate."""
    from .. import checkpoint as ckpt
    from .provenance import read_provenance
    from .params import flatten

    path = repo.resolve_user_path(target)
    if path.is_symlink() or not path.is_file():
        return None
    info = {"path": repo.rel(path), "tracked": False, "kind": "file", "size": path.stat().st_size,
            "note": f"not tracked by mlvc: run `mlvc add {target}` to track it"}
    try:
        with open(path, "rb") as f:
            info["format"] = ckpt.detect_format(f.read(ckpt.HEAD_SIZE), path.name)
            if info["format"] is None:
                return None
            prov = read_provenance(f, path.name)
    except ckpt.CheckpointFormatError:
        return None
    except MlvcError as exc:  # a pickle naming code: reported, never run
        info["provenance_error"] = str(exc)
        return info
    if prov is None:
        return None
    info["provenance"] = {**flatten(prov), "source": "workspace"}
    return info
