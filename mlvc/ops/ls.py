"""`mlvc ls URL [PATH]`: what a revision holds under a path: git's files and the tracked
artifacts (with sizes and ids), read from git's tree, the pointers and the tree manifests."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import PathError
from .read import ARTIFACT, RevisionView, repo_path


@dataclass(frozen=True)
class ListEntry:
    path: str  # repository-relative
    type: str  # "file" | "dir"
    size: int | None  # a file's size; a tracked directory's total
    source: str | None  # "git" | "artifact" | None (a plain directory)
    id: str | None = None  # a tracked file's (or directory's tree) id
    artifact: str | None = None  # the artifact holding a tracked file
    files: int | None = None  # a tracked directory's file count

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def ls(view: RevisionView, path: str = "", *, recursive: bool = False) -> list[ListEntry]:
    """The entries directly under `path` (every file below it with `recursive`); a file lists
    as itself.  PathError when the revision has nothing at `path`."""
    rel = repo_path(path)
    if rel and not view.is_dir(rel):
        e = view.entry(rel)  # PathError when absent
        return [_file(view, e)]
    prefix = rel + "/" if rel else ""
    listing = view.listing()
    artifacts = {e.artifact for e in listing.values() if e.artifact}
    out: dict[str, ListEntry] = {}
    for p, e in listing.items():
        if not p.startswith(prefix) or p.split("/", 1)[0] in (".git",):
            continue
        rest = p[len(prefix):]
        if recursive or "/" not in rest:
            if not (p.endswith(".mlvc") and p[: -len(".mlvc")] in artifacts and e.source != ARTIFACT):
                out[p] = _file(view, e)
            continue
        child = prefix + rest.split("/", 1)[0]
        if child not in out:
            out[child] = _dir(view, child)
    if not out and rel and not view.is_dir(rel):
        raise PathError(rel, f"does not exist {view.where}")
    return [out[k] for k in sorted(out)]


def _file(view: RevisionView, e) -> ListEntry:
    if e.source == ARTIFACT:
        return ListEntry(e.path, "file", view.size(e), ARTIFACT, e.ref, e.artifact)
    return ListEntry(e.path, "file", view.size(e), e.source)


def _dir(view: RevisionView, path: str) -> ListEntry:
    ptr = view.pointer(path)
    if ptr is not None and ptr.kind == "dir":
        return ListEntry(path, "dir", ptr.size, ARTIFACT, ptr.oid, path, ptr.files)
    return ListEntry(path, "dir", None, None)


__all__ = ["ls", "ListEntry"]
