"""Which file of a tracked artifact a tensor read opens (`mlvc.torch.load_tensor`,
`open_tracked`): a checkpoint file, the shard of a sharded checkpoint that holds a tensor, or
the weights file of a model directory.  Nothing here needs torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import checkpoint as ckpt
from ..errors import MlvcError, PathError
from ..hashing import from_oid
from ..repo import Repo
from ..sources import open_repo
from .chunked_reader import ChunkedFile
from .read import ARTIFACT, FileEntry, RevisionView, repo_relative


def open_view(path: str | os.PathLike[str], rev: str | None, repo: Repo | str | os.PathLike[str] | None,
              remote: str | None, *, directory_ok: bool = False) -> tuple[RevisionView, FileEntry, Repo | None]:
    """(RevisionView, FileEntry, the Repo to close or None) of one tracked artifact file; the
    caller closes them with `close_view`.

    With `directory_ok`, `path` may name a directory of a tracked artifact: the entry is then
    the model file in it (see `model_file`)."""
    r, owned = resolve_repo(repo, path, rev)
    try:
        rel = repo_relative(r, path, relative_to_cwd=repo is None)
        view = RevisionView(r, rev, remote)
    except BaseException:
        if owned:
            r.close()
        raise
    opened = r if owned else None
    try:
        if view.containing_artifact(rel) is None:
            at = f" at {rev}" if rev else ""
            raise PathError(path, f"is not inside an artifact tracked by mlvc{at}")
        entry = model_file(view, rel, path) if directory_ok and view.is_dir(rel) else view.entry(rel)
    except BaseException:
        close_view(view, opened)
        raise
    return view, entry, opened


def close_view(view: RevisionView, opened: Repo | None) -> None:
    view.close()
    if opened is not None:
        opened.close()


def resolve_repo(repo: Repo | str | os.PathLike[str] | None, path: str | os.PathLike[str],
                 rev: str | None) -> tuple[Repo, bool]:
    """(Repo, owned) for a `repo=` argument, resolved by `mlvc.sources.open_repo` as for
    `mlvc.open`; with none given, an absolute `path` names its own repository."""
    if isinstance(repo, Repo):
        return repo, False
    p = Path(path)
    if repo is None and p.is_absolute() and p.parent.exists():
        return Repo.find(p.parent), True
    return open_repo(repo, rev), True


# The files `save_pretrained` writes for a model's weights, in the order they are looked for in
# a model directory: the sharded index (transformers re-shards on every save, so it is the one
# name stable across revisions), then an unsharded file.
HF_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors",
                   "pytorch_model.bin.index.json", "pytorch_model.bin")


def model_file(view: RevisionView, rel: str, path: str | os.PathLike[str]) -> FileEntry:
    """The weights file of a model directory: a Hugging Face index or single weights file, or the
    only checkpoint or shard index directly in it."""
    for name in HF_WEIGHT_FILES:
        try:
            return view.entry(f"{rel}/{name}" if rel else name)
        except PathError:
            continue
    holder = view.containing_artifact(rel)
    if holder is None:
        raise PathError(path, f"is not inside an artifact tracked by mlvc {view.where}")
    _artifact, ptr, inner = holder
    entries = view.source.tree(from_oid(ptr.oid)).entries  # only this artifact's, never the whole revision
    prefix = f"{inner}/" if inner else ""
    inside: list[str] = []
    for i in range(entries.first_at_or_after(prefix) if prefix else 0, len(entries)):
        name = entries.path(i)
        if not name.startswith(prefix):
            break
        if "/" not in name[len(prefix):]:
            inside.append(name[len(prefix):])
    indexes = [n for n in inside if ckpt.is_shard_index(n)]
    candidates = indexes or [n for n in inside if n.lower().endswith(CHECKPOINT_SUFFIXES)]
    if len(candidates) == 1:
        return view.entry(f"{rel}/{candidates[0]}" if rel else candidates[0])
    found = ", ".join(candidates[:5])
    raise PathError(path, f"is a directory {view.where} holding "
                          + (f"several checkpoints ({found}): name one" if candidates else "no checkpoint"))


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def shard_for(view: RevisionView, index: FileEntry, name: str, path: str | os.PathLike[str]) -> FileEntry:
    """The shard of a sharded checkpoint that holds tensor `name` (or a wrapped form of it),
    from the index's `weight_map`."""
    with view.open_raw(index) as f:
        raw = f.read()
    ckpt.shard_files(raw, str(path))  # an index whose shards are all files beside it
    weight_map = json.loads(raw)["weight_map"]
    for candidate in (name, *(w + name for w in ckpt.STATE_DICT_WRAPPERS)):
        shard = weight_map.get(candidate)
        if shard is not None:
            base = index.path.rpartition("/")[0]
            return view.entry(f"{base}/{shard}" if base else shard)
    names = sorted(weight_map)
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    raise MlvcError(f"{path}: no tensor named {name!r} (has {shown})")



def open_artifact_file(view: RevisionView, entry: FileEntry) -> ChunkedFile:
    """A ChunkedFile over a file of a tracked artifact (read from the store: only the chunks a
    read touches)."""
    if entry.source != ARTIFACT:
        raise PathError(entry.path, "is not a file of a tracked artifact")
    return view.source.open_file(from_oid(entry.ref), name=entry.path.rsplit("/", 1)[-1])


__all__ = ["open_artifact_file", "open_view", "close_view", "resolve_repo", "model_file", "shard_for",
           "HF_WEIGHT_FILES"]
