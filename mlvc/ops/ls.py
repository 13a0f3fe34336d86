"""`mlvc ls URL [PATH]`: what a revision holds under a path: git's files and the tracked
artifacts (with sizes and ids), read from git's tree and the pointers; a directory artifact's
tree manifest is read only when the listing goes inside it (PATH in it, or `recursive` over it),
so listing a registry's top costs no object reads however large its datasets are."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import asdict, dataclass

from .. import pointer as pointers
from ..errors import MlvcError, PathError
from ..hashing import from_oid, to_oid
from .read import ARTIFACT, FileEntry, RevisionView, repo_path


@dataclass(frozen=True)
class ListEntry:
    path: str  # repository-relative
    type: str  # "file" | "dir"
    size: int | None  # a file's size; a tracked directory's total
    source: str | None  # "git" | "artifact" | None (a plain directory)
    id: str | None = None  # a tracked file's (or directory's tree) id
    artifact: str | None = None  # the artifact holding a tracked file
    files: int | None = None  # a tracked directory's file count

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def ls(view: RevisionView, path: str = "", *, recursive: bool = False) -> list[ListEntry]:
    """The entries directly under `path` (every file below it with `recursive`); a file lists
    as itself.  PathError when the revision has nothing at `path`."""
    rel = repo_path(path)
    found = view.containing_artifact(rel) if rel else None
    if found is not None:
        return _inside(view, rel, found, recursive)
    plain = view.plain_files()
    artifacts: dict[str, pointers.PointerFile] = {}
    for rel_ptr in plain:
        if rel_ptr.endswith(pointers.SUFFIX) and not rel_ptr.startswith((".git/", ".mlvc/")):
            try:
                ptr = view.pointer(rel_ptr[: -len(pointers.SUFFIX)])
            except MlvcError:
                continue  # an unreadable pointer lists as the file it is
            if ptr is not None:
                artifacts[rel_ptr[: -len(pointers.SUFFIX)]] = ptr
    if rel in plain:
        return [_file(view, plain[rel])]
    prefix = rel + "/" if rel else ""
    out: dict[str, ListEntry] = {}

    def child_dir(p: str) -> None:
        name = prefix + p[len(prefix):].split("/", 1)[0]
        out.setdefault(name, ListEntry(name, "dir", None, None))

    for p, e in plain.items():
        if not p.startswith(prefix):
            continue
        if p.endswith(pointers.SUFFIX) and p[: -len(pointers.SUFFIX)] in artifacts:
            continue  # the artifact lists instead of its pointer
        if any(p == a or p.startswith(a + "/") for a in _above(p, artifacts)):
            continue  # a stray workspace copy inside an artifact: the pointer decides
        if recursive or "/" not in p[len(prefix):]:
            out[p] = _file(view, e)
        else:
            child_dir(p)
    for a, ptr in artifacts.items():
        if not a.startswith(prefix):
            continue
        if recursive:
            if ptr.kind == "file":
                out[a] = ListEntry(a, "file", ptr.size, ARTIFACT, ptr.oid, a)
            else:
                for e in view.source.tree(from_oid(ptr.oid)).entries:
                    p = f"{a}/{e.path}"
                    out[p] = ListEntry(p, "file", e.size, ARTIFACT, to_oid(e.file_id), a)
        elif "/" not in a[len(prefix):]:
            out[a] = (ListEntry(a, "file", ptr.size, ARTIFACT, ptr.oid, a) if ptr.kind == "file"
                      else ListEntry(a, "dir", ptr.size, ARTIFACT, ptr.oid, a, ptr.files))
        else:
            child_dir(a)
    if not out and rel:
        raise PathError(rel, f"does not exist {view.where}")
    return [out[k] for k in sorted(out)]


def _above(p: str, artifacts: Container[str]) -> list[str]:
    """The artifacts among `p`'s parent directories."""
    parts = p.split("/")
    return [d for d in ("/".join(parts[:i]) for i in range(1, len(parts))) if d in artifacts]


def _inside(view: RevisionView, rel: str, found: tuple[str, pointers.PointerFile, str],
            recursive: bool) -> list[ListEntry]:
    """Entries of a path inside (or at) an artifact."""
    artifact, ptr, inner = found
    if ptr.kind == "file":
        if inner:
            raise PathError(rel, f"does not exist {view.where} ({artifact} is a file)")
        return [ListEntry(artifact, "file", ptr.size, ARTIFACT, ptr.oid, artifact)]
    entries = view.source.tree(from_oid(ptr.oid)).entries
    if inner:
        e = entries.find(inner)
        if e is not None:
            return [ListEntry(rel, "file", e.size, ARTIFACT, to_oid(e.file_id), artifact)]
    prefix = inner + "/" if inner else ""
    out: dict[str, ListEntry] = {}
    for e in entries:
        if not e.path.startswith(prefix):
            continue
        rest = e.path[len(prefix):]
        if recursive or "/" not in rest:
            p = f"{artifact}/{e.path}"
            out[p] = ListEntry(p, "file", e.size, ARTIFACT, to_oid(e.file_id), artifact)
        else:
            d = f"{artifact}/{prefix}{rest.split('/', 1)[0]}"
            out.setdefault(d, ListEntry(d, "dir", None, None))
    if not out:
        raise PathError(rel, f"does not exist {view.where} (in the tracked artifact {artifact})")
    return [out[k] for k in sorted(out)]


def _file(view: RevisionView, e: FileEntry) -> ListEntry:
    return ListEntry(e.path, "file", view.size(e), e.source)


__all__ = ["ls", "ListEntry"]
